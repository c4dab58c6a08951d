"""Bounded exit: at shutdown, each exporter (spans, OTLP logs, OTLP metrics) gets at most
``OTEL_EXPORT_SHUTDOWN_TIMEOUT`` seconds (default 3) to deliver what it holds; the rest is dropped and one
line per exporter says how much.

A collector that accepts connections and never answers used to hold a stopping process for the exporters'
own timeouts and retries, one after another (31.5 s for a gunicorn worker: its graceful timeout, then
SIGKILL). The exporter wrappers (``tracing.redaction.RedactingSpanExporter``, the OTLP log and metric
exporters) send everything through :class:`Budget`: each call runs in a daemon thread while the caller (the
SDK's export thread) waits; once :func:`begin` was called (an ``atexit`` handler registered after the SDK's
own, so it runs before them; gunicorn's ``worker_exit``; Celery's ``worker_process_shutdown``), the wait is
given up when the exporter's budget is spent, also for an export that was already running.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Budget", "begin", "configure", "exiting", "register"]

logger = logging.getLogger("django_observe.shutdown")

T = TypeVar("T")
DEFAULT_SECONDS = 3.0
_POLL = 0.25  # how often a caller waiting for an export checks whether the exit began

_begun = threading.Event()
_seconds = [DEFAULT_SECONDS]
_registered = [False]


def configure(seconds: float) -> None:
    """Each exporter's budget at exit (``OTEL_EXPORT_SHUTDOWN_TIMEOUT``)."""
    _seconds[0] = seconds


def begin() -> None:
    """The process is stopping: exporters' calls are bounded from now on."""
    _begun.set()


def exiting() -> bool:
    return _begun.is_set()


def register() -> None:
    """Register :func:`begin` with ``atexit`` (once per process). Call it after the SDK providers exist:
    ``atexit`` runs handlers last registered first, so it runs before their shutdown."""
    atexit.register(begin)
    _registered[0] = True


class Budget:
    """One exporter's time at exit.

    Args:
        what: what it exports, in the plural (``spans``, ``log records``, ``metric exports``).
        where: the endpoint, for the line.
    """

    __slots__ = ("_lock", "deadline", "dropped", "reported", "what", "where")

    def __init__(self, what: str, where: str):
        self.what, self.where = what, where
        self.deadline: float | None = None
        self.dropped = 0
        self.reported = False
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: Any, count: int = 0, default: Any = None) -> T | Any:
        """``fn(*args)`` in a daemon thread; once the process exits, given up (``default`` returned, ``count``
        items dropped) when the exporter's budget is spent before it returns. An export already running when
        the exit begins is bounded too (the caller checks for the exit while it waits)."""
        if _begun.is_set() and self._remaining() <= 0:
            self.dropped += count
            return default
        box: list[Any] = []
        done = threading.Event()

        def run() -> None:
            try:
                box.append(fn(*args))
            except Exception:  # an exporter's error: counted as not delivered
                pass
            finally:
                done.set()

        try:
            threading.Thread(target=run, name=f"django_observe export {self.what}", daemon=True).start()
        except RuntimeError:
            # Python 3.12+ starts no thread once the interpreter is finalizing (the SDK's atexit shutdown):
            # the call runs here, bounded by the exporter's own timeout only.
            run()
        while not done.wait(_POLL):
            if _begun.is_set():
                if not done.wait(max(self._remaining(), 0)):
                    self.dropped += count
                    return default
                break
        if not box:
            if _begun.is_set():
                self.dropped += count
            return default
        return box[0]

    def _remaining(self) -> float:
        with self._lock:
            if self.deadline is None:
                self.deadline = time.monotonic() + _seconds[0]
            return self.deadline - time.monotonic()

    def report(self) -> None:
        """The one line, once, when something was dropped."""
        if self.dropped and not self.reported:
            self.reported = True
            logger.warning(
                "exit: %d %s dropped, not delivered to %s within %gs (OTEL_EXPORT_SHUTDOWN_TIMEOUT)",
                self.dropped,
                self.what,
                self.where,
                _seconds[0],
            )
