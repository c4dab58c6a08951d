"""Database connections: the psycopg pool of each process and PostgreSQL's server-side connections."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client.core import Metric

from .base import Deadline, Family, ScrapeCollector, ScrapeErrors, gauge

__all__ = ["DatabaseCollector", "PoolRecorder", "pool_aliases"]


logger = logging.getLogger("django_observe.metrics")


def _is_postgresql(settings_dict: Mapping[str, Any]) -> bool:
    return "postgresql" in str(settings_dict.get("ENGINE", "")) or "postgis" in str(settings_dict.get("ENGINE", ""))


def pool_aliases(databases: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Aliases whose settings configure Django's psycopg 3 pool (``OPTIONS["pool"]``)."""
    return [
        alias
        for alias, settings_dict in databases.items()
        if _is_postgresql(settings_dict) and (settings_dict.get("OPTIONS") or {}).get("pool")
    ]


class PoolRecorder:
    """Writes this process's psycopg pool numbers into ``livesum`` gauges (summed over live processes).

    Called at the end of requests and Celery tasks; it reads the pools at most once per ``interval`` seconds
    and never creates a pool (Django opens it on first use).

    Gauges (OpenTelemetry's ``db.client.connection.*`` names): ``db_client_connection_count{alias,state}``
    (``used``, ``idle``), ``db_client_connection_max{alias}``, ``db_client_connection_pending_requests{alias}``.
    """

    def __init__(self, namespace: str, aliases: Sequence[str], interval: float = 1.0, registry: Any = None):
        from prometheus_client import REGISTRY, Gauge

        kw: dict[str, Any] = {"namespace": namespace, "registry": REGISTRY if registry is None else registry}
        self.aliases, self.interval = tuple(aliases), interval
        self.count = Gauge(
            "db_client_connection_count",
            "Connections of the psycopg pool by state (used, idle), summed over live processes.",
            ["alias", "state"],
            multiprocess_mode="livesum",
            **kw,
        )
        self.max = Gauge(
            "db_client_connection_max",
            "Maximum size of the psycopg pool, summed over live processes.",
            ["alias"],
            multiprocess_mode="livesum",
            **kw,
        )
        self.pending = Gauge(
            "db_client_connection_pending_requests",
            "Requests waiting for a pool connection, summed over live processes.",
            ["alias"],
            multiprocess_mode="livesum",
            **kw,
        )
        self._last = 0.0

    def maybe_record(self, *args: Any, **kwargs: Any) -> None:
        """Signal receiver: record unless the last record is younger than ``interval``."""
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        try:
            self.record()
        except Exception as exc:  # never break a request or task for a metric
            logger.debug("recording pool metrics failed: %s", type(exc).__name__)

    def record(self) -> None:
        from django.db.backends.postgresql.base import DatabaseWrapper

        # Private, on purpose: the public ``connections[alias].pool`` opens the pool when it does not exist yet,
        # and this runs after every request, also in processes that never touch the database. The class-level
        # dict holds the pools Django has opened; tests/unit/test_infra_metrics.py fails if Django renames it.
        pools = DatabaseWrapper._connection_pools
        for alias in self.aliases:
            pool = pools.get(alias)
            if pool is None:
                continue
            stats = pool.get_stats()
            size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
            self.count.labels(alias, "used").set(max(size - idle, 0))
            self.count.labels(alias, "idle").set(idle)
            self.max.labels(alias).set(stats.get("pool_max", 0))
            self.pending.labels(alias).set(stats.get("requests_waiting", 0))


SERVER_CONNECTIONS_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE datname = current_database()),
       current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int
FROM pg_stat_activity
WHERE backend_type = 'client backend'
"""


class DatabaseCollector(ScrapeCollector):
    """PostgreSQL server-side connections per alias, against ``max_connections``.

    One connection per alias, opened directly with psycopg (never from Django's pool, so a full pool cannot
    block a scrape) and kept between scrapes; it is included in the numbers.

    Args:
        databases: ``settings.DATABASES`` (aliases of other vendors are skipped).
        connect: ``alias -> psycopg connection`` (default: from Django's connection parameters).
        cache_seconds: how long a read is reused (0: query at every scrape).
    """

    collector = "database"

    def __init__(
        self,
        prefix: str,
        errors: ScrapeErrors,
        deadline: Deadline,
        databases: Mapping[str, Mapping[str, Any]],
        connect: Callable[[str], Any] | None = None,
        *,
        cache_seconds: float = 1.0,
    ):
        super().__init__(prefix, errors, deadline, cache_seconds=cache_seconds)
        self.aliases = [alias for alias, s in databases.items() if _is_postgresql(s)]
        self.connect = connect or self._connect
        self._connections: dict[str, Any] = {}

    def _connect(self, alias: str) -> Any:
        import psycopg
        from django.db import connections

        params = connections.create_connection(alias).get_connection_params()
        for key in ("cursor_factory", "context", "prepare_threshold", "pool", "server_side_binding"):
            params.pop(key, None)
        timeout_ms = max(int(self.deadline.timeout * 1000), 100)
        params["connect_timeout"] = max(2, int(self.deadline.timeout + 1))
        params["options"] = f"{params.get('options', '')} -c statement_timeout={timeout_ms}".strip()
        params["application_name"] = "django_observe_metrics"
        return psycopg.connect(autocommit=True, **params)

    def families(self) -> list[Family]:
        p = self.prefix
        return [
            gauge(f"{p}db_server_connections", "Client connections open on the PostgreSQL server.", ["alias"]),
            gauge(
                f"{p}db_server_database_connections",
                "Client connections open on the PostgreSQL server to this alias's database.",
                ["alias"],
            ),
            gauge(f"{p}db_server_connections_max", "The PostgreSQL server's max_connections.", ["alias"]),
            gauge(
                f"{p}db_server_connections_usage_ratio",
                "Client connections / (max_connections - superuser_reserved_connections).",
                ["alias"],
            ),
        ]

    def _query(self, alias: str) -> tuple[int, int, int, int]:
        conn = self._connections.get(alias)
        if conn is None or conn.closed:
            conn = self._connections[alias] = self.connect(alias)
        try:
            return conn.execute(SERVER_CONNECTIONS_SQL).fetchone()
        except Exception:
            self._connections.pop(alias, None)
            with contextlib.suppress(Exception):
                conn.close()
            raise

    def read(self) -> Sequence[Metric]:
        total, database, maximum, ratio = self.families()
        for alias in self.aliases:
            try:
                count, in_database, max_connections, reserved = self._query(alias)
            except Exception as exc:
                self.errors.failed(self.collector, exc, alias)
                continue
            total.add_metric([alias], count)
            database.add_metric([alias], in_database)
            maximum.add_metric([alias], max_connections)
            usable = max(max_connections - reserved, 1)
            ratio.add_metric([alias], count / usable)
        return [total, database, maximum, ratio]
