"""Django's tasks framework: ``django.tasks`` (Django 6) and the ``django_tasks`` backport (Django 5.2).

- Context: a task carries nothing but its arguments (the framework has no metadata), so ``Task.enqueue()`` and
  ``Task.aenqueue()`` add one reserved keyword argument, ``_django_observe`` (:data:`KWARG`), holding the
  caller's correlation ID and, with tracing on, the W3C ``traceparent`` of an ``enqueue`` PRODUCER span. The
  argument is stored with the task by any backend that stores kwargs; the worker's ``task_started`` receiver
  removes it from the task's kwargs before the backend calls the function, so the function never sees it.
  The returned ``TaskResult`` has it removed too; a result read back later (``get_result()``) still shows it.
  A worker process must run with django_observe installed (the same settings as the web process): without
  the receiver the function would be called with an unexpected keyword argument. ``DJANGO_TASKS_CONTEXT=False``
  turns the argument off.
- Logs: ``task_started``, ``task_succeeded``, ``task_failed`` lines (logger ``django_observe.tasks``) with
  ``task_id``, ``task_name``, ``duration_ms``, ``task_state``, ``db_queries``/``db_ms``, as for Celery.
- Metrics: ``django_tasks_enqueued_total``, ``django_tasks_started_total``, ``django_tasks_finished_total``,
  ``django_tasks_duration_seconds``, ``django_tasks_queue_wait_seconds``.
- Tracing: a CONSUMER span ``<task> process`` per run, child of the enqueuing request's trace.

Receivers read the current runtime when they run and never raise: Django's ``Signal.send`` would pass the
exception on to ``enqueue()`` or to the worker.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.util
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..correlation import bind_correlation_id, get_correlation_id, reset_correlation_id
from ..logging.processors import task_context
from ..queries import QueryCounter, log_repeated
from ..queries import current as current_queries
from ..runtime import Runtime, current

__all__ = ["FRAMEWORKS", "KWARG", "connect", "installed_frameworks"]

KWARG = "_django_observe"
FRAMEWORKS = ("django.tasks", "django_tasks")  # Django 6's own, then the backport
ORIGINAL = "__django_observe_original__"
logger = logging.getLogger("django_observe.tasks")


class TaskRun:
    """What ``task_started`` opened for one run, closed by ``task_finished``."""

    __slots__ = (
        "context_token",
        "correlation_token",
        "fields_token",
        "query_token",
        "queue",
        "result_id",
        "run_token",
        "span",
        "start",
        "task_name",
    )

    def __init__(self, result_id: str, task_name: str, queue: str) -> None:
        self.result_id, self.task_name, self.queue = result_id, task_name, queue
        self.start = time.perf_counter()
        self.correlation_token: Any = None
        self.fields_token: Any = None
        self.query_token: Any = None
        self.span: Any = None
        self.context_token: Any = None
        self.run_token: Any = None


_run: contextvars.ContextVar[TaskRun | None] = contextvars.ContextVar("django_observe_django_task_run", default=None)


def _never_raise(receiver: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(receiver)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            receiver(*args, **kwargs)
        except Exception:
            logger.exception("django_observe failed in %s; the task is unaffected", receiver.__name__)

    return guarded


def _task_name(task: Any) -> str:
    return str(getattr(task, "module_path", None) or getattr(task, "name", "unknown"))


def _labels(runtime: Runtime, task_result: Any) -> tuple[str, str]:
    catalogue = runtime.metrics.catalogue  # type: ignore[union-attr]
    task = task_result.task
    return catalogue.guard("django_tasks", "task")(_task_name(task)), str(getattr(task, "queue_name", "default"))


# --- enqueuing (web side, or a task enqueuing a task)


def _carrier(runtime: Runtime | None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    correlation_id = get_correlation_id()
    if correlation_id:
        carrier["correlation_id"] = correlation_id
    if runtime is not None and runtime.tracing is not None:
        from opentelemetry import propagate

        propagate.inject(carrier)  # traceparent (and tracestate) of the current span
    return carrier


@contextlib.contextmanager
def _enqueue_span(runtime: Runtime | None, task: Any) -> Iterator[Any]:
    if runtime is None or runtime.tracing is None:
        yield None
        return
    from opentelemetry import trace

    tracer = trace.get_tracer("django_observe.tasks")
    attributes = {"messaging.system": "django_tasks", "messaging.destination.name": str(task.queue_name)}
    with tracer.start_as_current_span(
        f"{_task_name(task)} enqueue", kind=trace.SpanKind.PRODUCER, attributes=attributes
    ) as span:
        yield span


def _with_context(runtime: Runtime | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    if runtime is None or not runtime.config.django_tasks_context or KWARG in kwargs:
        return kwargs
    carrier = _carrier(runtime)
    return {**kwargs, KWARG: carrier} if carrier else kwargs


def _strip(result: Any) -> Any:
    kwargs = getattr(result, "kwargs", None)
    if isinstance(kwargs, dict):
        kwargs.pop(KWARG, None)
    return result


def _note_id(span: Any, result: Any) -> None:
    if span is not None and getattr(result, "id", None) is not None:
        span.set_attribute("messaging.message.id", str(result.id))


def _wrap_task_class(task_class: Any) -> None:
    if getattr(task_class.enqueue, ORIGINAL, None) is not None:
        return
    enqueue, aenqueue = task_class.enqueue, task_class.aenqueue

    @functools.wraps(enqueue)
    def observed_enqueue(self: Any, *args: Any, **kwargs: Any) -> Any:
        runtime = current()
        with _enqueue_span(runtime, self) as span:
            result = enqueue(self, *args, **_with_context(runtime, kwargs))
            _note_id(span, result)
        return _strip(result)

    @functools.wraps(aenqueue)
    async def observed_aenqueue(self: Any, *args: Any, **kwargs: Any) -> Any:
        runtime = current()
        with _enqueue_span(runtime, self) as span:
            result = await aenqueue(self, *args, **_with_context(runtime, kwargs))
            _note_id(span, result)
        return _strip(result)

    setattr(observed_enqueue, ORIGINAL, enqueue)
    setattr(observed_aenqueue, ORIGINAL, aenqueue)
    task_class.enqueue = observed_enqueue
    task_class.aenqueue = observed_aenqueue


@_never_raise
def on_enqueued(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    runtime = current()
    if task_result is None or runtime is None or runtime.metrics is None:
        return
    task, queue = _labels(runtime, task_result)
    runtime.metrics.catalogue.django_tasks_enqueued.labels(task, queue, str(task_result.backend)).inc()


# --- running (worker side)


def _pop_carrier(task_result: Any) -> dict[str, Any]:
    kwargs = getattr(task_result, "kwargs", None)
    if not isinstance(kwargs, dict):
        return {}
    carrier = kwargs.pop(KWARG, None)
    return carrier if isinstance(carrier, dict) else {}


def _queue_wait(task_result: Any) -> float | None:
    started, enqueued = getattr(task_result, "started_at", None), getattr(task_result, "enqueued_at", None)
    if started is None or enqueued is None:
        return None
    run_after = getattr(task_result.task, "run_after", None)
    ready = max(enqueued, run_after) if run_after is not None else enqueued
    seconds = (started - ready).total_seconds()
    return seconds if seconds >= 0 else None


def _start_span(runtime: Runtime, carrier: dict[str, Any], run: TaskRun) -> None:
    from opentelemetry import context, propagate, trace

    runtime.tracing.ensure_provider()  # type: ignore[union-attr]  # a worker's provider is built on first use
    parent = propagate.extract({k: v for k, v in carrier.items() if isinstance(v, str)})
    span = trace.get_tracer("django_observe.tasks").start_span(
        f"{run.task_name} process",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "django_tasks",
            "messaging.destination.name": run.queue,
            "messaging.message.id": run.result_id,
        },
    )
    run.span = span
    run.context_token = context.attach(trace.set_span_in_context(span))


@_never_raise
def on_started(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    if task_result is None:
        return
    carrier = _pop_carrier(task_result)  # first, so the function never receives it
    runtime = current()
    task = task_result.task
    run = TaskRun(str(task_result.id), _task_name(task), str(getattr(task, "queue_name", "default")))
    incoming = carrier.get("correlation_id")
    correlation_id = None
    if runtime is not None and isinstance(incoming, str) and incoming:
        correlation_id = runtime.correlation.accept(incoming)  # as untrusted as an HTTP header
    correlation_id = correlation_id or get_correlation_id() or (runtime.correlation.new() if runtime else None)
    if correlation_id:
        run.correlation_token = bind_correlation_id(correlation_id)
    run.fields_token = task_context.set({"task_id": run.result_id, "task_name": run.task_name})
    if runtime is not None and runtime.queries is not None:
        run.query_token = runtime.queries.begin()
    if runtime is not None and runtime.tracing is not None:
        _start_span(runtime, carrier, run)
    if runtime is not None and runtime.metrics is not None:
        catalogue = runtime.metrics.catalogue
        task_label, queue = _labels(runtime, task_result)
        catalogue.django_tasks_started.labels(task_label, queue).inc()
        wait = _queue_wait(task_result)
        if wait is not None:
            catalogue.django_tasks_queue_wait.labels(queue).observe(wait)
    run.run_token = _run.set(run)  # a task run by the immediate backend inside another task nests
    logger.info("task_started")


def _status(task_result: Any) -> str:
    status = getattr(task_result, "status", "")
    return str(getattr(status, "value", status)).lower() or "unknown"


def _error_fields(task_result: Any) -> dict[str, Any]:
    errors = getattr(task_result, "errors", None) or []
    if not errors:
        return {}
    error = errors[-1]
    lines = (getattr(error, "traceback", "") or "").strip().splitlines()
    return {"exception_type": getattr(error, "exception_class_path", ""), "error": lines[-1][:500] if lines else ""}


@_never_raise
def on_finished(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    if task_result is None:
        return
    runtime = current()
    opened = _run.get()
    run = opened if opened is not None and opened.result_id == str(task_result.id) else None
    status = _status(task_result)
    fields: dict[str, Any] = {"task_state": status.upper()}
    if run is not None:
        seconds = time.perf_counter() - run.start
        fields["duration_ms"] = round(seconds * 1000, 2)
        stats = current_queries() if run.query_token is not None else None
        if stats is not None:
            fields["db_queries"], fields["db_ms"] = stats.count, stats.milliseconds
    else:  # the task could not start (its module failed to import): no started line, no fields bound yet
        fields.update(task_id=str(task_result.id), task_name=_task_name(task_result.task))
    if status == "failed":
        fields.update(_error_fields(task_result))
        # The database worker sends task_finished from its except block: the exception is at hand there.
        exc_info = sys.exc_info()
        logger.error("task_failed", extra=fields, exc_info=exc_info if exc_info[1] is not None else None)
    else:
        logger.info("task_succeeded", extra=fields)
    if runtime is not None and runtime.metrics is not None:
        catalogue = runtime.metrics.catalogue
        task_label, queue = _labels(runtime, task_result)
        catalogue.django_tasks_finished.labels(task_label, queue, status).inc()
        if run is not None:
            catalogue.django_tasks_duration.labels(task_label, queue).observe(fields["duration_ms"] / 1000)
    if run is not None:
        _close(run, status, fields)


def _close(run: TaskRun, status: str, fields: dict[str, Any]) -> None:
    _run.reset(run.run_token)
    stats = QueryCounter.end(run.query_token) if run.query_token is not None else None
    if stats is not None and stats.repeated:
        log_repeated(stats)  # the task's fields are still bound
    if run.span is not None:
        from opentelemetry import context, trace

        if status == "failed":
            run.span.set_status(trace.Status(trace.StatusCode.ERROR, fields.get("exception_type") or None))
        run.span.end()
        context.detach(run.context_token)
    task_context.reset(run.fields_token)
    if run.correlation_token is not None:
        reset_correlation_id(run.correlation_token)


# --- wiring


def installed_frameworks() -> list[str]:
    """The importable task frameworks (``django.tasks``, ``django_tasks``)."""
    found = []
    for name in FRAMEWORKS:
        with contextlib.suppress(ImportError, ValueError):
            if importlib.util.find_spec(name) is not None:
                found.append(name)
    return found


def connect() -> list[str]:
    """Connect the receivers and wrap ``Task.enqueue`` of each importable framework (once; safe to repeat).

    Returns the frameworks wired.
    """
    wired = []
    for name in installed_frameworks():
        try:
            signals = importlib.import_module(f"{name}.signals")
            base = importlib.import_module(f"{name}.base")
        except ImportError:
            continue
        for signal, receiver in (
            (signals.task_enqueued, on_enqueued),
            (signals.task_started, on_started),
            (signals.task_finished, on_finished),
        ):
            signal.connect(receiver, weak=False, dispatch_uid=f"django_observe.{name}.{receiver.__name__}")
        _wrap_task_class(base.Task)
        wired.append(name)
    return wired
