"""Redis memory and clients, one ``INFO`` per configured server (``REDIS_URLS``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client.core import Metric

from .base import Deadline, Family, ScrapeCollector, ScrapeErrors, gauge

__all__ = ["RedisCollector", "redis_name"]


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

    def __init__(
        self,
        prefix: str,
        errors: ScrapeErrors,
        deadline: Deadline,
        urls: Sequence[str],
        *,
        cache_seconds: float = 1.0,
    ):
        super().__init__(prefix, errors, deadline, cache_seconds=cache_seconds)
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

            # Below the deadline: a server that accepts and never answers fails the read itself (counted once)
            # instead of racing the deadline's own timeout.
            seconds = self.deadline.timeout * 0.8
            client = self._clients[name] = redis.Redis.from_url(
                self.targets[name],
                socket_timeout=seconds,
                socket_connect_timeout=seconds,
                health_check_interval=0,
                retry=Retry(NoBackoff(), 0),
            )
        return client

    def families(self) -> list[Family]:
        p = self.prefix
        return [
            gauge(f"{p}redis_memory_used_bytes", "Memory used by Redis (INFO used_memory).", ["redis"]),
            gauge(f"{p}redis_memory_max_bytes", "Redis maxmemory; 0 means no limit.", ["redis"]),
            gauge(f"{p}redis_connected_clients", "Clients connected to Redis.", ["redis"]),
        ]

    def read(self) -> Sequence[Metric]:
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
