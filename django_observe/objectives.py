"""The ``SLOS`` option's values: service level objectives, parsed and checked at start-up (pure: no Django).

The alerting rules built from them (burn rates, recording and alerting rules, promtool tests) are
:mod:`django_observe.alerting`'s, which is build-time only: nothing here imports it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ALERT_PAIRS",
    "KINDS",
    "RATE_WINDOWS",
    "WINDOWS",
    "AlertPair",
    "Objective",
    "matching_bucket",
    "parse_objectives",
    "seconds",
    "threshold_problem",
]

KINDS = ("availability", "latency")
WINDOWS = ("7d", "28d", "30d")
KEYS = ("name", "kind", "objective", "routes", "window", "threshold_ms")
RATE_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")

_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
# Constructs Python accepts but PromQL's RE2 rejects.
_NOT_RE2 = re.compile(r"\(\?[=!]|\(\?<[=!]|\(\?P=|\\[1-9]")
_UNITS = {"m": 60, "h": 3600, "d": 86400}


@dataclasses.dataclass(frozen=True)
class AlertPair:
    """One long/short window pair of the workbook's table and the burn rate that trips it."""

    severity: str
    long: str
    short: str
    factor: float


# The SRE workbook's table ("Alerting on SLOs", multiwindow, multi-burn-rate alerts).
ALERT_PAIRS = (
    AlertPair("page", "1h", "5m", 14.4),
    AlertPair("page", "6h", "30m", 6.0),
    AlertPair("ticket", "1d", "2h", 3.0),
    AlertPair("ticket", "3d", "6h", 1.0),
)


@dataclasses.dataclass(frozen=True)
class Objective:
    """One entry of ``DJANGO_OBSERVE["SLOS"]``, validated.

    Attributes:
        name: slug (lower-case letters, digits, dashes), unique; the ``slo`` label of the rules.
        kind: ``"availability"`` or ``"latency"``.
        objective: percent of good requests, strictly between 0 and 100 (e.g. 99.9).
        routes: regular expression matched against the whole ``route`` label (a Django route pattern
            such as ``api/messages/<int:message_id>``, no leading slash); ``None`` means every route.
        window: the period the objective is measured over (``"7d"``, ``"28d"`` or ``"30d"``).
        threshold_ms: for ``latency``, the time a good request stays within, in milliseconds.
    """

    name: str
    kind: str
    objective: float
    routes: str | None = None
    window: str = "30d"
    threshold_ms: float | None = None

    @property
    def budget(self) -> float:
        """The error budget: the share of requests allowed to be bad (``1 - objective / 100``)."""
        return round(1 - self.objective / 100, 12)

    @property
    def threshold_seconds(self) -> float | None:
        return None if self.threshold_ms is None else self.threshold_ms / 1000


