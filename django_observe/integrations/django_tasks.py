"""Django's tasks framework (``django.tasks``, Django 6; the ``django_tasks`` backport): an adapter over the shared
task lifecycle (:class:`~django_observe.integrations.tasks.TaskObserver`).

- Context: the framework has no message metadata, so ``Task.enqueue()``/``aenqueue()`` add one keyword
  argument, ``_django_observe`` (:data:`KWARG`): the caller's correlation ID and, with tracing on, the
  ``traceparent`` of an ``enqueue`` PRODUCER span. The worker's ``task_started`` receiver removes it before
  the function is called (so a worker must run with django_observe installed), and the returned
  ``TaskResult`` has it removed too. ``DJANGO_TASKS_CONTEXT=False`` turns it off.
- Runs: ``task_started`` begins one, ``task_finished`` ends it (logger ``django_observe.tasks``; metrics
  ``metrics.tasks.DjangoTaskMetrics``; a CONSUMER span ``<task> process``, child of the enqueuing trace).

Receivers never raise: Django's ``Signal.send`` would pass the exception on to ``enqueue()`` or to the worker.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

from ..runtime import Runtime
from . import _uses
from .tasks import QueueIntegration, TaskRun, never_raise

__all__ = ["FRAMEWORKS", "KWARG", "DjangoTasksIntegration", "installed_frameworks", "integration"]

KWARG = "_django_observe"
FRAMEWORKS = _uses.TASK_FRAMEWORKS
logger = logging.getLogger("django_observe.tasks")

_run: contextvars.ContextVar[TaskRun | None] = contextvars.ContextVar("django_observe_django_task_run", default=None)


_never_raise = never_raise(logger)


def _task_name(task: Any) -> str:
    return str(getattr(task, "module_path", None) or getattr(task, "name", "unknown"))


def _queue(task: Any) -> str:
    return str(getattr(task, "queue_name", "default"))


# --- enqueuing (web side, or a task enqueuing a task)


@contextlib.contextmanager
def _enqueued(task: Any, kwargs: dict[str, Any]) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The PRODUCER span (tracing on) and the kwargs with the context added (``DJANGO_TASKS_CONTEXT``)."""
    observer = integration.observer
    if observer is None:
        yield None, kwargs
        return
    with observer.producing(f"{_task_name(task)} enqueue", str(task.queue_name)) as span:
        carrier = observer.outgoing() if integration.context and KWARG not in kwargs else None
        yield span, ({**kwargs, KWARG: carrier} if carrier else kwargs)


def _done(span: Any, result: Any) -> Any:
    if span is not None and getattr(result, "id", None) is not None:
        span.set_attribute("messaging.message.id", str(result.id))
    _pop_carrier(result)  # the caller's TaskResult: as the function will see them
    return result


def _observed_enqueue(enqueue: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(enqueue)
    def observed_enqueue(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _enqueued(self, kwargs) as (span, kwargs):
            return _done(span, enqueue(self, *args, **kwargs))

    return observed_enqueue


def _observed_aenqueue(aenqueue: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(aenqueue)
    async def observed_aenqueue(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _enqueued(self, kwargs) as (span, kwargs):
            return _done(span, await aenqueue(self, *args, **kwargs))

    return observed_aenqueue


@_never_raise
def on_enqueued(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    if task_result is not None:
        integration.metrics.enqueued(_task_name(task_result.task), _queue(task_result.task), str(task_result.backend))


# --- running (worker side)


def _queue_wait(task_result: Any) -> float | None:
    started, enqueued = getattr(task_result, "started_at", None), getattr(task_result, "enqueued_at", None)
    if started is None or enqueued is None:
        return None
    run_after = getattr(task_result.task, "run_after", None)
    ready = max(enqueued, run_after) if run_after is not None else enqueued
    seconds = (started - ready).total_seconds()
    return seconds if seconds >= 0 else None


def _pop_carrier(task_result: Any) -> dict[str, Any]:
    stored = getattr(task_result, "kwargs", None)
    carrier = stored.pop(KWARG, None) if isinstance(stored, dict) else None
    return carrier if isinstance(carrier, dict) else {}


@_never_raise
def on_started(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    headers = _pop_carrier(task_result)  # first: the function never sees it
    if task_result is not None and integration.observer is not None:
        name, wait = _task_name(task_result.task), _queue_wait(task_result)
        queue = _queue(task_result.task)
        run = integration.observer.begin(
            str(task_result.id), name, queue, headers, wait=wait, span_name=f"{name} process"
        )
        run.local = _run.set(run)  # a task run by the immediate backend inside another task nests


def _error_fields(task_result: Any) -> dict[str, Any]:
    errors = getattr(task_result, "errors", None) or []
    if not errors:
        return {}
    lines = (getattr(errors[-1], "traceback", "") or "").strip().splitlines()
    return {
        "exception_type": getattr(errors[-1], "exception_class_path", ""),
        "error": lines[-1][:500] if lines else "",
    }


@_never_raise
def on_finished(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    if task_result is None or integration.observer is None:
        return
    opened, task = _run.get(), task_result.task
    status = getattr(task_result, "status", "")
    status = str(getattr(status, "value", status)).lower() or "unknown"
    outcome = "failed" if status == "failed" else "succeeded"
    fields = _error_fields(task_result) if outcome == "failed" else {}
    # The database worker sends task_finished from its except block: the exception is at hand there.
    error = sys.exc_info()[1] if outcome == "failed" else None
    if opened is None or opened.task_id != str(task_result.id):  # it could not start (its module failed to import)
        fields.update(task_id=str(task_result.id), task_name=_task_name(task))
        integration.observer.finish(None, outcome, state=status.upper(), error=error, fields=fields)
        integration.metrics.event(_task_name(task), _queue(task), status)
        return
    _run.reset(opened.local)
    integration.observer.end(opened, outcome, state=status.upper(), error=error, fields=fields)


# --- the integration


installed_frameworks = _uses.task_frameworks


class DjangoTasksIntegration(QueueIntegration):
    """The ``django_tasks`` row: ``django.tasks`` (Django 6) and the ``django_tasks`` backport."""

    name = system = "django_tasks"
    logger = logger
    context = False  # DJANGO_TASKS_CONTEXT

    def available(self, runtime: Runtime) -> bool:
        """A task framework is there (:func:`integrations._uses.django_tasks`)."""
        return _uses.django_tasks(runtime)

    def hook(self, runtime: Runtime) -> None:
        """Connect the receivers and wrap ``Task.enqueue``/``aenqueue`` of each framework."""
        self.context = runtime.config.django_tasks_context
        for name in installed_frameworks():
            signals = importlib.import_module(f"{name}.signals")
            for event, receiver in (("enqueued", on_enqueued), ("started", on_started), ("finished", on_finished)):
                self.receivers.connect(getattr(signals, f"task_{event}"), receiver, f"django_observe.{name}.on_{event}")
            task_class = importlib.import_module(f"{name}.base").Task
            self.patches.wrap(task_class, "enqueue", _observed_enqueue)
            self.patches.wrap(task_class, "aenqueue", _observed_aenqueue)


integration = DjangoTasksIntegration()
