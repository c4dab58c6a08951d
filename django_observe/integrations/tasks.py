"""One task lifecycle for every queue: the correlation ID, the log fields, statement counting, the span, the
log lines and the metrics of a task run, written once. Celery, ``django.tasks`` and RQ are adapters over it.

Not a row of the integration table: a queue's integration builds a :class:`TaskObserver` when it is installed
(``TaskObserver.from_runtime(runtime, ...)``) and calls it from its library's hooks.

The API, for an adapter::

    observer = TaskObserver.from_runtime(runtime, system="rq", logger=logger, metrics=RQMetrics(...))

    # enqueuing side: what travels with the message
    with observer.producing(f"create {queue}", queue) as span:  # a PRODUCER span (None with tracing off)
        headers = observer.outgoing()  # {"correlation_id": ..., "traceparent": ...} (trace: with tracing on)

    # worker side
    run = observer.begin(job.id, name, queue, incoming_headers, wait=seconds_in_queue,
                         fields={"queue": queue}, span_name=f"process {queue}")
    ...  # the task runs; every line carries the correlation ID, task_id, task_name (and ``fields``)
    observer.end(run, "succeeded", state="SUCCESS")  # or "failed" with error=exc, or "retried"

- :meth:`TaskObserver.begin` binds the correlation ID (the incoming ``correlation_id`` header when the policy
  accepts it, as for an HTTP header; else the one already bound, e.g. an eager or immediate run inside a
  request; else a new one), binds ``task_id``, ``task_name`` and ``fields`` for the run's log lines, starts
  statement counting, opens a CONSUMER span ``span_name`` (child of the incoming ``traceparent``; no
  ``span_name``: the current span is the task's, e.g. Celery's instrumentor's), records ``started`` metrics
  and writes ``task_started``.
- :meth:`TaskObserver.end` is :meth:`finish` then :meth:`close`. A queue that reports the outcome before its
  last hook (Celery: ``task_success``, then ``task_postrun``) calls them apart: ``finish(run, outcome, ...)``
  writes ``task_<outcome>`` (``succeeded``: info, ``failed``: error with the exception, ``retried``: warning)
  with ``duration_ms``, ``task_state``, ``db_queries`` and ``db_ms``, and records the outcome's metrics;
  ``close(run)`` records the closing metrics, warns about repeated statements (N+1), ends the span and
  unbinds everything ``begin`` bound, in reverse.

What differs per queue is in its :class:`TaskMetrics` (metric names and labels are each queue's own, and a
contract) and in the arguments above (header names, span names, extra fields). With metrics off the
observer's ``metrics`` is :data:`NO_METRICS`, which records nothing: adapters never check. The recorders
are ``django_observe.metrics.tasks``'s (``task_metrics(runtime.metrics, "celery")``).
Nothing here raises into the queue library: the adapters call it inside their own ``try`` blocks.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..correlation import bind_correlation_id, get_correlation_id, reset_correlation_id
from ..logging.processors import task_context
from ..metrics.tasks import NO_TASK_METRICS, NoTaskMetrics, task_metrics
from ..queries import QueryCounter, log_repeated
from ..queries import current as current_queries
from ..requestinfo import hex_ids
from ._patching import Patches, Receivers

if TYPE_CHECKING:
    from ..runtime import Correlation, QueryCounting, Runtime

__all__ = ["NO_METRICS", "QueueIntegration", "TaskMetrics", "TaskObserver", "TaskRun", "never_raise"]

OUTCOMES = {"succeeded": logging.INFO, "failed": logging.ERROR, "retried": logging.WARNING}


class TaskRun:
    """One task execution, from :meth:`TaskObserver.begin` to :meth:`TaskObserver.close`.

    Attributes:
        task_id, name, queue: as given to ``begin``.
        start: ``time.perf_counter()`` at ``begin``.
        span_ids: the run's span ``(trace_id, span_id)`` when sampled, for exemplars; else None.
        labels: what the queue's :class:`TaskMetrics` keeps for the run's later metrics (guarded labels).
        local: what the adapter keeps with the run (a context variable's token, ...).
    """

    __slots__ = (
        "context_token",
        "correlation_token",
        "fields_token",
        "labels",
        "local",
        "name",
        "query_token",
        "queue",
        "span",
        "span_ids",
        "start",
        "task_id",
    )

    def __init__(self, task_id: str, name: str, queue: str) -> None:
        self.task_id, self.name, self.queue = task_id, name, queue
        self.start = time.perf_counter()
        self.correlation_token: Any = None
        self.fields_token: Any = None
        self.query_token: Any = None
        self.span: Any = None
        self.context_token: Any = None
        self.span_ids: tuple[str, str] | None = None
        self.labels: Any = None
        self.local: Any = None

    def seconds(self) -> float:
        return time.perf_counter() - self.start


class TaskMetrics(Protocol):
    """A queue's task metrics (its own names and labels); every method is called once per event."""

    def started(self, run: TaskRun, wait: float | None) -> None:
        """The run began; ``wait``: seconds it waited in the queue, when known."""

    def finished(self, run: TaskRun, outcome: str, state: str) -> None:
        """The outcome is known (``succeeded``, ``failed``, ``retried``; ``state`` is the queue's own word)."""

    def closed(self, run: TaskRun, seconds: float) -> None:
        """The run is over (``seconds`` since ``begin``)."""


NO_METRICS: TaskMetrics = NO_TASK_METRICS


class _Tracing(Protocol):
    def ensure_provider(self) -> Any: ...


class TaskObserver:
    """The lifecycle of one queue's task runs (see the module docstring for the API).

    Args:
        system: ``messaging.system`` of the spans (``celery``, ``django_tasks``, ``rq``).
        logger: where ``task_started``, ``task_succeeded``, ... go (``django_observe.<queue>``).
        correlation: which incoming correlation IDs are accepted, and how new ones look.
        queries: statement counting (``DB_QUERY_STATS``); None: no ``db_queries``/``db_ms``.
        tracing: the runtime's tracing state (None with tracing off); its provider is built on first use.
        metrics: the queue's :class:`TaskMetrics`; :data:`NO_METRICS` with metrics off.
    """

    __slots__ = ("correlation", "logger", "metrics", "queries", "system", "tracing")

    def __init__(
        self,
        system: str,
        logger: logging.Logger,
        correlation: Correlation,
        *,
        queries: QueryCounting | None = None,
        tracing: _Tracing | None = None,
        metrics: TaskMetrics = NO_METRICS,
    ) -> None:
        self.system, self.logger, self.correlation = system, logger, correlation
        self.queries, self.tracing, self.metrics = queries, tracing, metrics

    @classmethod
    def from_runtime(
        cls, runtime: Runtime, *, system: str, logger: logging.Logger, metrics: TaskMetrics = NO_METRICS
    ) -> TaskObserver:
        """The observer for ``runtime``'s parts (``metrics``: the queue's recorder, built by its adapter)."""
        return cls(
            system, logger, runtime.correlation, queries=runtime.queries, tracing=runtime.tracing, metrics=metrics
        )

    # --- the enqueuing side

    def outgoing(self, *, trace: bool = True) -> dict[str, str]:
        """What a message carries: the current ``correlation_id`` and, with tracing on and ``trace``, the W3C
        ``traceparent`` (and ``tracestate``) of the current span."""
        carrier: dict[str, str] = {}
        correlation_id = get_correlation_id()
        if correlation_id:
            carrier["correlation_id"] = correlation_id
        if trace and self.tracing is not None:
            from opentelemetry import propagate

            propagate.inject(carrier)
        return carrier

    @contextlib.contextmanager
    def producing(self, name: str, queue: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """A PRODUCER span ``name`` around the enqueuing (current inside the block, so :meth:`outgoing` carries
        its ``traceparent``); yields None with tracing off."""
        if self.tracing is None:
            yield None
            return
        from opentelemetry import trace

        attributes = {"messaging.system": self.system, "messaging.destination.name": queue, **(attributes or {})}
        tracer = trace.get_tracer(f"django_observe.{self.system}")
        with tracer.start_as_current_span(name, kind=trace.SpanKind.PRODUCER, attributes=attributes) as span:
            yield span

    # --- the worker side

    def begin(
        self,
        task_id: str,
        name: str,
        queue: str,
        headers: Mapping[str, Any] | None = None,
        *,
        wait: float | None = None,
        fields: Mapping[str, Any] | None = None,
        span_name: str | None = None,
        span_attributes: Mapping[str, Any] | None = None,
    ) -> TaskRun:
        """Open a run: bind its correlation ID and log fields, count its statements, open its span, record
        ``started`` and write ``task_started``.

        Args:
            task_id, name, queue: the task's id, its name (``task_name``) and its queue.
            headers: what came with the message: ``correlation_id`` (validated), ``traceparent``.
            wait: seconds the message waited in the queue, for the queue-wait metric.
            fields: more fields for every line of the run (``parent_task_id``, ``queue``, ...).
            span_name: open a CONSUMER span of this name (None: the current span is the task's).
            span_attributes: more attributes of that span (``messaging.*`` of the system are set).
        """
        headers = headers or {}
        run = TaskRun(task_id, name, queue)
        incoming = headers.get("correlation_id")
        # A header from the broker is as untrusted as an HTTP header: an invalid one is replaced, never bound.
        correlation_id = self.correlation.accept(incoming) if isinstance(incoming, str) and incoming else None
        correlation_id = correlation_id or get_correlation_id() or self.correlation.new()
        run.correlation_token = bind_correlation_id(correlation_id)
        run.fields_token = task_context.set({"task_id": task_id, "task_name": name, **(fields or {})})
        if self.queries is not None:
            run.query_token = self.queries.begin()
        if self.tracing is not None:
            self.tracing.ensure_provider()  # a worker's provider is built on first use (or per child)
            if span_name is not None:
                self._open_span(run, headers, span_name, span_attributes)
            run.span_ids = _sampled_span_ids()
        self.metrics.started(run, wait)
        self.logger.info("task_started")
        return run

    def _open_span(
        self, run: TaskRun, headers: Mapping[str, Any], name: str, attributes: Mapping[str, Any] | None
    ) -> None:
        from opentelemetry import context, propagate, trace

        parent = propagate.extract({k: v for k, v in headers.items() if isinstance(v, str)})
        run.span = trace.get_tracer(f"django_observe.{self.system}").start_span(
            name,
            context=parent,
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": self.system,
                "messaging.destination.name": run.queue,
                "messaging.message.id": run.task_id,
                **(attributes or {}),
            },
        )
        run.context_token = context.attach(trace.set_span_in_context(run.span))

    def end(
        self,
        run: TaskRun,
        outcome: str,
        *,
        state: str,
        error: BaseException | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """:meth:`finish` then :meth:`close`."""
        self.finish(run, outcome, state=state, error=error, fields=fields)
        self.close(run, failed=outcome == "failed", error=error, reason=(fields or {}).get("exception_type"))

    def finish(
        self,
        run: TaskRun | None,
        outcome: str,
        *,
        state: str,
        error: BaseException | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``task_<outcome>`` and record the outcome.

        Args:
            run: the open run; None when the task never began (the adapter then passes ``task_id`` and
                ``task_name`` in ``fields``, and no metrics are recorded).
            outcome: ``succeeded``, ``failed`` or ``retried``.
            state: the ``task_state`` field (the queue's own word: ``SUCCESS``, ``FAILURE``, ``RETRY``, ...).
            error: the exception of a failed run (logged with its traceback).
            fields: more fields for the line (``exception_type``, ``reason``, ...).
        """
        line: dict[str, Any] = {"task_state": state}
        if run is not None:
            line["duration_ms"] = round(run.seconds() * 1000, 2)
            stats = current_queries() if run.query_token is not None else None
            if stats is not None:
                line["db_queries"], line["db_ms"] = stats.count, stats.milliseconds
        line.update(fields or {})
        exc_info = (type(error), error, error.__traceback__) if error is not None else None
        self.logger.log(OUTCOMES[outcome], f"task_{outcome}", extra=line, exc_info=exc_info)
        if run is not None:
            self.metrics.finished(run, outcome, state)

    def close(
        self, run: TaskRun, *, failed: bool = False, error: BaseException | None = None, reason: str | None = None
    ) -> None:
        """Record the closing metrics, warn about repeated statements, end the span (an error status when
        ``failed``), and unbind what :meth:`begin` bound."""
        self.metrics.closed(run, run.seconds())
        stats = QueryCounter.end(run.query_token) if run.query_token is not None else None
        if stats is not None and stats.repeated:
            log_repeated(stats)  # the task's fields are still bound
        if run.span is not None:
            from opentelemetry import context, trace

            if failed:
                if error is not None:
                    run.span.record_exception(error)
                description = reason or (type(error).__name__ if error is not None else None)
                run.span.set_status(trace.Status(trace.StatusCode.ERROR, description))
            run.span.end()
            context.detach(run.context_token)
        task_context.reset(run.fields_token)
        reset_correlation_id(run.correlation_token)


class QueueIntegration:
    """The base of a queue's row of the integration table: binds the queue's :class:`TaskObserver` and
    metrics recorder for the runtime, and takes every patch and receiver off again on :meth:`uninstall`.

    A subclass sets ``name``, ``system`` (``task_metrics``' key and ``messaging.system``) and ``logger``, and
    implements ``available(runtime)`` and ``hook(runtime)`` (patch through ``self.patches``, connect through
    ``self.receivers``; called on every install, so idempotent). Its hooks read ``integration.observer``
    (None: not installed, pass through) and ``integration.metrics`` (never None).
    """

    name: str
    system: str
    logger: logging.Logger

    def __init__(self) -> None:
        self.patches, self.receivers = Patches(), Receivers()
        self.observer: TaskObserver | None = None
        self.metrics: NoTaskMetrics = NO_TASK_METRICS

    def install(self, runtime: Runtime) -> None:
        """Bind ``runtime``'s parts, then :meth:`hook`."""
        self.metrics = task_metrics(runtime.metrics, self.system)
        self.observer = TaskObserver.from_runtime(runtime, system=self.system, logger=self.logger, metrics=self.metrics)
        self.hook(runtime)

    def hook(self, runtime: Runtime) -> None:
        raise NotImplementedError

    def uninstall(self) -> None:
        """Unbind, disconnect every receiver and put every patched attribute back."""
        self.observer, self.metrics = None, NO_TASK_METRICS
        self.receivers.disconnect_all()
        self.patches.restore()


def never_raise(logger: logging.Logger) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator for a library's signal receiver: an error of django_observe is logged, never raised into the
    library (Django's ``Signal.send`` would pass it on to the caller)."""

    def decorate(receiver: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(receiver)
        def guarded(*args: Any, **kwargs: Any) -> None:
            try:
                receiver(*args, **kwargs)
            except Exception:
                logger.exception("django_observe failed in %s; the task is unaffected", receiver.__name__)

        return guarded

    return decorate


def _sampled_span_ids() -> tuple[str, str] | None:
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return hex_ids(context)
    return None
