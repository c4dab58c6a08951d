"""RQ (and django-rq, its Django wrapper): an adapter over the shared task lifecycle
(:class:`~django_observe.integrations.tasks.TaskObserver`).

Installed only in a project that uses RQ (``"django_rq"`` in ``INSTALLED_APPS``, or ``rq`` already imported):

- Context: ``Queue.create_job`` (every way of enqueuing: ``enqueue``, ``enqueue_call``, ``enqueue_at``,
  ``enqueue_in``, ``enqueue_many``, django-rq's ``enqueue`` and ``@job``) opens a PRODUCER span ``create <queue>``
  and puts the caller's correlation ID and that span's ``traceparent`` into the job's meta (:data:`META_KEY`).
- Runs: ``Worker.perform_job`` (the work horse RQ forks per job, ``SimpleWorker`` and pools alike) begins and
  ends one: lines ``task_started``/``task_succeeded``/``task_failed`` (logger ``django_observe.rq``) with
  ``task_id`` (the job id), ``task_name`` (its function) and ``queue`` on every line of the job, RQ's own
  included; metrics ``metrics.tasks.RQMetrics``; a CONSUMER span ``process <queue>``, child of ``create``.
  ``Job.perform`` keeps the exception of a failed job for the line and the span.
- The worker's main process builds the tracer provider once, before it forks (``execute_job``); a horse leaves
  with ``os._exit``, so it flushes its spans and OTLP log records after each job. (Each horse's metric files
  are merged at the next scrape, like those of any finished process: ``metrics.storage.compact``.)

Nothing here raises into RQ: a failure of django_observe is logged and the job runs unobserved.
"""

from __future__ import annotations

import contextvars
import datetime
import functools
import logging
from collections.abc import Callable
from typing import Any

from ..logging import flush_otlp_logs
from ..runtime import Runtime
from . import _uses
from .tasks import QueueIntegration, TaskRun

__all__ = ["META_KEY", "RQIntegration", "integration"]

META_KEY = "django_observe"
logger = logging.getLogger("django_observe.rq")

_run: contextvars.ContextVar[TaskRun | None] = contextvars.ContextVar("django_observe_rq_run", default=None)


def _task_name(job: Any) -> str:
    try:
        return str(job.func_name)
    except Exception:  # a job whose function cannot be resolved still gets a name
        return "unknown"


def _operation(name: str) -> dict[str, str]:
    return {"messaging.operation.type": name, "messaging.operation.name": name}


# --- enqueuing (web side, or a job enqueuing a job)


def _with_meta(args: tuple[Any, ...], kwargs: dict[str, Any], carrier: dict[str, str]) -> tuple[Any, ...]:
    """``create_job``'s arguments with ``carrier`` added to the job's meta (a keyword, or the 11th positional)."""
    if "meta" not in kwargs and len(args) >= 10:
        return (*args[:9], {**(args[9] or {}), META_KEY: carrier}, *args[10:])
    kwargs["meta"] = {**(kwargs.get("meta") or {}), META_KEY: carrier}
    return args


