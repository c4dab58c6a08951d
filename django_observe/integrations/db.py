"""Database statements: one ``execute_wrapper`` per connection, for the ``db_client_*`` metrics and the
per-request and per-task statement counts (:class:`django_observe.queries.QueryStats`).

Every connection (every alias, pooled ones too) gets a :class:`QueryWrapper` as it opens (Django's
``connection_created`` signal). Installed when ``METRICS_DB`` (with metrics on) or ``DB_QUERY_STATS`` is on.
"""

from __future__ import annotations

import time
from typing import Any

from ..metrics.recorders import DbMetrics, db_metrics
from ..queries import QueryStats
from ..requestinfo import request_state
from ..runtime import Runtime

__all__ = ["DbIntegration", "QueryWrapper", "integration"]

_UID = "django_observe.queries"


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
            stats = request_state.get()
            if stats is not None and type(stats) is QueryStats:
                stats.add(sql, elapsed)


# The db_client_* recorder, bound by DbIntegration.install() and read when each connection opens, so a rebuilt
# runtime applies to new connections.
_metrics = DbMetrics()


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    metrics = _metrics
    metrics.connection_opened(connection.alias, connection.vendor)
    if not any(isinstance(w, QueryWrapper) for w in connection.execute_wrappers):
        connection.execute_wrappers.append(QueryWrapper(metrics.catalogue, connection.alias, connection.vendor))


class DbIntegration:
    """The ``db`` row: wraps every database connection as it opens."""

    name = "db"

    def available(self, runtime: Runtime) -> bool:
        """Django's database layer: every project has it."""
        return True

    def install(self, runtime: Runtime) -> None:
        """Connect the ``connection_created`` receiver (once; safe to call again) when DB metrics or statement
        counting are on."""
        global _metrics
        _metrics = db_metrics(runtime.metrics, runtime.config)
        if not (_metrics.enabled or runtime.config.db_query_stats):
            return
        from django.db.backends.signals import connection_created

        connection_created.connect(_on_connection_created, weak=False, dispatch_uid=_UID)

    def uninstall(self) -> None:
        """Disconnect the receiver and take the wrapper off the connections open in this thread."""
        global _metrics
        from django.db import connections
        from django.db.backends.signals import connection_created

        _metrics = DbMetrics()
        connection_created.disconnect(dispatch_uid=_UID)
        for connection in connections.all(initialized_only=True):
            connection.execute_wrappers[:] = [w for w in connection.execute_wrappers if not isinstance(w, QueryWrapper)]


integration = DbIntegration()
