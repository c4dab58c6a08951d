"""A dead-collector circuit breaker around the exporters (spans, OTLP log records).

With the collector down, the SDK's OTLP exporter spends each batch retrying (a new connection, backoff, up to
its timeout) in the batch processor's thread; the queue fills meanwhile and the SDK drops what does not fit.
Every attempt builds a connection and an exception chain and serialises the batch again: CPU for nothing and,
measured over 50,000 requests, resident memory that kept growing (docs/performance.md, "Memory does not grow").

After a failed export the breaker opens: batches are dropped without trying until a backoff expires (1 s,
doubling up to 30 s while the collector stays down), each dropped item counted (``on_drop``) and one log line
when it opens. When the backoff expires the next batch is tried, its first item alone first (``TRIAL_ITEMS``):
a collector still down costs the encoding of one item, not of a whole batch (512 spans, about a megabyte of
transient memory in the export thread, whose malloc arena keeps it). The trial's success closes the breaker
(one line says how many were dropped meanwhile) and the rest of the batch follows. A healthy collector sees
every batch whole: the breaker acts only after a failure.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import forking

__all__ = ["CollectorUnreachable", "ExportBreaker", "fail_fast_session"]

logger = logging.getLogger("django_observe.export")

FIRST_BACKOFF = 1.0
LONGEST_BACKOFF = 30.0
TRIAL_ITEMS = 1


class ExportBreaker:
    """Wraps an exporter (``export(batch)``, ``shutdown()``, ``force_flush()``).

    Args:
        exporter: the wrapped exporter.
        what: what it exports, in the plural (``spans``, ``log records``), for the lines.
        where: the endpoint, for the lines.
        failure: the result returned for a batch dropped without trying (the SDK's ``FAILURE``).
        succeeded: tells whether an export's result is a success.
        on_drop: called with the number of items dropped without trying.
        first, longest: the backoff after the first failure, and its bound while failures go on.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        exporter: Any,
        *,
        what: str,
        where: str,
        failure: Any,
        succeeded: Callable[[Any], bool],
        on_drop: Callable[[int], None] | None = None,
        first: float = FIRST_BACKOFF,
        longest: float = LONGEST_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.exporter = exporter
        # The first export imports the exporter's encoders and its HTTP client's lazy modules.
        self._export = forking.forks_wait_for_first_call(exporter.export)
        self.what, self.where = what, where
        self._failure, self._succeeded, self._on_drop = failure, succeeded, on_drop
        self._first, self._longest, self._clock = first, longest, clock
        self._lock = threading.Lock()
        self._failures = 0  # consecutive failed exports
        self._retry_at = 0.0  # no export is tried before this time
        self.dropped = 0  # dropped without trying since the breaker last opened
        self.dropped_total = 0

    @property
    def open(self) -> bool:
        return self._clock() < self._retry_at

    def export(self, batch: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            drop = self._clock() < self._retry_at
            trial = self._failures > 0
        if drop:
            self._drop(len(batch))
            return self._failure
        if trial and len(batch) > TRIAL_ITEMS:
            result = self._export(batch[:TRIAL_ITEMS], *args, **kwargs)
            if not self._succeeded(result):
                self._failed()
                self._drop(len(batch) - TRIAL_ITEMS)
                return result
            self._closed()
            batch = batch[TRIAL_ITEMS:]
        result = self._export(batch, *args, **kwargs)
        if self._succeeded(result):
            self._closed()
        else:
            self._failed()
        return result

    def _drop(self, count: int) -> None:
        with self._lock:
            self.dropped += count
            self.dropped_total += count
        if self._on_drop is not None:
            try:
                self._on_drop(count)
            except Exception:  # a counter must never break the export thread
                pass

    def _closed(self) -> None:
        with self._lock:
            if not self._failures:
                return
            dropped, self._failures, self._retry_at, self.dropped = self.dropped, 0, 0.0, 0
        logger.warning(
            "OTLP export of %s to %s works again; %d %s were dropped without trying while it failed",
            self.what,
            self.where,
            dropped,
            self.what,
        )

    def _failed(self) -> None:
        with self._lock:
            self._failures += 1
            backoff = min(self._longest, self._first * 2 ** min(self._failures - 1, 30))
            self._retry_at = self._clock() + backoff
            first = self._failures == 1
        if first:
            logger.warning(
                "OTLP export of %s to %s failed: further %s are dropped without trying for %gs, then up to %gs "
                "at a time, until an export succeeds (counted in otel_export_dropped_total)",
                self.what,
                self.where,
                self.what,
                backoff,
                self._longest,
            )

    def shutdown(self, *args: Any, **kwargs: Any) -> Any:
        return self.exporter.shutdown(*args, **kwargs)

    def force_flush(self, *args: Any, **kwargs: Any) -> Any:
        return self.exporter.force_flush(*args, **kwargs)


class CollectorUnreachable(OSError):
    """No connection could be made to the collector (refused, unreachable, or its name does not resolve)."""


# The OTLP HTTP exporters' own credential-provider settings: a session they build, which ours would replace.
_CREDENTIAL_PROVIDERS = (
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER",
)


def fail_fast_session(environ: Mapping[str, str]) -> Any:
    """A ``requests`` session for an OTLP HTTP exporter behind the breaker, or None when the exporter builds its
    own (a credential provider is configured).

    The exporter retries a connection error with backoff (1, 2, 4 s) within its timeout, holding the batch
    processor's thread while the queue fills with up to 2,048 spans: about 7 s and 5 MB for a collector that
    is down. A connection that cannot even be opened is raised here as :class:`CollectorUnreachable`, which
    the exporter does not retry: the export fails at once and the breaker backs off instead. Timeouts,
    resets and HTTP statuses are left to the exporter's retries as before.
    """
    if any(environ.get(name) for name in _CREDENTIAL_PROVIDERS):
        return None
    import requests
    from urllib3.exceptions import NewConnectionError

    class FailFastSession(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().request(*args, **kwargs)
            except requests.exceptions.ConnectionError as exc:
                reason = getattr(exc.args[0] if exc.args else None, "reason", None)
                if isinstance(reason, NewConnectionError):
                    raise CollectorUnreachable(str(exc)) from exc
                raise

    return FailFastSession()
