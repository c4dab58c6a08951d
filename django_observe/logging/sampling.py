"""Sampling of noisy request lines (``LOG_REQUESTS_SAMPLE``, ``LOG_SLOW_REQUEST_MS``).

Only the ``django_observe.request`` line is sampled: metrics and traces still count every request.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping

__all__ = ["RequestSampler"]


@dataclasses.dataclass(frozen=True)
class RequestSampler:
    """Decides whether a request line is logged.

    A line is always kept when the status is 400 or more, or the request took at least ``slow_ms``.
    Otherwise the keep rate of its route pattern (exact, as in the line's ``route`` field) applies, else
    that of the longest matching path prefix (matched on whole segments: ``/api/ping`` covers
    ``/api/ping`` and ``/api/ping/x``, not ``/api/pingpong``), else 1.

    Args:
        routes: route pattern -> keep rate (0 to 1).
        prefixes: ``(prefix, rate)`` pairs, longest prefix first.
        slow_ms: duration from which a line is always kept.
        random: returns a float in [0, 1) (tests pass a deterministic one).
    """

    routes: Mapping[str, float]
    prefixes: tuple[tuple[str, float], ...]
    slow_ms: float
    random: Callable[[], float] = random.random

    @classmethod
    def from_config(cls, rates: Mapping[str, float], slow_ms: float) -> RequestSampler | None:
        """Build from ``LOG_REQUESTS_SAMPLE`` (keys starting with ``/`` are path prefixes); None when empty."""
        if not rates:
            return None
        routes = {key: rate for key, rate in rates.items() if not key.startswith("/")}
        prefixes = sorted(
            ((key.rstrip("/") or "/", rate) for key, rate in rates.items() if key.startswith("/")),
            key=lambda pair: len(pair[0]),
            reverse=True,
        )
        return cls(routes, tuple(prefixes), slow_ms)

    def rate(self, path: str, route: str) -> float:
        """The keep rate of a request (1 when no key matches)."""
        rate = self.routes.get(route)
        if rate is not None:
            return rate
        for prefix, rate in self.prefixes:
            if path == prefix or path.startswith(prefix if prefix.endswith("/") else prefix + "/"):
                return rate
        return 1.0

    def keep(self, path: str, route: str, status: int, duration_ms: float) -> bool:
        """True when the line is logged."""
        if status >= 400 or duration_ms >= self.slow_ms:
            return True
        rate = self.rate(path, route)
        return rate >= 1.0 or (rate > 0.0 and self.random() < rate)
