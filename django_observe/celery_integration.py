"""Celery: the correlation ID travels with every task, and every task logs its start and end.

- Publishing (``before_task_publish``) copies the current correlation ID into the message header
  ``x_correlation_id`` (Celery overwrites a header called ``correlation_id`` with the task id).
- Running (``task_prerun``) binds that ID, or the caller's in eager mode, or a fresh one (beat, shell),
  with ``task_id``, ``task_name``, ``parent_task_id`` and ``root_task_id``, for the task's life;
  ``task_postrun`` restores the previous context, so eager tasks and tasks calling tasks are safe.
- ``task_started``, ``task_succeeded``, ``task_failed``, ``task_retried`` lines carry ``duration_ms``.
- ``setup_logging`` makes the worker log like the web process (Celery then leaves logging alone).

Signal receivers are connected with strong references (Celery keeps weak ones by default, and a
receiver nobody else references would silently stop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from . import queries
from .correlation import CorrelationPolicy, bind_correlation_id, get_correlation_id, reset_correlation_id
from .logging.processors import task_context

__all__ = ["HEADER", "connect"]

HEADER = "x_correlation_id"
logger = logging.getLogger("django_observe.celery")

# task_id -> (tokens to reset, start time, query stats token); one task at a time per thread, but eager
# tasks nest.
_running: dict[str, tuple[Any, Any, int, Any]] = {}
_connected = False
_policy = CorrelationPolicy()  # the project's CORRELATION_ID_PATTERN/_PREFIX once connect() received them


def on_before_publish(headers: dict | None = None, **kwargs: Any) -> None:
    if headers is None:
        return
    correlation_id = get_correlation_id()
    if correlation_id is not None and HEADER not in headers:
        headers[HEADER] = correlation_id


def _request_value(task: Any, name: str) -> Any:
    request = getattr(task, "request", None)
    if request is None:
        return None
    getter = getattr(request, "get", None)
    return getter(name) if getter is not None else getattr(request, name, None)


def on_prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if task_id is None or task is None:
        return
    incoming = _request_value(task, HEADER)
    # A header is as hostile as an HTTP header: the same policy decides, otherwise a new ID is made.
    accepted = _policy.accept(incoming) if isinstance(incoming, str) else None
    parent = _request_value(task, "parent_id")
    root = _request_value(task, "root_id")
    fields = {"task_id": task_id, "task_name": task.name}
    if parent:
        fields["parent_task_id"] = parent
    if root and root != task_id:
        fields["root_task_id"] = root
    cid_token = bind_correlation_id(accepted or get_correlation_id() or _policy.new())
    ctx_token = task_context.set(fields)
    _running[task_id] = (cid_token, ctx_token, time.perf_counter_ns(), queries.begin())
    logger.info("task_started")


def _duration_ms(task_id: str | None) -> float | None:
    entry = _running.get(task_id) if task_id else None
    return round((time.perf_counter_ns() - entry[2]) / 1e6, 2) if entry else None


def _end_fields(task_id: str | None, state: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"duration_ms": _duration_ms(task_id), "task_state": state}
    entry = _running.get(task_id) if task_id else None
    stats = queries.current() if entry is not None and entry[3] is not None else None
    if stats is not None:
        fields["db_queries"] = stats.count
        fields["db_ms"] = stats.milliseconds
    return fields


def on_success(sender: Any = None, **kwargs: Any) -> None:
    logger.info("task_succeeded", extra=_end_fields(_request_value(sender, "id"), "SUCCESS"))


def on_failure(task_id: str | None = None, exception: BaseException | None = None, **kwargs: Any) -> None:
    logger.error(
        "task_failed",
        extra=_end_fields(task_id, "FAILURE"),
        exc_info=(type(exception), exception, exception.__traceback__) if exception is not None else None,
    )


def on_retry(request: Any = None, reason: Any = None, **kwargs: Any) -> None:
    task_id = getattr(request, "id", None)
    logger.warning(
        "task_retried",
        extra={"duration_ms": _duration_ms(task_id), "task_state": "RETRY", "reason": str(reason)[:500]},
    )


def on_postrun(task_id: str | None = None, **kwargs: Any) -> None:
    entry = _running.pop(task_id, None) if task_id else None
    if entry is None:
        return
    cid_token, ctx_token, _, query_token = entry
    stats = queries.end(query_token)
    if stats is not None and stats.repeated:
        queries.log_repeated(stats)  # the task's fields are still bound
    task_context.reset(ctx_token)
    reset_correlation_id(cid_token)


def connect(
    setup_logging: Callable[[], None] | None = None,
    quiet_banner: bool = False,
    policy: CorrelationPolicy | None = None,
) -> bool:
    """Connect the receivers (once per process). Returns False when Celery is not installed.

    Args:
        setup_logging: called on Celery's ``setup_logging`` signal (worker start), so the worker logs in
            the configured format instead of Celery's own.
        quiet_banner: drop the worker's ASCII start-up banner (it is not a log line; with JSON logs every
            stdout line must parse).
        policy: which incoming IDs task headers may carry (``CORRELATION_ID_PATTERN``, ``CORRELATION_ID_PREFIX``).
    """
    global _connected, _policy
    if policy is not None:
        _policy = policy
    if _connected:
        return True
    try:
        from celery import signals
    except ImportError:
        return False
    signals.before_task_publish.connect(on_before_publish, weak=False)
    signals.task_prerun.connect(on_prerun, weak=False)
    signals.task_success.connect(on_success, weak=False)
    signals.task_failure.connect(on_failure, weak=False)
    signals.task_retry.connect(on_retry, weak=False)
    signals.task_postrun.connect(on_postrun, weak=False)
    if setup_logging is not None:

        def on_setup_logging(**kwargs: Any) -> None:
            setup_logging()

        signals.setup_logging.connect(on_setup_logging, weak=False)
    if quiet_banner:

        def on_worker_setup(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
            if instance is not None:
                instance.quiet = True

        signals.celeryd_after_setup.connect(on_worker_setup, weak=False)
    _connected = True
    return True
