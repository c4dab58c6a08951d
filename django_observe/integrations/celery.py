"""Celery: every signal django_observe listens to, in one place.

- Correlation: publishing (``before_task_publish``) copies the current correlation ID into the message header
  ``x_correlation_id`` (Celery overwrites a header called ``correlation_id`` with the task id); running
  (``task_prerun``) binds that ID when it is valid (the same policy as HTTP headers), or the caller's in eager
  mode, or a fresh one (beat, shell), with ``task_id``, ``task_name``, ``parent_task_id`` and
  ``root_task_id``, for the task's life; ``task_postrun`` restores the previous context, so eager tasks and
  tasks calling tasks are safe.
- Logs: ``task_started``, ``task_succeeded``, ``task_failed``, ``task_retried`` lines carry ``duration_ms``
  (and ``db_queries``/``db_ms``); ``setup_logging`` makes the worker log like the web process.
- Metrics: published tasks (web side), task states, durations with exemplars and queue wait (worker side),
  connection-pool numbers after each task.
- Tracing: the provider is built in each prefork child (``worker_process_init``) or on the first task of a
  pool without children; buffered spans are flushed when a child or the worker stops.

Receivers are connected once per process with strong references (Celery keeps weak ones by default, and a
receiver nobody else references would silently stop); each reads the current runtime when it runs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..correlation import bind_correlation_id, get_correlation_id, reset_correlation_id
from ..logging.otlp import flush_all as flush_otlp_logs
from ..logging.processors import task_context
from ..queries import QueryCounter, log_repeated
from ..queries import current as current_queries
from ..requestinfo import hex_ids
from ..runtime import Runtime, current

__all__ = ["HEADER", "PUBLISHED_AT", "connect"]

HEADER = "x_correlation_id"
PUBLISHED_AT = "x_published_at"
RUN_ATTR = "django_observe_run"
logger = logging.getLogger("django_observe.celery")


class TaskRun:
    """What ``task_prerun`` opened for one task execution (kept on the task's request context)."""

    __slots__ = ("correlation_token", "fields_token", "metrics_start", "query_token", "start_ns")

    def __init__(self, correlation_token: Any, fields_token: Any, query_token: Any) -> None:
        self.correlation_token, self.fields_token, self.query_token = correlation_token, fields_token, query_token
        self.start_ns = time.perf_counter_ns()
        self.metrics_start = time.perf_counter()


def _request_value(request: Any, name: str) -> Any:
    if request is None:
        return None
    getter = getattr(request, "get", None)
    return getter(name) if getter is not None else getattr(request, name, None)


def _run_of(task: Any) -> TaskRun | None:
    request = getattr(task, "request", None)
    return getattr(request, RUN_ATTR, None) if request is not None else None


def _queue(task: Any) -> str:
    info = getattr(getattr(task, "request", None), "delivery_info", None) or {}
    return str(info.get("routing_key") or info.get("queue") or "celery")


def _count_state(runtime: Runtime | None, task_name: str, queue: str, state: str) -> None:
    if runtime is None or runtime.metrics is None:
        return
    catalogue = runtime.metrics.catalogue
    catalogue.celery_tasks.labels(catalogue.guard("celery_tasks", "task")(task_name), queue, state).inc()


# --- publishing (web side and tasks calling tasks)


def on_before_publish(sender: Any = None, headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    if headers is None:
        return
    correlation_id = get_correlation_id()
    if correlation_id is not None and HEADER not in headers:
        headers[HEADER] = correlation_id
    runtime = current()
    if runtime is not None and runtime.metrics is not None:
        catalogue = runtime.metrics.catalogue
        catalogue.celery_published.labels(catalogue.guard("celery_tasks", "task")(str(sender))).inc()
        headers.setdefault(PUBLISHED_AT, time.time())


# --- running (worker side)


def on_received(request: Any = None, **kwargs: Any) -> None:
    info = getattr(request, "delivery_info", None) or {}
    _count_state(current(), request.name, str(info.get("routing_key") or "celery"), "received")


def _incoming_correlation_id(runtime: Runtime | None, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if runtime is None:
        return None
    # A header from the broker is as untrusted as an HTTP header: an invalid one is replaced, never bound.
    return runtime.correlation.accept(value)


def on_prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if task_id is None or task is None:
        return
    runtime = current()
    if runtime is not None and runtime.tracing is not None:
        runtime.tracing.ensure_provider()  # solo and thread pools: no child process init
    request = getattr(task, "request", None)
    correlation_id = _incoming_correlation_id(runtime, _request_value(request, HEADER)) or get_correlation_id()
    if correlation_id is None:
        correlation_id = runtime.correlation.new() if runtime is not None else None
    parent = _request_value(request, "parent_id")
    root = _request_value(request, "root_id")
    fields = {"task_id": task_id, "task_name": task.name}
    if parent:
        fields["parent_task_id"] = parent
    if root and root != task_id:
        fields["root_task_id"] = root
    counter = runtime.queries if runtime is not None else None
    run = TaskRun(
        bind_correlation_id(correlation_id) if correlation_id else None,
        task_context.set(fields),
        counter.begin() if counter is not None else None,
    )
    if request is not None:
        setattr(request, RUN_ATTR, run)
    if runtime is not None and runtime.metrics is not None:
        queue = _queue(task)
        _count_state(runtime, task.name, queue, "started")
        published = _request_value(request, PUBLISHED_AT)
        now = time.time()
        if isinstance(published, (int, float)) and now >= published:
            runtime.metrics.catalogue.celery_queue_wait.labels(queue).observe(now - published)
    logger.info("task_started")


def _duration_ms(run: TaskRun | None) -> float | None:
    return round((time.perf_counter_ns() - run.start_ns) / 1e6, 2) if run is not None else None


def _end_fields(run: TaskRun | None, state: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"duration_ms": _duration_ms(run), "task_state": state}
    stats = current_queries() if run is not None and run.query_token is not None else None
    if stats is not None:
        fields["db_queries"] = stats.count
        fields["db_ms"] = stats.milliseconds
    return fields


def on_success(sender: Any = None, **kwargs: Any) -> None:
    logger.info("task_succeeded", extra=_end_fields(_run_of(sender), "SUCCESS"))
    if sender is not None:
        _count_state(current(), sender.name, _queue(sender), "succeeded")


def on_failure(
    task_id: str | None = None, exception: BaseException | None = None, sender: Any = None, **kwargs: Any
) -> None:
    logger.error(
        "task_failed",
        extra=_end_fields(_run_of(sender), "FAILURE"),
        exc_info=(type(exception), exception, exception.__traceback__) if exception is not None else None,
    )
    if sender is not None:
        _count_state(current(), sender.name, _queue(sender), "failed")


def on_retry(request: Any = None, reason: Any = None, sender: Any = None, **kwargs: Any) -> None:
    logger.warning(
        "task_retried",
        extra={
            "duration_ms": _duration_ms(getattr(request, RUN_ATTR, None)),
            "task_state": "RETRY",
            "reason": str(reason)[:500],
        },
    )
    if sender is not None:
        _count_state(current(), sender.name, _queue(sender), "retried")


def _observe_duration(runtime: Runtime, task: Any, run: TaskRun) -> None:
    metrics = runtime.metrics
    assert metrics is not None
    catalogue = metrics.catalogue
    seconds = time.perf_counter() - run.metrics_start
    labels = (catalogue.guard("celery_tasks", "task")(task.name), _queue(task))
    child = catalogue.celery_task_duration.labels(*labels)
    ids = _sampled_span_ids() if runtime.config.otel_enabled else None
    if ids is None:
        child.observe(seconds)
    elif metrics.exemplar_store is None:
        child.observe(seconds, {"trace_id": ids[0], "span_id": ids[1]})
    else:
        child.observe(seconds)
        metrics.exemplar_store.record(catalogue.celery_task_duration_shape.name, labels, seconds, *ids)


def _sampled_span_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return hex_ids(context)
    return None


def on_postrun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    request = getattr(task, "request", None)
    run: TaskRun | None = getattr(request, RUN_ATTR, None) if request is not None else None
    if run is None:
        return
    delattr(request, RUN_ATTR)
    runtime = current()
    if runtime is not None and runtime.metrics is not None:
        _observe_duration(runtime, task, run)
    stats = QueryCounter.end(run.query_token)
    if stats is not None and stats.repeated:
        log_repeated(stats)  # the task's fields are still bound
    task_context.reset(run.fields_token)
    if run.correlation_token is not None:
        reset_correlation_id(run.correlation_token)
    if runtime is not None and runtime.metrics is not None and runtime.metrics.pool_recorder is not None:
        runtime.metrics.pool_recorder.maybe_record()


def on_revoked(request: Any = None, **kwargs: Any) -> None:
    name = getattr(request, "task", None) or getattr(request, "name", None) or "unknown"
    _count_state(current(), str(name), "celery", "revoked")


def on_rejected(message: Any = None, **kwargs: Any) -> None:
    _count_state(current(), (getattr(message, "headers", None) or {}).get("task", "unknown"), "celery", "rejected")


# --- worker processes


def on_process_init(**kwargs: Any) -> None:
    runtime = current()
    if runtime is not None and runtime.tracing is not None:
        runtime.tracing.ensure_provider()


def on_process_shutdown(**kwargs: Any) -> None:
    runtime = current()
    if runtime is not None and runtime.tracing is not None:
        runtime.tracing.flush()
    flush_otlp_logs()  # a child leaves with os._exit: logging's own flush at exit does not run


def on_setup_logging(**kwargs: Any) -> None:
    runtime = current()
    if runtime is not None and runtime.logging_setup is not None:
        runtime.logging_setup()


def on_worker_setup(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    runtime = current()
    # The worker's ASCII start-up banner is not a log line; with JSON logs every stdout line must parse.
    if instance is None or runtime is None or runtime.logging_setup is None:
        return
    if runtime.config.log_format == "json":
        instance.quiet = True


def connect(*, own_logging: bool) -> bool:
    """Connect the receivers (once per process; safe to call again). False when Celery is not installed.

    Args:
        own_logging: django_observe configures logging; the worker then logs in the configured format
            instead of Celery's own (a ``setup_logging`` receiver tells Celery to leave logging alone).
    """
    try:
        from celery import signals
    except ImportError:
        return False
    receivers = [
        (signals.before_task_publish, on_before_publish),
        (signals.task_received, on_received),
        (signals.task_prerun, on_prerun),
        (signals.task_postrun, on_postrun),
        (signals.task_success, on_success),
        (signals.task_failure, on_failure),
        (signals.task_retry, on_retry),
        (signals.task_revoked, on_revoked),
        (signals.task_rejected, on_rejected),
        (signals.worker_process_init, on_process_init),
        (signals.worker_process_shutdown, on_process_shutdown),
        (signals.worker_shutdown, on_process_shutdown),
        (signals.celeryd_after_setup, on_worker_setup),
    ]
    for signal, receiver in receivers:
        signal.connect(receiver, weak=False, dispatch_uid=f"django_observe.{receiver.__name__}")
    uid = "django_observe.on_setup_logging"
    if own_logging:
        signals.setup_logging.connect(on_setup_logging, weak=False, dispatch_uid=uid)
    else:
        signals.setup_logging.disconnect(dispatch_uid=uid)
    return True
