"""Database cost per request and per task: statements run, time spent, and repeated statements (N+1).

One ``connection.execute_wrapper`` per connection (every alias, pooled connections too) times each
statement; it feeds the ``db_client_*`` metrics when they are on and the :class:`QueryStats` of the
current request or task when one is open. A statement *shape* is the SQL Django sends with its
placeholders (``... WHERE id = %s``), so an N+1 loop shows up as one shape repeated; parameters are
never kept.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .metrics.catalogue import Catalogue

__all__ = ["QueryCounter", "QueryStats", "QueryWrapper", "current", "install", "log_repeated"]

logger = logging.getLogger("django_observe.db")
STATEMENT_CHARS = 300


class QueryStats:
    """What one request or task ran.

    Attributes:
        count: statements executed.
        seconds: time spent in them.
        repeated: shapes that ran more than the threshold, each with its count, in the order they crossed it.
    """

    __slots__ = ("count", "repeated", "seconds", "shapes", "threshold")

    def __init__(self, threshold: int):
        self.count = 0
        self.seconds = 0.0
        self.threshold = threshold
        self.shapes: dict[str, int] = {}
        self.repeated: dict[str, int] = {}

    def add(self, sql: str, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        seen = self.shapes.get(sql, 0) + 1
        self.shapes[sql] = seen
        if seen > self.threshold:
            self.repeated[sql] = seen

    @property
    def milliseconds(self) -> float:
        return round(self.seconds * 1000, 2)

    def worst_repeat(self) -> tuple[str, int] | None:
        """The most repeated shape over the threshold, or None."""
        if not self.repeated:
            return None
        return max(self.repeated.items(), key=lambda item: item[1])


_current: contextvars.ContextVar[QueryStats | None] = contextvars.ContextVar("django_observe_query_stats", default=None)


def current() -> QueryStats | None:
    """The stats of the request or task running in this context."""
    return _current.get()


class QueryCounter:
    """Opens and closes the :class:`QueryStats` of requests and tasks.

    Args:
        enabled: count statements (``DB_QUERY_STATS``); off, :meth:`begin` returns None and costs nothing.
        threshold: a shape run more often than this in one request or task is an N+1
            (``DB_REPEATED_QUERY_THRESHOLD``).
    """

    __slots__ = ("enabled", "threshold")

    def __init__(self, enabled: bool, threshold: int = 10):
        self.enabled, self.threshold = enabled, threshold

    def begin(self) -> contextvars.Token[QueryStats | None] | None:
        """Start counting for a request or task (None when counting is off)."""
        if not self.enabled:
            return None
        return _current.set(QueryStats(self.threshold))

    @staticmethod
    def end(token: contextvars.Token[QueryStats | None] | None) -> QueryStats | None:
        """Stop counting; returns what ran since :meth:`begin`."""
        if token is None:
            return None
        stats = _current.get()
        try:
            _current.reset(token)
        except ValueError:  # ended in another context (a response closed elsewhere): just clear it
            _current.set(None)
        return stats


def log_repeated(stats: QueryStats, **fields: Any) -> None:
    """One warning for a request or task that repeated a statement shape past the threshold (N+1)."""
    worst = stats.worst_repeat()
    if worst is None:
        return
    statement, repeats = worst
    logger.warning(
        "repeated_query",
        extra={
            **fields,
            "repeats": repeats,
            "threshold": stats.threshold,
            "repeated_shapes": len(stats.repeated),
            "db_queries": stats.count,
            "statement": statement[:STATEMENT_CHARS],
        },
    )


class QueryWrapper:
    """The execute wrapper: times every statement; metrics and per-request stats are both optional."""

    __slots__ = ("duration", "errors")

    def __init__(self, catalogue: Any, alias: str, vendor: str):
        self.duration = catalogue.db_duration.labels(alias, vendor) if catalogue is not None else None
        self.errors = (catalogue.db_errors, alias, vendor) if catalogue is not None else None

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        except Exception as exc:
            if self.errors is not None:
                counter, alias, vendor = self.errors
                counter.labels(alias, vendor, type(exc).__name__).inc()
            raise
        finally:
            elapsed = time.perf_counter() - start
            if self.duration is not None:
                self.duration.observe(elapsed)
            stats = _current.get()
            if stats is not None:
                stats.add(sql, elapsed)


def install(catalogue: Callable[[], Catalogue | None]) -> None:
    """Wrap every database connection as it opens (once per process; safe to call again).

    Args:
        catalogue: returns the metrics catalogue for the ``db_client_*`` metrics, or None when DB metrics
            are off; read when each connection opens, so a rebuilt runtime applies to new connections.
    """
    from django.db.backends.signals import connection_created

    def on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
        metrics = catalogue()
        if metrics is not None:
            metrics.db_connections.labels(connection.alias, connection.vendor).inc()
        if not any(isinstance(w, QueryWrapper) for w in connection.execute_wrappers):
            connection.execute_wrappers.append(QueryWrapper(metrics, connection.alias, connection.vendor))

    connection_created.connect(on_connection_created, weak=False, dispatch_uid="django_observe.queries")