def seconds(duration: str) -> int:
    """``"5m"``, ``"6h"``, ``"30d"`` in seconds."""
    match = re.fullmatch(r"(\d+)([mhd])", duration)
    if not match:
        raise ValueError(f"not a duration: {duration!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


# The largest objective whose page can never fire: a 14.4x burn of its budget needs all requests bad.
_MIN_OBJECTIVE = 100 * (1 - 1 / max(p.factor for p in ALERT_PAIRS))


def parse_objectives(raw: Any) -> tuple[Objective, ...]:
    """Parse ``SLOS``: a list of dicts (a JSON list in the environment) into :class:`Objective`.

    Raises:
        ValueError: naming the entry, the key and the accepted values.
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else []
        except json.JSONDecodeError as exc:
            raise ValueError(f"must be a JSON list of objects ({exc})") from None
    if not isinstance(raw, (list, tuple)):
        raise ValueError(
            'must be a list of dicts like {"name": "api", "kind": "availability", "objective": 99.9}, '
            f"got {type(raw).__name__}"
        )
    objectives = tuple(_objective(i, item) for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, item in enumerate(objectives):
        if item.name in seen:
            raise ValueError(f'entry {i}: "name" {item.name!r} is used twice; names must be unique')
        seen.add(item.name)
    return objectives


def _objective(index: int, item: Any) -> Objective:
    if isinstance(item, Objective):
        return item
    where = f"entry {index}"
    if not isinstance(item, Mapping):
        raise ValueError(f"{where} must be a dict with the keys {', '.join(KEYS)}")
    if isinstance(item.get("name"), str):
        where += f' ("{item["name"]}")'
    unknown = sorted(str(k) for k in item if k not in KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; accepted: {', '.join(KEYS)}")
    missing = [k for k in ("name", "kind", "objective") if k not in item]
    if missing:
        raise ValueError(f"{where} lacks {', '.join(repr(k) for k in missing)} (required: name, kind, objective)")

    name = item["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f'{where}: "name" must be a slug of lower-case letters, digits and dashes (1 to 63), got {name!r}'
        )
    kind = item["kind"]
    if kind not in KINDS:
        raise ValueError(f'{where}: "kind" must be one of {_quoted(KINDS)}, got {kind!r}')
    objective = _number(item["objective"])
    if objective is None or not 0 < objective < 100:
        raise ValueError(f'{where}: "objective" must be a percentage between 0 and 100 (exclusive), e.g. 99.9')
    if objective <= _MIN_OBJECTIVE:
        raise ValueError(
            f'{where}: "objective" {objective:g} is too low for burn-rate alerts: a {ALERT_PAIRS[0].factor:g}x '
            f"burn of its budget would need more than 100% bad requests; use an objective above {_MIN_OBJECTIVE:.2f}"
        )
    window = item.get("window", "30d")
    if window not in WINDOWS:
        raise ValueError(f'{where}: "window" must be one of {_quoted(WINDOWS)}, got {window!r}')
    routes = _routes(where, item.get("routes"))

    threshold = item.get("threshold_ms")
    if kind == "latency":
        threshold = _number(threshold)
        if threshold is None or threshold <= 0:
            raise ValueError(
                f'{where}: a latency objective needs "threshold_ms", a positive number of milliseconds that is a '
                "boundary of METRICS_BUCKETS (e.g. 250)"
            )
    elif threshold is not None:
        raise ValueError(f'{where}: "threshold_ms" only applies to kind "latency"')
    return Objective(name, kind, objective, routes, window, threshold)


def _routes(where: str, routes: Any) -> str | None:
    if routes is None or routes == "":
        return None
    if not isinstance(routes, str):
        raise ValueError(f'{where}: "routes" must be a regular expression string')
    try:
        re.compile(routes)
    except re.error as exc:
        raise ValueError(f'{where}: "routes" is not a valid regular expression ({exc})') from None
    if _NOT_RE2.search(routes):
        raise ValueError(
            f'{where}: "routes" uses lookarounds or backreferences, which PromQL (RE2) does not support, got {routes!r}'
        )
    if routes.lstrip("^").startswith("/"):
        raise ValueError(
            f'{where}: "routes" is matched against the whole route label, a Django route pattern without a leading '
            f'slash (e.g. "api/chat", "api/messages/<int:message_id>"); write "api/.*" rather than "^/api/", '
            f"got {routes!r}"
        )
    return routes


def threshold_problem(objective: Objective, buckets: Sequence[float]) -> str | None:
    """Why ``objective.threshold_ms`` is not a histogram boundary of ``buckets`` (``None`` if it is).

    A latency SLI counts the requests in the bucket ``le=<threshold>``, so the threshold must be a
    boundary; the message names the nearest ones and the way to add it.
    """
    threshold_ms = objective.threshold_ms
    if threshold_ms is None or matching_bucket(threshold_ms / 1000, buckets) is not None:
        return None
    ms = [b * 1000 for b in buckets]
    below = [m for m in ms if m < threshold_ms]
    above = [m for m in ms if m > threshold_ms]
    nearest = " or ".join(f"{m:g}" for m in (below[-1:] + above[:1]))
    return (
        f"threshold_ms {objective.threshold_ms:g} is not a boundary of "
        "METRICS_BUCKETS (a latency SLI counts the bucket le=<threshold>); "
        f"use {nearest}, or add {objective.threshold_seconds:g} to METRICS_BUCKETS "
        f"(boundaries in ms: {', '.join(f'{m:g}' for m in ms)})"
    )


def matching_bucket(value: float, buckets: Sequence[float]) -> float | None:
    """The boundary of ``buckets`` equal to ``value`` (within float rounding), or ``None``."""
    return next((b for b in buckets if math.isclose(b, value, rel_tol=1e-9)), None)


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)
