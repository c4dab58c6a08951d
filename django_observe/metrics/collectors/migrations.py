"""``db_migrations_applied{alias}`` and ``db_migrations_unapplied{alias}``, read at scrape time.

Migrations change only with a deploy, so the counts are cached (a minute by default): a scrape reads the
migration files and the ``django_migrations`` table at most once per interval. Computed in the process that
serves the scrape, once for the whole group: unlike gauges each process sets at start-up, nothing is
multiplied by the number of processes. A read that overruns the collector deadline finishes in its thread
and fills the cache for the next scrape.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from .base import Deadline, ScrapeCollector, ScrapeErrors

__all__ = ["MigrationsCollector", "count_migrations", "migration_aliases"]


def migration_aliases(databases: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Aliases with a real database (Django's dummy backend, for ``DATABASES = {}``, has no migrations)."""
    return [alias for alias, s in databases.items() if s.get("ENGINE") and "dummy" not in str(s.get("ENGINE"))]


def count_migrations(connection: Any) -> tuple[int, int]:
    """``(applied, unapplied)`` for one database connection, as ``manage.py migrate`` would see them.

    Applied: the migrations recorded in its ``django_migrations`` table. Unapplied: the plan ``migrate`` would
    run to reach every app's latest migration.
    """
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return len(executor.loader.applied_migrations), len(plan)


def _count_with_own_connection(alias: str) -> tuple[int, int]:
    """On a connection of its own, closed after (the read runs in a short-lived thread)."""
    from django.db import connections

    connection = connections.create_connection(alias)
    try:
        return count_migrations(connection)
    finally:
        connection.close()


class MigrationsCollector(ScrapeCollector):
    """Migration counts per alias, cached for ``ttl`` seconds.

    Args:
        aliases: database aliases (:func:`migration_aliases`).
        ttl: seconds a result is reused.
        count: ``alias -> (applied, unapplied)`` (default: Django's migration executor on a new connection).
    """

    collector = "migrations"

    def __init__(
        self,
        prefix: str,
        errors: ScrapeErrors,
        deadline: Deadline,
        aliases: Sequence[str],
        ttl: float = 60.0,
        count: Callable[[str], tuple[int, int]] = _count_with_own_connection,
        clock: Callable[[], float] = time.monotonic,
    ):
        # Its own cache (``ttl``, with a failed alias retried at once) replaces the shared one-second cache.
        super().__init__(prefix, errors, deadline, cache_seconds=0)
        self.aliases, self.ttl, self.count, self.clock = tuple(aliases), ttl, count, clock
        self._cached: tuple[float, dict[str, tuple[int, int]]] | None = None
        self._lock = threading.Lock()

    def families(self) -> list[GaugeMetricFamily]:
        p = self.prefix
        return [
            GaugeMetricFamily(
                f"{p}db_migrations_applied", "Migrations recorded as applied in each database.", labels=["alias"]
            ),
            GaugeMetricFamily(
                f"{p}db_migrations_unapplied",
                "Migrations not yet applied to each database (migrate's plan).",
                labels=["alias"],
            ),
        ]

    def _counts(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            cached = self._cached
            if cached is not None and self.clock() - cached[0] < self.ttl:
                return cached[1]
            counts = {}
            for alias in self.aliases:
                try:
                    counts[alias] = self.count(alias)
                except Exception as exc:
                    self.errors.failed(self.collector, exc, alias)
            if len(counts) == len(self.aliases):  # a failed alias is tried again at the next scrape
                self._cached = (self.clock(), counts)
            return counts

    def read(self) -> list[Metric]:
        applied, unapplied = self.families()
        for alias, (done, pending) in self._counts().items():
            applied.add_metric([alias], done)
            unapplied.add_metric([alias], pending)
        return [applied, unapplied]
