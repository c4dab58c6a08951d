"""Built-in health checks.

Each check is a django-health-check ``HealthCheck`` dataclass, so it also works
in ``health_check.views.HealthCheckView``. ``run()`` returns ``None`` or an
:class:`Observation` (used by the health+json format) and raises
``ServiceUnavailable``/``ServiceWarning`` with a message that is safe to show
publicly; the raw error is chained as ``__cause__`` and shown only to
authorized callers.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import os
import shutil
import uuid
from typing import Any

from .library import HealthCheck, ServiceUnavailable, ServiceWarning

__all__ = [
    "Cache",
    "CeleryBroker",
    "CeleryQueues",
    "CeleryWorkers",
    "Database",
    "Disk",
    "Memory",
    "Migrations",
    "Observation",
    "Redis",
]

VENDOR_NAMES = {
    "postgresql": "PostgreSQL",
    "sqlite": "SQLite",
    "mysql": "MySQL",
    "oracle": "Oracle",
}


@dataclasses.dataclass(frozen=True)
class Observation:
    """A measured value a check may return (``observedValue``/``observedUnit`` in health+json)."""

    value: Any
    unit: str


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


@dataclasses.dataclass
class Database(HealthCheck):
    """``SELECT 1`` on one database alias, on a connection opened and closed for the check."""

    alias: str = "default"
    timeout: datetime.timedelta = dataclasses.field(default=_seconds(2), repr=False)

    def run(self) -> None:
        from django.db import connections
        from django.utils.connection import ConnectionDoesNotExist

        try:
            connection = connections[self.alias]
        except ConnectionDoesNotExist as exc:
            raise ServiceUnavailable(f"Database alias {self.alias!r} does not exist") from exc
        name = VENDOR_NAMES.get(connection.vendor, connection.vendor)
        # Checks run in pool threads: a connection left open there would leak or go stale.
        connection.close_if_unusable_or_obsolete()
        try:
            with connection.temporary_connection() as cursor:
                cursor.execute("SELECT 1 FROM DUAL" if connection.vendor == "oracle" else "SELECT 1")
                row = cursor.fetchone()
        except Exception as exc:
            raise ServiceUnavailable(f"Cannot connect to {name}") from exc
        if row is None or row[0] != 1:
            raise ServiceUnavailable(f"{name} returned an unexpected result")


@dataclasses.dataclass
class Cache(HealthCheck):
    """A set/get/delete round trip on one cache alias."""

    alias: str = "default"
    timeout: datetime.timedelta = dataclasses.field(default=_seconds(2), repr=False)

    def run(self) -> None:
        from django.core.cache import caches

        cache = caches[self.alias]
        key = f"django_observe:health:{uuid.uuid4().hex}"
        try:
            cache.set(key, "ok", timeout=30)
            value = cache.get(key)
            cache.delete(key)
        except Exception as exc:
            raise ServiceUnavailable(f"Cannot reach cache {self.alias!r}") from exc
        if value != "ok":
            raise ServiceUnavailable(f"Cache {self.alias!r} did not return the value it stored")


@dataclasses.dataclass
class Redis(HealthCheck):
    """``PING`` on a Redis URL; the client (and its pool) is kept between runs."""

    url: str = dataclasses.field(default="redis://localhost:6379/0", repr=False)
    timeout: datetime.timedelta = dataclasses.field(default=_seconds(2), repr=False)
    _client: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def run(self) -> None:
        import redis

        if self._client is None:
            seconds = self.timeout.total_seconds()
            self._client = redis.Redis.from_url(
                self.url, socket_timeout=seconds, socket_connect_timeout=seconds, health_check_interval=0
            )
        try:
            self._client.ping()
        except Exception as exc:
            raise ServiceUnavailable("Cannot connect to Redis") from exc


def _load_celery_app(spec: Any) -> Any:
    if spec is None or not isinstance(spec, str):
        return spec
    from django.utils.module_loading import import_string

    return import_string(spec.replace(":", "."))


@dataclasses.dataclass
class CeleryBroker(HealthCheck):
    """Open (and close) a connection to the Celery broker."""

    app: Any = dataclasses.field(default=None, repr=False)
    timeout: datetime.timedelta = dataclasses.field(default=_seconds(2), repr=False)

    def run(self) -> None:
        app = _load_celery_app(self.app)
        try:
            with app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.timeout.total_seconds())
        except Exception as exc:
            raise ServiceUnavailable("Cannot connect to the Celery broker") from exc


@dataclasses.dataclass
class CeleryWorkers(HealthCheck):
    """At least ``min_workers`` Celery workers answer a ping.

    The ping returns as soon as ``min_workers`` replies arrive, so a healthy
    probe costs one round trip, not the whole ping timeout.
    """

    app: Any = dataclasses.field(default=None, repr=False)
    min_workers: int = 1
    timeout: datetime.timedelta = dataclasses.field(default=_seconds(2), repr=False)

    def run(self) -> Observation:
        app = _load_celery_app(self.app)
        ping_timeout = max(0.1, min(1.0, self.timeout.total_seconds() / 2))
        try:
            replies = app.control.ping(timeout=ping_timeout, limit=self.min_workers or None) or []
        except Exception as exc:
            raise ServiceUnavailable("Cannot reach Celery workers") from exc
        alive = sum(1 for reply in replies for answer in reply.values() if answer.get("ok") == "pong")
        if alive < self.min_workers:
            raise ServiceUnavailable(f"{alive} of {self.min_workers} required Celery workers answered")
        return Observation(alive, "workers")


def configured_queues(app: Any) -> list[str]:
    """The queue names of ``app``: ``task_queues`` when set, else ``task_default_queue``."""
    queues = app.conf.task_queues
    if queues:
        names = [getattr(queue, "name", queue) for queue in (queues.values() if isinstance(queues, dict) else queues)]
        return sorted({str(name) for name in names})
    return [str(app.conf.task_default_queue or "celery")]


@dataclasses.dataclass
class CeleryQueues(HealthCheck):
    """Every configured queue has at least one consuming worker (``inspect().active_queues()``).

    The inspect call waits for every worker's reply, so a run takes about half the check's timeout (at most
    one second); with ``queues`` empty the app's ``task_queues`` (or ``task_default_queue``) are checked.
    """

    app: Any = dataclasses.field(default=None, repr=False)
    queues: tuple[str, ...] = ()
    timeout: datetime.timedelta = dataclasses.field(default=_seconds(2), repr=False)

    def run(self) -> Observation:
        app = _load_celery_app(self.app)
        wanted = list(self.queues) or configured_queues(app)
        wait = max(0.1, min(1.0, self.timeout.total_seconds() / 2))
        try:
            replies = app.control.inspect(timeout=wait).active_queues() or {}
        except Exception as exc:
            raise ServiceUnavailable("Cannot reach Celery workers") from exc
        consumed = {str(queue.get("name")) for queues in replies.values() for queue in (queues or [])}
        missing = [name for name in wanted if name not in consumed]
        if missing:
            raise ServiceUnavailable(f"No worker consumes {', '.join(missing)}")
        return Observation(len(wanted), "queues")


@dataclasses.dataclass
class Migrations(HealthCheck):
    """No unapplied migrations on a database alias.

    Once everything is applied the result is remembered: the code of a running
    process cannot gain new migrations.
    """

    alias: str = "default"
    timeout: datetime.timedelta = dataclasses.field(default=_seconds(2), repr=False)
    _applied: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)

    def run(self) -> None:
        if self._applied:
            return
        from django.db import connections
        from django.db.migrations.executor import MigrationExecutor

        connection = connections[self.alias]
        try:
            executor = MigrationExecutor(connection)
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        except Exception as exc:
            raise ServiceUnavailable("Cannot read the migration state") from exc
        finally:
            connection.close()
        if plan:
            names = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
            more = f" and {len(plan) - 5} more" if len(plan) > 5 else ""
            raise ServiceUnavailable(f"{len(plan)} unapplied migration(s): {names}{more}")
        self._applied = True


@dataclasses.dataclass
class Disk(HealthCheck):
    """Warn when a filesystem holding one of ``paths`` is fuller than ``warn_percent``."""

    paths: tuple[str, ...] = (".",)
    warn_percent: float = 90.0
    timeout: datetime.timedelta = dataclasses.field(default=_seconds(2), repr=False)

    def run(self) -> Observation:
        worst = 0.0
        for path in self.paths:
            try:
                usage = shutil.disk_usage(path)
            except OSError as exc:
                raise ServiceWarning(f"Cannot read disk usage of a configured path ({exc.strerror})") from exc
            worst = max(worst, 100.0 * usage.used / usage.total if usage.total else 0.0)
        if worst > self.warn_percent:
            raise ServiceWarning(f"Disk {worst:.1f}% full (threshold {self.warn_percent:g}%)")
        return Observation(round(worst, 1), "percent")


def memory_readable() -> bool:
    """Whether :func:`memory_percent` can read the memory use, without importing psutil."""
    if importlib.util.find_spec("psutil") is not None:
        return True
    return os.access("/proc/meminfo", os.R_OK)


def memory_percent() -> float | None:
    """Used memory of the host (or container) in percent, or None when unreadable."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return float(psutil.virtual_memory().percent)
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) for line in fh if line.count(":") == 1}
        return 100.0 * (1 - info["MemAvailable"] / info["MemTotal"])
    except (OSError, KeyError, ValueError, ZeroDivisionError):
        return None


@dataclasses.dataclass
class Memory(HealthCheck):
    """Warn when memory use is above ``warn_percent``."""

    warn_percent: float = 90.0
    timeout: datetime.timedelta = dataclasses.field(default=_seconds(2), repr=False)

    def run(self) -> Observation | None:
        used = memory_percent()
        if used is None:
            return None
        if used > self.warn_percent:
            raise ServiceWarning(f"Memory {used:.1f}% used (threshold {self.warn_percent:g}%)")
        return Observation(round(used, 1), "percent")
