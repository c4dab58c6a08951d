"""Infrastructure metrics collected at scrape time: database connections, Redis, disk, processes, host, active users.

Every collector reads its dependency inside :class:`Deadline` (a daemon thread joined with a timeout), so a slow
dependency never stalls a scrape. A failure counts ``metrics_collector_errors_total{collector}`` and logs one line
(at most one per collector every five minutes); the scrape itself always succeeds.

In multiprocess mode the collectors run only in the process that serves the scrape, so each reads something that
does not depend on which process that is:

- PostgreSQL server-side connections and ``max_connections`` are global to the server;
- psycopg pool numbers live in each process: every process writes its own into ``livesum`` gauges
  (:class:`PoolRecorder`, at the end of requests and tasks, at most once a second), summed over live processes;
- process CPU and memory are read from ``/proc/<pid>`` for every live process of the group
  (:class:`ProcessesCollector`);
- active users are appended to small files per process and minute (:class:`ActiveUsers`).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = [
    "ActiveUsers",
    "DatabaseCollector",
    "Deadline",
    "DiskCollector",
    "ErrorsCollector",
    "HostCollector",
    "PoolRecorder",
    "ProcessesCollector",
    "RedisCollector",
    "ScrapeErrors",
    "redis_name",
]

logger = logging.getLogger("django_observe.metrics")


# --- errors and deadlines


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
        """Count one failure; log it unless this collector logged less than ``log_every`` seconds ago."""
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

    def describe(self) -> list[Metric]:
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

    def run(self, name: str, read: Callable[[], Any]) -> Any:
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
            raise TimeoutError(f"collector {name} took longer than {self.timeout:g}s")
        if "error" in box:
            raise box["error"]
        return box["value"]


class ScrapeCollector:
    """Base of the scrape-time collectors: ``read()`` returns the families, run under the deadline."""

    collector = "collector"

    def __init__(self, prefix: str, errors: ScrapeErrors, deadline: Deadline):
        self.prefix, self.errors, self.deadline = prefix, errors, deadline

    def families(self) -> list[Metric]:
        """Empty families (names, types, help): what ``describe()`` returns."""
        raise NotImplementedError

    def read(self) -> list[Metric]:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return self.families()

    def collect(self) -> Iterable[Metric]:
        try:
            families = self.deadline.run(self.collector, self.read)
        except Exception as exc:
            self.errors.failed(self.collector, exc)
            return
        yield from families


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


# --- databases


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

        kw = {"namespace": namespace, "registry": REGISTRY if registry is None else registry}
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
    """

    collector = "database"

    def __init__(
        self,
        prefix: str,
        errors: ScrapeErrors,
        deadline: Deadline,
        databases: Mapping[str, Mapping[str, Any]],
        connect: Callable[[str], Any] | None = None,
    ):
        super().__init__(prefix, errors, deadline)
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

    def families(self) -> list[Metric]:
        p = self.prefix
        return [
            _gauge(f"{p}db_server_connections", "Client connections open on the PostgreSQL server.", ["alias"]),
            _gauge(
                f"{p}db_server_database_connections",
                "Client connections open on the PostgreSQL server to this alias's database.",
                ["alias"],
            ),
            _gauge(f"{p}db_server_connections_max", "The PostgreSQL server's max_connections.", ["alias"]),
            _gauge(
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

    def read(self) -> list[Metric]:
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


# --- Redis


def redis_name(url: str) -> str:
    """A label for a Redis URL that never contains its credentials: ``host:port/db`` or ``unix:path``."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    db = unquote(parts.path.lstrip("/")) or "0"
    return f"{parts.hostname or 'localhost'}:{port}/{db}"


class RedisCollector(ScrapeCollector):
    """``redis_memory_used_bytes``, ``redis_memory_max_bytes`` (0: no limit), ``redis_connected_clients``.

    One ``INFO`` per configured Redis (``REDIS_URLS``), labelled ``redis="host:port/db"``; clients are kept
    between scrapes, with socket timeouts of the collector's deadline and no retries.
    """

    collector = "redis"

    def __init__(self, prefix: str, errors: ScrapeErrors, deadline: Deadline, urls: Sequence[str]):
        super().__init__(prefix, errors, deadline)
        self.targets: dict[str, str] = {}
        for url in urls:
            name = redis_name(url)
            if name in self.targets:  # same server and db under two users: keep the labels distinct
                name = f"{name}#{len(self.targets)}"
            self.targets[name] = url
        self._clients: dict[str, Any] = {}

    def _client(self, name: str) -> Any:
        client = self._clients.get(name)
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            seconds = self.deadline.timeout
            client = self._clients[name] = redis.Redis.from_url(
                self.targets[name],
                socket_timeout=seconds,
                socket_connect_timeout=seconds,
                health_check_interval=0,
                retry=Retry(NoBackoff(), 0),
            )
        return client

    def families(self) -> list[Metric]:
        p = self.prefix
        return [
            _gauge(f"{p}redis_memory_used_bytes", "Memory used by Redis (INFO used_memory).", ["redis"]),
            _gauge(f"{p}redis_memory_max_bytes", "Redis maxmemory; 0 means no limit.", ["redis"]),
            _gauge(f"{p}redis_connected_clients", "Clients connected to Redis.", ["redis"]),
        ]

    def read(self) -> list[Metric]:
        used, maximum, clients = self.families()
        for name in self.targets:
            try:
                info = self._client(name).info()
            except Exception as exc:
                self.errors.failed(self.collector, exc, name)
                continue
            used.add_metric([name], float(info.get("used_memory", 0)))
            maximum.add_metric([name], float(info.get("maxmemory", 0)))
            clients.add_metric([name], float(info.get("connected_clients", 0)))
        return [used, maximum, clients]


# --- disk


class DiskCollector(ScrapeCollector):
    """``disk_used_bytes{path}`` and ``disk_total_bytes{path}`` of the filesystems holding the paths."""

    collector = "disk"

    def __init__(self, prefix: str, errors: ScrapeErrors, deadline: Deadline, paths: Sequence[str]):
        super().__init__(prefix, errors, deadline)
        self.paths = tuple(dict.fromkeys(paths))

    def families(self) -> list[Metric]:
        p = self.prefix
        return [
            _gauge(f"{p}disk_used_bytes", "Bytes used on the filesystem holding the path.", ["path"]),
            _gauge(
                f"{p}disk_total_bytes",
                "Bytes usable on the filesystem holding the path (used + available to unprivileged users).",
                ["path"],
            ),
        ]

    def read(self) -> list[Metric]:
        used, total = self.families()
        for path in self.paths:
            try:
                stat = os.statvfs(path)
            except OSError as exc:
                self.errors.failed(self.collector, exc, path)
                continue
            used_bytes = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
            # Like df: reserved root blocks are neither used nor available.
            used.add_metric([path], used_bytes)
            total.add_metric([path], used_bytes + stat.f_bavail * stat.f_frsize)
        return [used, total]


# --- processes and host


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_process(pid: int, proc: str = "/proc") -> tuple[float, int, int, int] | None:
    """``(cpu seconds, resident bytes, virtual bytes, open fds)`` of a live process, or None if it is gone."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    virtual, resident = int(fields[20]), int(fields[21]) * _PAGE_SIZE
    try:
        fds = len(os.listdir(f"{proc}/{pid}/fd"))
    except OSError:
        fds = 0
    return cpu, resident, virtual, fds


def group_pids(path: str) -> set[int]:
    """Pids of the process group of a multiprocess directory: its name (the master) and every file's pid."""
    pids = {os.getpid()}
    base = os.path.basename(os.path.normpath(path))
    if base.isdigit():
        pids.add(int(base))
    for name in glob.glob(os.path.join(path, "*.db")):
        pid = os.path.basename(name)[:-3].rsplit("_", 1)[-1]
        if pid.isdigit():
            pids.add(int(pid))
    return pids


class ProcessesCollector(ScrapeCollector):
    """prometheus_client's process metrics, summed over the live processes of a multiprocess group.

    ``process_cpu_seconds_total`` stays monotonic while the scraping process lives: the last CPU time seen of
    a process that exited is kept (its CPU between the last scrape and its exit is lost).
    """

    collector = "process"
    covers_process_metrics = True

    def __init__(self, prefix: str, errors: ScrapeErrors, deadline: Deadline, path: str, proc: str = "/proc"):
        super().__init__(prefix, errors, deadline)
        self.path, self.proc = path, proc
        self._last_cpu: dict[int, float] = {}
        self._exited_cpu = 0.0
        self._lock = threading.Lock()

    def families(self) -> list[Metric]:
        p = self.prefix
        return [
            CounterMetricFamily(
                f"{p}process_cpu_seconds", "User and system CPU time of the live processes of the group, summed."
            ),
            _gauge(f"{p}process_resident_memory_bytes", "Resident memory of the live processes of the group, summed."),
            _gauge(f"{p}process_virtual_memory_bytes", "Virtual memory of the live processes of the group, summed."),
            _gauge(f"{p}process_open_fds", "Open file descriptors of the live processes of the group, summed."),
            _gauge(f"{p}process_group_processes", "Live processes in the group (master, workers)."),
        ]

    def read(self) -> list[Metric]:
        cpu, resident, virtual, fds, count = self.families()
        seen: dict[int, tuple[float, int, int, int]] = {}
        for pid in group_pids(self.path):
            sample = read_process(pid, self.proc)
            if sample is not None:
                seen[pid] = sample
        with self._lock:
            for pid, last in self._last_cpu.items():
                if pid not in seen:
                    self._exited_cpu += last
            self._last_cpu = {pid: sample[0] for pid, sample in seen.items()}
            cpu.add_metric([], self._exited_cpu + sum(s[0] for s in seen.values()))
        resident.add_metric([], sum(s[1] for s in seen.values()))
        virtual.add_metric([], sum(s[2] for s in seen.values()))
        fds.add_metric([], sum(s[3] for s in seen.values()))
        count.add_metric([], len(seen))
        return [cpu, resident, virtual, fds, count]


def read_meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """``/proc/meminfo`` in bytes (``MemTotal``, ``MemAvailable``, ...)."""
    info = {}
    with open(path, encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                info[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return info


def cpu_cores(cgroup: str = "/sys/fs/cgroup") -> float:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (``cpu.max``)."""
    cores = float(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else float(os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError), open(os.path.join(cgroup, "cpu.max"), encoding="ascii") as fh:
        quota, period = fh.read().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    return cores


class HostCollector(ScrapeCollector):
    """``host_memory_total_bytes``, ``host_memory_available_bytes`` (``/proc/meminfo``), ``host_cpu_cores``.

    In a container ``/proc/meminfo`` shows the node; the cgroup v2 limit and usage are added as
    ``cgroup_memory_limit_bytes`` and ``cgroup_memory_used_bytes`` when a limit is set.
    """

    collector = "host"

    def __init__(
        self,
        prefix: str,
        errors: ScrapeErrors,
        deadline: Deadline,
        meminfo: str = "/proc/meminfo",
        cgroup: str = "/sys/fs/cgroup",
    ):
        super().__init__(prefix, errors, deadline)
        self.meminfo, self.cgroup = meminfo, cgroup

    def families(self) -> list[Metric]:
        p = self.prefix
        return [
            _gauge(f"{p}host_memory_total_bytes", "Memory of the host (MemTotal)."),
            _gauge(f"{p}host_memory_available_bytes", "Memory available for new work on the host (MemAvailable)."),
            _gauge(f"{p}host_cpu_cores", "CPUs this process may use (affinity, capped by a cgroup quota)."),
            _gauge(f"{p}cgroup_memory_limit_bytes", "Memory limit of the container (cgroup v2 memory.max)."),
            _gauge(f"{p}cgroup_memory_used_bytes", "Memory used by the container (cgroup v2 memory.current)."),
        ]

    def read(self) -> list[Metric]:
        total, available, cores, limit, used = self.families()
        info = read_meminfo(self.meminfo)
        total.add_metric([], info["MemTotal"])
        available.add_metric([], info.get("MemAvailable", info.get("MemFree", 0)))
        cores.add_metric([], cpu_cores(self.cgroup))
        families = [total, available, cores]
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(self.cgroup, "memory.max"), encoding="ascii") as fh:
                raw = fh.read().strip()
            if raw != "max":
                with open(os.path.join(self.cgroup, "memory.current"), encoding="ascii") as fh:
                    current = int(fh.read().strip())
                limit.add_metric([], int(raw))
                used.add_metric([], current)
                families += [limit, used]
        return families


# --- active users


_HASH = struct.Struct("<Q")


def user_hash(user_id: str) -> int:
    """A stable 64-bit hash of a user id (the same in every process; files never hold the id itself)."""
    return _HASH.unpack(hashlib.blake2b(user_id.encode(), digest_size=8).digest())[0]


class ActiveUsers:
    """Distinct authenticated users seen in the last ``window`` minutes, across the processes of a group.

    Per process and minute, a set of 64-bit user hashes; a hash new in that minute is also appended (8 bytes)
    to ``<directory>/<minute>_<pid>.bin`` so the scraping process can count the union of every process's
    minutes. The count is exact up to hash collisions (negligible below billions of users) and covers the
    current minute plus the ``window - 1`` previous ones, so a user seen once stays counted between
    ``window - 1`` and ``window`` minutes. Without a directory (single process) the sets stay in memory.

    Cost per request: one hash and a set lookup; one small append per user and minute.
    """

    def __init__(self, window: int, directory: str | None, clock: Callable[[], float] = time.time):
        self.window, self.directory, self.clock = window, directory, clock
        self._minutes: dict[int, set[int]] = {}
        self._lock = threading.Lock()
        self._file: Any = None
        self._file_key: tuple[int, int] | None = None
        if directory:
            os.makedirs(directory, exist_ok=True)

    def seen(self, user_id: str) -> None:
        """Record that ``user_id`` made a request now."""
        value = user_hash(user_id)
        minute = int(self.clock() // 60)
        with self._lock:
            current = self._minutes.get(minute)
            if current is None:
                current = self._minutes[minute] = set()
                for old in [m for m in self._minutes if m <= minute - self.window]:
                    del self._minutes[old]
            if value in current:
                return
            current.add(value)
            if self.directory:
                self._append(minute, value)

    def _append(self, minute: int, value: int) -> None:
        key = (minute, os.getpid())  # a forked child writes its own files
        if self._file_key != key:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
            self._file = open(os.path.join(self.directory, f"{minute}_{key[1]}.bin"), "ab", buffering=0)  # noqa: SIM115
            self._file_key = key
        self._file.write(_HASH.pack(value))

    def count(self) -> int:
        """Distinct users in the window; removes files that left it."""
        minute = int(self.clock() // 60)
        first = minute - self.window + 1
        if not self.directory:
            with self._lock:
                return len(set().union(*(users for m, users in self._minutes.items() if m >= first)))
        users: set[int] = set()
        for path in glob.glob(os.path.join(self.directory, "*_*.bin")):
            stem = os.path.basename(path)[:-4].split("_", 1)[0]
            if not stem.isdigit():
                continue
            if int(stem) < first:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                continue
            with contextlib.suppress(OSError), open(path, "rb") as fh:
                data = fh.read()
            usable = len(data) - len(data) % _HASH.size
            users.update(v for (v,) in _HASH.iter_unpack(data[:usable]))
        return len(users)


class ActiveUsersCollector(ScrapeCollector):
    """``active_users``: distinct authenticated users in the sliding window."""

    collector = "active_users"

    def __init__(self, prefix: str, errors: ScrapeErrors, deadline: Deadline, users: ActiveUsers):
        super().__init__(prefix, errors, deadline)
        self.users = users

    def families(self) -> list[Metric]:
        return [
            _gauge(
                f"{self.prefix}active_users",
                f"Distinct authenticated users seen in the last {self.users.window} minutes.",
            )
        ]

    def read(self) -> list[Metric]:
        (family,) = self.families()
        family.add_metric([], self.users.count())
        return [family]
