"""Collected at scrape time: build info, Celery queue lengths and live workers.

Each is bounded by a short timeout; a failure counts ``metrics_collector_errors_total`` (through
:class:`~django_observe.metrics.infra.ScrapeErrors`) and logs one line, never a failed scrape. The
infrastructure collectors live in :mod:`django_observe.metrics.infra`.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from .infra import Deadline, ScrapeErrors

__all__ = ["BuildInfoCollector", "CeleryCollector"]

logger = logging.getLogger("django_observe.metrics")


class BuildInfoCollector:
    def __init__(self, namespace: str, version: str, service_version: str):
        import django

        self.name = f"{namespace}_build_info" if namespace else "build_info"
        self.labels = {
            "version": version,
            "service_version": service_version,
            "django": django.get_version(),
            "python": platform.python_version(),
        }

    def collect(self):
        family = GaugeMetricFamily(self.name, "django_observe, Django and Python versions.", labels=list(self.labels))
        family.add_metric(list(self.labels.values()), 1)
        yield family


class CeleryCollector:
    """``celery_queue_length{queue}`` from the broker and ``celery_workers`` from a ping (cached)."""

    def __init__(self, app: Any, namespace: str, errors: ScrapeErrors, timeout: float = 1.0, workers_ttl: float = 10.0):
        self.app, self.timeout, self.workers_ttl = app, timeout, workers_ttl
        self.prefix = f"{namespace}_" if namespace else ""
        self.errors = errors
        # The broker calls have their own timeouts; the deadline also bounds a broker that accepts and hangs.
        self.deadline = Deadline(timeout + 0.5)
        self._workers: tuple[float, int] | None = None
        self._lock = threading.Lock()

    def _queues(self) -> list[str]:
        conf = self.app.conf
        names = [q.name for q in (conf.task_queues or [])] or [conf.task_default_queue or "celery"]
        return names[:50]

    def _failed(self, part: str, exc: Exception) -> None:
        self.errors.failed(part, exc)

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

    def _worker_count(self) -> int:
        now = time.monotonic()
        with self._lock:
            if self._workers is not None and now - self._workers[0] < self.workers_ttl:
                return self._workers[1]
            replies = self.app.control.ping(timeout=min(self.timeout, 0.5)) or []
            self._workers = (now, len(replies))
            return self._workers[1]

    def collect(self):
        queue = GaugeMetricFamily(
            f"{self.prefix}celery_queue_length", "Messages waiting in each Celery queue.", labels=["queue"]
        )
        try:
            for name, length in self.deadline.run("celery_queue_length", self._queue_lengths).items():
                queue.add_metric([name], length)
            yield queue
        except Exception as exc:
            self._failed("celery_queue_length", exc)
        try:
            workers = GaugeMetricFamily(f"{self.prefix}celery_workers", "Celery workers that answered a ping.")
            workers.add_metric([], self.deadline.run("celery_workers", self._worker_count))
            yield workers
        except Exception as exc:
            self._failed("celery_workers", exc)
