"""``celery_queue_length{queue}`` from the broker and ``celery_workers`` from a ping, at scrape time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

from .base import Deadline, ResultCache, ScrapeErrors, guarded_read

__all__ = ["CeleryCollector"]


class CeleryCollector:
    """Queue lengths (reused for ``cache_seconds``) and the live workers (a ping, reused for ``workers_ttl``).

    Failures count as ``collector="celery_queue_length"`` and ``collector="celery_workers"``.

    Args:
        app: the Celery application.
        namespace: ``METRICS_NAMESPACE``.
        errors: where failures are counted.
        timeout: seconds for the broker connection and the ping.
        workers_ttl: seconds a ping's answer is reused (pings reach every worker).
        cache_seconds: seconds the queue lengths are reused (0: ask the broker at every scrape).
    """

    def __init__(
        self,
        app: Any,
        namespace: str,
        errors: ScrapeErrors,
        timeout: float = 1.0,
        workers_ttl: float = 10.0,
        *,
        cache_seconds: float = 1.0,
    ):
        self.app, self.timeout = app, timeout
        self.prefix = f"{namespace}_" if namespace else ""
        self.errors = errors
        # The broker calls have their own timeouts; the deadline also bounds a broker that accepts and hangs.
        self.deadline = Deadline(timeout + 0.5)
        self.queue_cache = ResultCache(cache_seconds)
        self.workers_cache = ResultCache(cache_seconds)
        # A ping's answer is kept longer, but only an answer: a failed ping is retried after cache_seconds.
        self.ping_answer = ResultCache(max(workers_ttl, cache_seconds))

    def _queues(self) -> list[str]:
        conf = self.app.conf
        names = [q.name for q in (conf.task_queues or [])] or [conf.task_default_queue or "celery"]
        return names[:50]

    def _queue_lengths(self) -> dict[str, int]:
        lengths = {}
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, timeout=self.timeout)
            channel = conn.default_channel
            for name in self._queues():
                try:
                    lengths[name] = channel.queue_declare(queue=name, passive=True).message_count
                except Exception:  # a queue nobody declared yet holds nothing
                    lengths[name] = 0
                    channel = conn.channel()
        return lengths

    def _ping(self) -> int:
        return len(self.app.control.ping(timeout=min(self.timeout, 0.5)) or [])

    def _worker_count(self) -> int:
        return self.ping_answer.get(self._ping)

    def collect(self) -> Iterable[Metric]:
        lengths = guarded_read("celery_queue_length", self._queue_lengths, self.deadline, self.errors, self.queue_cache)
        if lengths is not None:
            queue = GaugeMetricFamily(
                f"{self.prefix}celery_queue_length", "Messages waiting in each Celery queue.", labels=["queue"]
            )
            for name, length in lengths.items():
                queue.add_metric([name], length)
            yield queue
        count = guarded_read("celery_workers", self._worker_count, self.deadline, self.errors, self.workers_cache)
        if count is not None:
            workers = GaugeMetricFamily(f"{self.prefix}celery_workers", "Celery workers that answered a ping.")
            workers.add_metric([], count)
            yield workers
