"""Celery: an adapter over the shared task lifecycle (:class:`~django_observe.integrations.tasks.TaskObserver`).

- Publishing (``before_task_publish``) copies the correlation ID into the header ``x_correlation_id`` (Celery
  overwrites one called ``correlation_id`` with the task id) and, with metrics on, the time into
  ``x_published_at``. ``task_prerun`` begins the run (``parent_task_id``, ``root_task_id`` among its fields),
  ``task_success``/``task_failure``/``task_retry`` finish it, ``task_postrun`` closes it: eager tasks and
  tasks calling tasks are safe. Logger ``django_observe.celery``; metrics ``metrics.tasks.CeleryTaskMetrics``;
  the span is the Celery instrumentor's.
- The worker's and beat's processes (tracer provider per child, flushes, logging set-up, the heartbeat file,
  beat entries): ``integrations._celery_worker``.

Receivers are connected once per process with strong references (Celery keeps weak ones by default, and a
receiver nobody else references would silently stop); each uses what the last ``install(runtime)`` bound.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from ..correlation import get_correlation_id
from ..metrics.tasks import NO_TASK_METRICS
from ..runtime import Runtime
from . import _celery_worker, _uses
from ._celery_worker import heartbeat_age, heartbeat_files, heartbeat_path
from .tasks import QueueIntegration, TaskRun

__all__ = [
    "HEADER",
    "PUBLISHED_AT",
    "CeleryIntegration",
    "heartbeat_age",
    "heartbeat_files",
    "heartbeat_path",
    "integration",
]

HEADER = "x_correlation_id"
PUBLISHED_AT = "x_published_at"
RUN_ATTR = "django_observe_run"
logger = logging.getLogger("django_observe.celery")


def _request_value(request: Any, name: str) -> Any:
    if request is None:
        return None
    getter = getattr(request, "get", None)
    return getter(name) if getter is not None else getattr(request, name, None)


def _run_of(task: Any) -> TaskRun | None:
    return getattr(getattr(task, "request", None), RUN_ATTR, None)


def _queue(task: Any) -> str:
    info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    return str(info.get("routing_key") or info.get("queue") or "celery")


# --- publishing (web side and tasks calling tasks)


def on_before_publish(sender: Any = None, headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    if headers is None:
        return
    correlation_id = get_correlation_id()
    if correlation_id is not None and HEADER not in headers:
        headers[HEADER] = correlation_id
    if integration.metrics is not NO_TASK_METRICS:  # the publish time travels only for the queue-wait metric
        integration.metrics.enqueued(str(sender), "")
        headers.setdefault(PUBLISHED_AT, time.time())


# --- running (worker side)


def on_received(request: Any = None, **kwargs: Any) -> None:
    info = getattr(request, "delivery_info", None) or {}
    integration.metrics.event(request.name, str(info.get("routing_key") or "celery"), "received")


def on_prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    observer = integration.observer
    if task_id is None or task is None or observer is None:
        return
    request = getattr(task, "request", None)
    fields = {}
    parent, root = _request_value(request, "parent_id"), _request_value(request, "root_id")
    if parent:
        fields["parent_task_id"] = parent
    if root and root != task_id:
        fields["root_task_id"] = root
    published, now = _request_value(request, PUBLISHED_AT), time.time()
    wait = now - published if isinstance(published, (int, float)) and now >= published else None
    headers = {"correlation_id": _request_value(request, HEADER)}
    run = observer.begin(task_id, task.name, _queue(task), headers, wait=wait, fields=fields)
    if request is not None:
        setattr(request, RUN_ATTR, run)


def _finish(task: Any, outcome: str, state: str, **options: Any) -> None:
    run, observer = _run_of(task), integration.observer
    if observer is not None:
        observer.finish(run, outcome, state=state, **options)
    if run is None and task is not None:  # no run: counted here (a run's outcome is counted by the observer)
        integration.metrics.event(task.name, _queue(task), outcome)


def on_success(sender: Any = None, **kwargs: Any) -> None:
    _finish(sender, "succeeded", "SUCCESS")


def on_failure(sender: Any = None, exception: BaseException | None = None, **kwargs: Any) -> None:
    _finish(sender, "failed", "FAILURE", error=exception)


def on_retry(request: Any = None, reason: Any = None, sender: Any = None, **kwargs: Any) -> None:
    _finish(sender, "retried", "RETRY", fields={"reason": str(reason)[:500]})


def on_postrun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    request = getattr(task, "request", None)
    run = _run_of(task)
    if run is None or integration.observer is None:
        return
    delattr(request, RUN_ATTR)
    integration.observer.close(run)


def on_revoked(request: Any = None, **kwargs: Any) -> None:
    name = getattr(request, "task", None) or getattr(request, "name", None) or "unknown"
    integration.metrics.event(str(name), "celery", "revoked")


def on_rejected(message: Any = None, **kwargs: Any) -> None:
    integration.metrics.event((getattr(message, "headers", None) or {}).get("task", "unknown"), "celery", "rejected")


# --- the integration


def _receivers(signals: Any) -> list[tuple[Any, Any]]:
    return [
        (signals.before_task_publish, on_before_publish),
        (signals.task_received, on_received),
        (signals.task_prerun, on_prerun),
        (signals.task_postrun, on_postrun),
        (signals.task_success, on_success),
        (signals.task_failure, on_failure),
        (signals.task_retry, on_retry),
        (signals.task_revoked, on_revoked),
        (signals.task_rejected, on_rejected),
    ]


class CeleryIntegration(QueueIntegration):
    """The ``celery`` row: connects the receivers above and the worker's (strong references, once each)."""

    name = system = "celery"
    logger = logger

    def available(self, runtime: Runtime) -> bool:
        """The project uses Celery (:func:`integrations._uses.celery`)."""
        return _uses.celery(runtime)

    def hook(self, runtime: Runtime) -> None:
        from celery import signals

        for signal, receiver in _receivers(signals):
            self.receivers.connect(signal, receiver, f"django_observe.{receiver.__name__}")
        _celery_worker.install(signals, runtime, self.metrics)

    def uninstall(self) -> None:
        super().uninstall()
        signals = sys.modules.get("celery.signals")
        if signals is not None:
            _celery_worker.uninstall(signals)


integration = CeleryIntegration()
