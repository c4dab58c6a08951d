"""What every scrape-time collector shares: the deadline, the error accounting and a short result cache.

Every collector reads its dependency inside :class:`Deadline` (a daemon thread joined with a timeout), so a slow
dependency never stalls a scrape. A failure counts ``metrics_collector_errors_total{collector}`` and logs one line
(at most one per collector every five minutes); the scrape itself always succeeds. :func:`guarded_read` does all
three, and with a :class:`ResultCache` reuses the last outcome for a second, so a flood of scrapes reaches each
dependency at most once per interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

# The families collectors fill with add_metric().
Family = GaugeMetricFamily | CounterMetricFamily

__all__ = [
    "CollectorBusy",
    "Deadline",
    "ErrorsCollector",
    "ResultCache",
    "ScrapeCollector",
    "ScrapeErrors",
    "gauge",
    "guarded_read",
]

logger = logging.getLogger("django_observe.metrics")
# Set on a Deadline's thread when its read overran (see ScrapeErrors.failed).
OVERRUN_ATTR = "django_observe_overrun"

T = TypeVar("T")


class ScrapeErrors:
    """Failures of scrape-time collectors, counted per collector name (in the scraping process).

    Args:
        log_every: seconds between two log lines about the same collector.
    """

    def __init__(self, log_every: float = 300.0):
        self.log_every = log_every
        self.counts: dict[str, int] = {}
        self._logged: dict[str, float] = {}
        self._lock = threading.Lock()

    def failed(self, collector: str, exc: BaseException, target: str = "") -> None:
        """Count one failure; log it unless this collector logged less than ``log_every`` seconds ago.

        A read that overran its deadline was counted then (as a timeout): what it reports afterwards is not.
        """
        if getattr(threading.current_thread(), OVERRUN_ATTR, False):
            return
        now = time.monotonic()
        with self._lock:
            self.counts[collector] = self.counts.get(collector, 0) + 1
            last = self._logged.get(collector)
            log = last is None or now - last >= self.log_every
            if log:
                self._logged[collector] = now
        if log:
            # Only the exception type: messages of client libraries may carry hosts or credentials.
            where = f" ({target})" if target else ""
            logger.warning(
                "metrics collector %s%s failed: %s (failures so far: %d; the scrape goes on without it)",
                collector,
                where,
                type(exc).__name__,
                self.counts[collector],
            )


class ErrorsCollector:
    """``metrics_collector_errors_total{collector}``: the one family every collector's failures go to."""

    def __init__(self, prefix: str, errors: ScrapeErrors):
        self.name, self.errors = f"{prefix}metrics_collector_errors", errors

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, "Failures of scrape-time collectors.", labels=["collector"])

    def describe(self) -> Sequence[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        for collector, count in sorted(self.errors.counts.items()):
            family.add_metric([collector], count)
        yield family


class CollectorBusy(Exception):
    """The previous read of this collector is still running (its dependency hangs)."""


class Deadline:
    """Runs a read in a daemon thread and waits at most ``timeout`` seconds for it.

    A read that overruns keeps running in its thread (it cannot be interrupted) and is not started again
    until it ends, so a hung dependency costs one thread, not one per scrape. Daemon threads never
    delay the process's exit.
    """

    def __init__(self, timeout: float):
        self.timeout = timeout
        self._running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def run(self, name: str, read: Callable[[], T]) -> T:
        """``read()``'s result; raises ``TimeoutError``, :class:`CollectorBusy` or what ``read`` raised."""
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = read()
            except BaseException as exc:  # re-raised in the caller
                box["error"] = exc

        with self._lock:
            previous = self._running.get(name)
            if previous is not None and previous.is_alive():
                raise CollectorBusy(name)
            thread = threading.Thread(target=target, name=f"django_observe_collect_{name}", daemon=True)
            self._running[name] = thread
            thread.start()
        thread.join(self.timeout)
        if thread.is_alive():
            setattr(thread, OVERRUN_ATTR, True)
            raise TimeoutError(f"collector {name} took longer than {self.timeout:g}s")
        if "error" in box:
            raise box["error"]
        return box["value"]


class ResultCache:
    """The last outcome of a read, reused for ``seconds`` (0 disables the cache).

    Scrapes that arrive while a read is in flight wait for it (at most the deadline) and reuse its outcome
    instead of starting their own, so the dependency sees one read per interval however many scrapes come.

    Args:
        seconds: how long an outcome is reused (``METRICS_COLLECTOR_CACHE_SECONDS``).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, seconds: float = 1.0, clock: Callable[[], float] = time.monotonic):
        if seconds < 0:
            raise ValueError(f"cache seconds must be 0 (no cache) or more, got {seconds!r}")
        self.seconds, self.clock = seconds, clock
        self._at: float | None = None
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self, read: Callable[[], T]) -> T:
        """``read()``'s result, or the last one if it is younger than ``seconds``."""
        if self.seconds <= 0:
            return read()
        with self._lock:
            now = self.clock()
            if self._at is not None and now - self._at < self.seconds:
                return self._value
            value = read()
            self._at, self._value = now, value
            return value


def guarded_read(
    name: str,
    read: Callable[[], T],
    deadline: Deadline,
    errors: ScrapeErrors,
    cache: ResultCache | None = None,
    default: Any = None,
) -> Any:
    """``read()`` under ``deadline``; a failure counts under ``collector=name``, logs (rate-limited), gives ``default``.

    With ``cache``, the outcome (a failure too) is reused while it is fresh: a hung or failing dependency is
    neither asked again nor counted again within the interval.
    """

    def attempt() -> Any:
        try:
            return deadline.run(name, read)
        except Exception as exc:
            errors.failed(name, exc)
            return default

    return attempt() if cache is None else cache.get(attempt)


class ScrapeCollector:
    """Base of the scrape-time collectors: ``read()`` returns the families, run by :func:`guarded_read`.

    Args:
        prefix: ``METRICS_NAMESPACE`` followed by ``_`` (or empty).
        errors: where failures are counted.
        deadline: bounds each read (``METRICS_COLLECTOR_TIMEOUT``).
        cache_seconds: how long a read's families are reused (0: read at every scrape).
    """

    collector = "collector"

    def __init__(self, prefix: str, errors: ScrapeErrors, deadline: Deadline, *, cache_seconds: float = 1.0):
        self.prefix, self.errors, self.deadline = prefix, errors, deadline
        self.cache = ResultCache(cache_seconds)

    def families(self) -> Sequence[Family]:
        """Empty families (names, types, help): what ``describe()`` returns."""
        raise NotImplementedError

    def read(self) -> Sequence[Metric]:
        raise NotImplementedError

    def describe(self) -> Sequence[Metric]:
        return self.families()

    def collect(self) -> Iterable[Metric]:
        yield from guarded_read(self.collector, self.read, self.deadline, self.errors, self.cache, default=[])


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))
