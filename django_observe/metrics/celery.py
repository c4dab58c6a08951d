"""Celery metrics: published tasks (web side), task states, durations and queue wait (worker side)."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["connect"]

PUBLISHED_AT = "x_published_at"
_started: dict[str, float] = {}
_connected = False


def _queue(task: Any) -> str:
    info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    return str(info.get("routing_key") or info.get("queue") or "celery")


def _current_span_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return format(context.trace_id, "032x"), format(context.span_id, "016x")
    return None


def connect(catalogue: Any, exemplars: bool = False, exemplar_store: Any = None) -> bool:
    """Connect the receivers once per process (strong references). False when Celery is not installed.

    Args:
        catalogue: the metrics.
        exemplars: attach the running task's trace to its duration observation (tracing on).
        exemplar_store: where exemplars go in multiprocess mode (None: prometheus_client keeps them).
    """
    global _connected
    if _connected:
        return True
    try:
        from celery import signals
    except ImportError:
        return False
    task_label = catalogue.guard("celery_tasks", "task")

    def on_publish(sender: Any = None, headers: dict | None = None, **kwargs: Any) -> None:
        catalogue.celery_published.labels(task_label(str(sender))).inc()
        if headers is not None:
            headers.setdefault(PUBLISHED_AT, time.time())

    def state(task_name: str, queue: str, name: str) -> None:
        catalogue.celery_tasks.labels(task_label(task_name), queue, name).inc()

    def on_received(request: Any = None, **kwargs: Any) -> None:
        info = getattr(request, "delivery_info", None) or {}
        state(request.name, str(info.get("routing_key") or "celery"), "received")

    def on_prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
        now = time.time()
        _started[task_id] = time.perf_counter()
        queue = _queue(task)
        state(task.name, queue, "started")
        published = task.request.get(PUBLISHED_AT) if hasattr(task.request, "get") else None
        if isinstance(published, (int, float)) and now >= published:
            catalogue.celery_queue_wait.labels(queue).observe(now - published)

    duration_name = catalogue.celery_task_duration._name
    if exemplar_store is not None:
        histogram = catalogue.celery_task_duration
        exemplar_store.declare(duration_name, histogram._labelnames, histogram._upper_bounds)

    def on_postrun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
        start = _started.pop(task_id, None)
        if start is None or task is None:
            return
        seconds = time.perf_counter() - start
        labels = (task_label(task.name), _queue(task))
        child = catalogue.celery_task_duration.labels(*labels)
        ids = _current_span_ids() if exemplars else None
        if ids is None:
            child.observe(seconds)
        elif exemplar_store is None:
            child.observe(seconds, {"trace_id": ids[0], "span_id": ids[1]})
        else:
            child.observe(seconds)
            exemplar_store.record(duration_name, labels, seconds, *ids)

    def on_success(sender: Any = None, **kwargs: Any) -> None:
        state(sender.name, _queue(sender), "succeeded")

    def on_failure(sender: Any = None, **kwargs: Any) -> None:
        state(sender.name, _queue(sender), "failed")

    def on_retry(sender: Any = None, **kwargs: Any) -> None:
        state(sender.name, _queue(sender), "retried")

    def on_revoked(request: Any = None, **kwargs: Any) -> None:
        state(getattr(request, "task", None) or getattr(request, "name", "unknown"), "celery", "revoked")

    def on_rejected(message: Any = None, **kwargs: Any) -> None:
        name = (getattr(message, "headers", None) or {}).get("task", "unknown")
        state(name, "celery", "rejected")

    for signal, receiver in (
        (signals.before_task_publish, on_publish),
        (signals.task_received, on_received),
        (signals.task_prerun, on_prerun),
        (signals.task_postrun, on_postrun),
        (signals.task_success, on_success),
        (signals.task_failure, on_failure),
        (signals.task_retry, on_retry),
        (signals.task_revoked, on_revoked),
        (signals.task_rejected, on_rejected),
    ):
        signal.connect(receiver, weak=False)
    _connected = True
    return True
