"""Service level objectives: the ``SLOS`` option and the burn-rate arithmetic (pure, no Django).

An objective says which share of the requests to some routes must be good over a window:

- ``availability``: good means not a 5xx response;
- ``latency``: good means answered within ``threshold_ms`` (a boundary of ``METRICS_BUCKETS``).

Alerts follow the multiwindow, multi-burn-rate form of the Google SRE workbook ("Alerting on SLOs"):
a *burn rate* of 1 spends exactly the error budget over the objective's window; the page fires when
both a long and a short window burn faster than 14.4 (1h and 5m) or 6 (6h and 30m), the ticket when
they burn faster than 3 (1d and 2h) or 1 (3d and 6h). The rules themselves are built in
:mod:`django_observe.alerting.rules`.

The objectives themselves (``Objective``, the parsing of ``SLOS``) are ``django_observe.objectives``'s; this
module imports neither Django nor PyYAML.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "ALERT_PAIRS",
    "KINDS",
    "RATE_WINDOWS",
    "WINDOWS",
    "AlertPair",
    "Objective",
    "budget_consumed",
    "burn_threshold",
    "example_route",
    "parse_objectives",
    "seconds",
    "threshold_problem",
]

from ..objectives import (
    ALERT_PAIRS,
    KINDS,
    RATE_WINDOWS,
    WINDOWS,
    AlertPair,
    Objective,
    parse_objectives,
    seconds,
    threshold_problem,
)


def burn_threshold(objective: Objective, pair: AlertPair) -> float:
    """The error ratio above which ``pair`` trips: its burn rate times the error budget."""
    return pair.factor * objective.budget


def budget_consumed(pair: AlertPair, window: str) -> float:
    """Share of a ``window`` budget spent by burning at ``pair.factor`` for its long window.

    For 30 days this is the workbook's 2%, 5%, 10% and 10%.
    """
    return pair.factor * seconds(pair.long) / seconds(window)


def example_route(pattern: str | None) -> str | None:
    """A short route label that ``pattern`` matches in full, or ``None`` if none could be derived.

    Used to build unit-test series; handles literals, classes, repeats, alternatives and groups.
    """
    if pattern is None:
        return "api/example"
    try:
        candidate = _render(_regex_parser().parse(pattern))
    except (ValueError, KeyError, TypeError):
        return None
    for route in (candidate, "api/example") if candidate else ("api/example", candidate):
        if re.fullmatch(pattern, route):
            return route
    return None


def _regex_parser() -> Any:
    """``re._parser``: the only parser of Python's regular expression syntax that Python ships.

    No public API exposes the parse tree (``sre_parse`` is its deprecated alias), and an example string must
    follow Python's own syntax, which ``routes`` is validated with. It is imported here, not at module level,
    so that a Python without it only breaks the generation of promtool tests; tests/unit/test_slo.py checks
    the names used below and fails when a Python release changes them.
    """
    from re import _parser  # type: ignore[attr-defined]

    return _parser


def _render(parsed: Any) -> str:
    from re import _constants as c  # type: ignore[attr-defined]  # see _regex_parser

    out = []
    for op, arg in parsed:
        if op is c.LITERAL:
            out.append(chr(arg))
        elif op is c.NOT_LITERAL:
            out.append("a" if chr(arg) != "a" else "b")
        elif op is c.ANY:
            out.append("x")
        elif op is c.IN:
            out.append(_render_in(arg, c))
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT):
            low, _high, sub = arg
            out.append(_render(sub) * low)
        elif op is c.SUBPATTERN:
            out.append(_render(arg[-1]))
        elif op is c.BRANCH:
            out.append(_render(arg[1][0]))
        elif op is c.AT:
            continue
        else:
            raise ValueError(op)
    return "".join(out)


def _render_in(items: Any, c: Any) -> str:
    if items and items[0][0] is c.NEGATE:
        excluded = {chr(a) for op, a in items[1:] if op is c.LITERAL}
        return next(ch for ch in "abcxyz019" if ch not in excluded)
    op, arg = items[0]
    if op is c.LITERAL:
        return chr(arg)
    if op is c.RANGE:
        return chr(arg[0])
    if op is c.CATEGORY:
        return {c.CATEGORY_DIGIT: "0", c.CATEGORY_WORD: "a", c.CATEGORY_SPACE: " "}.get(arg, "a")
    raise ValueError(op)
