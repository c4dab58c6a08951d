"""Database cost per request and per task: statements run, time spent, and repeated statements (N+1).

One ``connection.execute_wrapper`` per connection (every alias, pooled connections too; installed by
``django_observe.integrations.db``) times each statement; it feeds the ``db_client_*`` metrics when they are
on and the :class:`QueryStats` of the current request or task when one is open. A statement *shape* is the
SQL Django sends with its placeholders (``... WHERE id = %s``), so an N+1 loop shows up as one shape
repeated; parameters are never kept.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from .requestinfo import RequestState, request_state

__all__ = ["QueryCounter", "QueryStats", "current", "log_repeated"]

logger = logging.getLogger("django_observe.db")
STATEMENT_CHARS = 300


DEFAULT_THRESHOLD = 10
_NO_REPEATS: Mapping[str, int] = MappingProxyType({})


class QueryStats(RequestState):
    """What one request or task ran.

    It is also the request's :class:`~django_observe.requestinfo.RequestState`: one object and one context
    variable per request carry everything it gathers. No ``__init__``: the class attributes are the defaults,
    so creating one runs no Python code, and its dicts are made by the first statement.

    Attributes:
        count: statements executed.
        seconds: time spent in them.
        repeated: shapes that ran more than the threshold, each with its count, in the order they crossed it.
    """

    count: int = 0
    seconds: float = 0.0
    threshold: int = DEFAULT_THRESHOLD
    shapes: dict[str, int] | None = None
    repeated: Mapping[str, int] = _NO_REPEATS

    def add(self, sql: str, seconds: float) -> None:
        self.count += 1
        self.seconds += seconds
        shapes = self.shapes
        if shapes is None:
            shapes = self.shapes = {}
        seen = shapes.get(sql, 0) + 1
        shapes[sql] = seen
        if seen > self.threshold:
            if self.repeated is _NO_REPEATS:
                self.repeated = {}
            self.repeated[sql] = seen  # type: ignore[index]

    @property
    def milliseconds(self) -> float:
        return round(self.seconds * 1000, 2)

    def worst_repeat(self) -> tuple[str, int] | None:
        """The most repeated shape over the threshold, or None."""
        if not self.repeated:
            return None
        return max(self.repeated.items(), key=lambda item: item[1])


def current() -> QueryStats | None:
    """The stats of the request or task running in this context."""
    state = request_state.get()
    return state if isinstance(state, QueryStats) else None


class QueryCounter:
    """Opens and closes the :class:`QueryStats` of requests and tasks.

    Args:
        enabled: count statements (``DB_QUERY_STATS``); off, :meth:`begin` returns None and costs nothing.
        threshold: a shape run more often than this in one request or task is an N+1
            (``DB_REPEATED_QUERY_THRESHOLD``).
    """

    __slots__ = ("enabled", "threshold")

    def __init__(self, enabled: bool, threshold: int = DEFAULT_THRESHOLD):
        self.enabled, self.threshold = enabled, threshold

    @property
    def new(self) -> Callable[[], QueryStats]:
        """Makes fresh stats, not yet bound (the middleware binds them as the request's state): the class
        itself with the default threshold, so making them runs no Python code."""
        return QueryStats if self.threshold == DEFAULT_THRESHOLD else self._with_threshold

    def _with_threshold(self) -> QueryStats:
        stats = QueryStats()
        stats.threshold = self.threshold
        return stats

    def begin(self) -> contextvars.Token[RequestState | None] | None:
        """Start counting for a task (None when counting is off)."""
        if not self.enabled:
            return None
        return request_state.set(self.new())

    @staticmethod
    def end(token: contextvars.Token[RequestState | None] | None) -> QueryStats | None:
        """Stop counting; returns what ran since :meth:`begin`."""
        if token is None:
            return None
        stats = current()
        try:
            request_state.reset(token)
        except ValueError:  # ended in another context (a response closed elsewhere): just clear it
            request_state.set(None)
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
