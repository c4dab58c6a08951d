"""Server-rendered SVG line charts: no script, no inline style (the console's CSP is ``default-src 'self'``).

Each series gets a CSS class (``series-0``...) that sets its colour *and* its dash pattern, and the legend
repeats the pattern and names the series, so a chart reads without colour.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

__all__ = ["line_chart"]

WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 640, 170, 52, 22, 10


def _label(value: float, unit: str) -> str:
    if value >= 100:
        return f"{value:,.0f}{unit}"
    return f"{value:.3g}{unit}"


def line_chart(
    title: str,
    buckets: Sequence[int],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    unit: str = "",
) -> SafeString:
    """An SVG chart of ``series`` (name, one value per bucket; None = no data) over ``buckets`` (epoch seconds)."""
    peak = max((v for _, values in series for v in values if v is not None), default=0.0) or 1.0
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(buckets) - 1, 1)
    lines = []
    for index, (name, values) in enumerate(series):
        points = " ".join(
            f"{LEFT + i * step:.1f},{TOP + plot_h - plot_h * (v / peak):.1f}"
            for i, v in enumerate(values)
            if v is not None
        )
        lines.append(
            format_html(
                '<polyline class="line series-{}" points="{}"><title>{}</title></polyline>', index, points, name
            )
        )
    grid = []
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h - plot_h * fraction
        grid.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"></line>'
                '<text class="axis" x="{}" y="{}" text-anchor="end">{}</text>',
                LEFT,
                WIDTH - 8,
                f"{y:.1f}",
                f"{y:.1f}",
                LEFT - 4,
                f"{y + 4:.1f}",
                _label(peak * fraction, unit),
            )
        )
    if buckets:
        for i, anchor in ((0, "start"), (len(buckets) // 2, "middle"), (len(buckets) - 1, "end")):
            stamp = datetime.datetime.fromtimestamp(buckets[i], datetime.UTC)
            grid.append(
                format_html(
                    '<text class="axis" x="{}" y="{}" text-anchor="{}">{}</text>',
                    f"{LEFT + i * step:.1f}",
                    HEIGHT - 6,
                    anchor,
                    stamp.strftime("%d %b %H:%M"),
                )
            )
    legend = format_html_join(
        "",
        '<li><svg class="key" viewBox="0 0 30 10" aria-hidden="true"><line class="line series-{}" x1="0" x2="30" '
        'y1="5" y2="5"></line></svg>{}</li>',
        ((i, name) for i, (name, _) in enumerate(series)),
    )
    svg = format_html(
        '<figure class="chart"><figcaption>{}</figcaption>'
        '<svg viewBox="0 0 {} {}" role="img" aria-label="{}">{}{}</svg>'
        '<ul class="legend">{}</ul></figure>',
        title,
        WIDTH,
        HEIGHT,
        title,
        mark_safe("".join(grid)),  # noqa: S308 - built with format_html above
        mark_safe("".join(lines)),  # noqa: S308 - built with format_html above
        legend,
    )
    return svg