def _observed_create_job(create_job: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(create_job)
    def observed_create_job(self: Any, func: Any, *args: Any, **kwargs: Any) -> Any:
        observer = integration.observer
        if observer is None:
            return create_job(self, func, *args, **kwargs)
        queue = str(self.name)
        with observer.producing(f"create {queue}", queue, _operation("create")) as span:
            try:
                carrier = observer.outgoing()
                if carrier:
                    args = _with_meta(args, kwargs, carrier)
            except Exception:
                logger.exception("django_observe failed to add its context to an RQ job; the job is unaffected")
            job = create_job(self, func, *args, **kwargs)
            try:
                name = _task_name(job)
                if span is not None:
                    span.set_attributes({"messaging.message.id": str(job.id), "code.function.name": name})
                integration.metrics.enqueued(name, queue)
            except Exception:
                logger.exception("django_observe failed to count an RQ job; the job is unaffected")
            return job

    return observed_create_job


# --- running (worker side)


def _incoming(job: Any) -> dict[str, Any]:
    meta = getattr(job, "meta", None)
    carrier = meta.get(META_KEY) if isinstance(meta, dict) else None
    return carrier if isinstance(carrier, dict) else {}


def _queue_wait(job: Any) -> float | None:
    enqueued = getattr(job, "enqueued_at", None)
    if not isinstance(enqueued, datetime.datetime):
        return None
    if enqueued.tzinfo is None:  # RQ before 2.0 stored naive UTC times
        enqueued = enqueued.replace(tzinfo=datetime.UTC)
    seconds = (datetime.datetime.now(datetime.UTC) - enqueued).total_seconds()
    return seconds if seconds >= 0 else None


def _begin(job: Any, queue: Any) -> TaskRun | None:
    observer = integration.observer
    if observer is None:
        return None
    try:
        name, queue_name = _task_name(job), str(getattr(queue, "name", None) or getattr(job, "origin", "default"))
        run = observer.begin(
            str(job.id),
            name,
            queue_name,
            _incoming(job),
            wait=_queue_wait(job),
            fields={"queue": queue_name},
            span_name=f"process {queue_name}",
            span_attributes={**_operation("process"), "code.function.name": name},
        )
        run.local = [_run.set(run), None, observer]  # the token, the exception Job.perform raised, the observer
        return run
    except Exception:
        logger.exception("django_observe failed to observe an RQ job; it runs unobserved")
        return None


def _end(run: TaskRun, succeeded: bool) -> None:
    token, error, observer = run.local
    _run.reset(token)
    try:
        fields = {"exception_type": type(error).__name__} if error is not None and not succeeded else None
        outcome, state = ("succeeded", "SUCCESS") if succeeded else ("failed", "FAILURE")
        observer.end(run, outcome, state=state, error=None if succeeded else error, fields=fields)
    except Exception:
        logger.exception("django_observe failed to close an RQ job's observation")


def _observed_perform_job(perform_job: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(perform_job)
    def observed_perform_job(self: Any, job: Any, queue: Any, *args: Any, **kwargs: Any) -> Any:
        run, succeeded = _begin(job, queue), False
        try:
            succeeded = bool(perform_job(self, job, queue, *args, **kwargs))
        finally:
            if run is not None:
                _end(run, succeeded)
            if getattr(self, "_is_horse", False):  # it leaves with os._exit: export what is buffered now
                try:
                    if integration.tracing is not None:
                        integration.tracing.flush()
                    flush_otlp_logs()
                except Exception:
                    logger.exception("django_observe failed to export a work horse's spans and log records")
        return succeeded

    return observed_perform_job


def _observed_perform(perform: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(perform)
    def observed_perform(self: Any) -> Any:
        try:
            return perform(self)
        except BaseException as exc:
            run = _run.get()
            if run is not None:
                run.local[1] = exc
            raise

    return observed_perform


# --- the worker's main process


def _observed_execute_job(execute_job: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(execute_job)
    def observed_execute_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        if integration.observer is not None and integration.tracing is not None:
            try:
                integration.tracing.ensure_provider()  # once, here: every horse forked from now on inherits it
            except Exception:
                logger.exception("django_observe failed to build the tracer provider")
        return execute_job(self, *args, **kwargs)

    return observed_execute_job


# --- the integration


def _definer(cls: type, attribute: str) -> type:
    """The class in ``cls``'s MRO that defines ``attribute`` (``perform_job`` is ``BaseWorker``'s in RQ 3)."""
    return next(klass for klass in cls.__mro__ if attribute in vars(klass))


class RQIntegration(QueueIntegration):
    """The ``rq`` row: RQ's queue, worker and job classes (django-rq's derive from them)."""

    name = system = "rq"
    logger = logger
    tracing: Any = None  # the runtime's tracing state: the horse flushes it

    def available(self, runtime: Runtime) -> bool:
        """The project uses RQ (:func:`integrations._uses.rq`)."""
        return _uses.rq(runtime)

    def hook(self, runtime: Runtime) -> None:
        """Wrap ``Queue.create_job``, ``Worker.execute_job``, ``Worker.perform_job`` and ``Job.perform``."""
        from rq.job import Job
        from rq.queue import Queue
        from rq.worker import Worker

        self.tracing = runtime.tracing
        for owner, attribute, make in (
            (Queue, "create_job", _observed_create_job),
            (Worker, "execute_job", _observed_execute_job),
            (Worker, "perform_job", _observed_perform_job),
            (Job, "perform", _observed_perform),
        ):
            self.patches.wrap(_definer(owner, attribute), attribute, make)


integration = RQIntegration()
