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
- Liveness: a consumer bootstep (added on ``celeryd_init``) touches ``CELERY_HEARTBEAT_FILE`` every
  ``CELERY_HEARTBEAT_INTERVAL`` seconds from the consumer's own timer, so the file goes stale when the
  worker's main process hangs, stops consuming or dies; ``manage.py observe_health --celery-worker`` reads it.
- Beat: ``beat_init`` wraps the scheduler's ``apply_async``; each entry sent sets
  ``celery_beat_last_run_timestamp_seconds{entry}`` and ``celery_beat_entry_interval_seconds{entry}``.

Receivers are connected once per process with strong references (Celery keeps weak ones by default, and a
receiver nobody else references would silently stop); each reads the current runtime when it runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from typing import Any

from ..correlation import bind_correlation_id, get_correlation_id, reset_correlation_id
from ..logging.otlp import flush_all as flush_otlp_logs
from ..logging.processors import task_context
from ..queries import QueryCounter, log_repeated
from ..queries import current as current_queries
from ..requestinfo import hex_ids
from ..runtime import Runtime, current

__all__ = ["HEADER", "PUBLISHED_AT", "connect", "heartbeat_age", "heartbeat_path"]

HEADER = "x_correlation_id"
PUBLISHED_AT = "x_published_at"
RUN_ATTR = "django_observe_run"
logger = logging.getLogger("django_observe.celery")


class TaskRun:
    """What ``task_prerun`` opened for one task execution (kept on the task's request context)."""

    __slots__ = ("correlation_token", "fields_token", "metrics_start", "query_token", "span_ids", "start_ns")

    def __init__(self, correlation_token: Any, fields_token: Any, query_token: Any) -> None:
        self.correlation_token, self.fields_token, self.query_token = correlation_token, fields_token, query_token
        self.start_ns = time.perf_counter_ns()
        self.metrics_start = time.perf_counter()
        # The task span's (trace_id, span_id) when sampled, for the duration's exemplar.
        self.span_ids: tuple[str, str] | None = None


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
        if runtime.config.otel_enabled:
            run.span_ids = _sampled_span_ids()  # the instrumentor's task span, current from here to postrun
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
    ids = run.span_ids
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


# --- worker liveness: the heartbeat file


def heartbeat_path(config: Any) -> str | None:
    """Where the worker's heartbeat goes (``CELERY_HEARTBEAT_FILE``); None when it is ``"off"``."""
    path = config.celery_heartbeat_file
    if path is None:
        return os.path.join(tempfile.gettempdir(), "django_observe", "celery-worker.heartbeat")
    return None if path.lower() == "off" else path


def heartbeat_age(path: str, now: float | None = None) -> float | None:
    """Seconds since the heartbeat file was last touched; None when it does not exist."""
    try:
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    return max(0.0, (time.time() if now is None else now) - mtime)


def _touch(path: str, hostname: str) -> None:
    try:
        os.utime(path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {hostname}\n")
        os.replace(tmp, path)


def _heartbeat_step() -> type:
    from celery import bootsteps

    class Heartbeat(bootsteps.StartStopStep):
        """Touches the heartbeat file from the consumer's timer (its event loop in prefork)."""

        label = "django_observe heartbeat"
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.tref: Any = None
            runtime = current()
            self.path = heartbeat_path(runtime.config) if runtime is not None else None
            self.interval = runtime.config.celery_heartbeat_interval if runtime is not None else 5.0

        def start(self, parent: Any) -> None:
            if self.path is None:
                return
            hostname = str(getattr(parent, "hostname", ""))
            path = self.path

            def beat() -> None:
                try:
                    _touch(path, hostname)
                except OSError as exc:
                    logger.warning("cannot write the heartbeat file %s: %s", path, exc)

            beat()
            self.tref = parent.timer.call_repeatedly(self.interval, beat)
            logger.info("heartbeat file %s touched every %ss", path, self.interval)

        def stop(self, parent: Any) -> None:  # also on a consumer restart (broker reconnect): the file ages
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None

        def shutdown(self, parent: Any) -> None:
            self.stop(parent)
            if self.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)

    return Heartbeat


def on_worker_init(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    """``celeryd_init``: add the heartbeat step before the consumer's blueprint is built."""
    runtime = current()
    if instance is None or runtime is None or heartbeat_path(runtime.config) is None:
        return
    steps = instance.app.steps["consumer"]
    if not any(getattr(step, "label", "") == "django_observe heartbeat" for step in steps):
        steps.add(_heartbeat_step())


# --- beat: the last run of each schedule entry


def _interval_seconds(entry: Any) -> float | None:
    schedule = entry.schedule
    try:  # the time from now to the entry's next run, for any schedule type (interval, crontab, solar)
        return max(0.0, schedule.remaining_estimate(entry.default_now()).total_seconds())
    except Exception:
        run_every = getattr(schedule, "run_every", None)
        return run_every.total_seconds() if run_every is not None else None


def _record_beat_run(entry: Any) -> None:
    runtime = current()
    if runtime is None or runtime.metrics is None:
        return
    catalogue = runtime.metrics.catalogue
    name = catalogue.guard("celery_beat", "entry")(str(entry.name))
    catalogue.celery_beat_last_run.labels(name).set(time.time())
    interval = _interval_seconds(entry)
    if interval is not None:
        catalogue.celery_beat_interval.labels(name).set(interval)


def on_beat_init(sender: Any = None, **kwargs: Any) -> None:
    """``beat_init``: wrap the scheduler's ``apply_async`` (an entry sent without error counts as run)."""
    scheduler = getattr(sender, "scheduler", None)
    if scheduler is None or getattr(scheduler, "_django_observe_wrapped", False):
        return
    apply_async = scheduler.apply_async

    def observed_apply_async(entry: Any, *args: Any, **kwargs: Any) -> Any:
        result = apply_async(entry, *args, **kwargs)
        try:
            _record_beat_run(entry)
        except Exception:
            logger.exception("cannot record the run of beat entry %s", getattr(entry, "name", "?"))
        return result

    scheduler.apply_async = observed_apply_async
    scheduler._django_observe_wrapped = True


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
        (signals.celeryd_init, on_worker_init),
        (signals.beat_init, on_beat_init),
    ]
    for signal, receiver in receivers:
        signal.connect(receiver, weak=False, dispatch_uid=f"django_observe.{receiver.__name__}")
    uid = "django_observe.on_setup_logging"
    if own_logging:
        signals.setup_logging.connect(on_setup_logging, weak=False, dispatch_uid=uid)
    else:
        signals.setup_logging.disconnect(dispatch_uid=uid)
    return True
