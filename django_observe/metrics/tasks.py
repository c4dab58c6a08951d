"""Task metrics, one recorder per queue: each keeps its queue's metric names and labels (a contract).

``django_observe.integrations.tasks.TaskObserver`` calls ``started``, ``finished`` and ``closed``; the queue's
adapter calls the rest (``enqueued``, and Celery's own events). :func:`task_metrics` gives the recorder of a
metrics state, or :data:`NO_TASK_METRICS`, which records nothing, with metrics off: callers never check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .setup import MetricsState, state_of

__all__ = ["NO_TASK_METRICS", "CeleryTaskMetrics", "DjangoTaskMetrics", "NoTaskMetrics", "RQMetrics", "task_metrics"]


class NoTaskMetrics:
    """Records nothing (metrics off); the base of every queue's recorder.

    ``run`` is a ``django_observe.integrations.tasks.TaskRun`` (``name``, ``queue``, ``span_ids``, ``labels``).
    """

    __slots__ = ()

    def enqueued(self, name: str, queue: str, backend: str = "") -> None:
        """A task was put on a queue (the enqueuing process)."""

    def event(self, name: str, queue: str, state: str) -> None:
        """A queue event outside a run (Celery: ``received``, ``revoked``, ``rejected``)."""

    def started(self, run: Any, wait: float | None) -> None:
        """A run began; ``wait``: seconds it waited in the queue, when known."""

    def finished(self, run: Any, outcome: str, state: str) -> None:
        """A run's outcome (``succeeded``, ``failed``, ``retried``; ``state``: the queue's own word)."""

    def closed(self, run: Any, seconds: float) -> None:
        """A run is over."""

    def beat_ran(self, entry: str, interval: float | None) -> None:
        """Celery beat sent a schedule entry."""


NO_TASK_METRICS = NoTaskMetrics()


class CeleryTaskMetrics(NoTaskMetrics):
    """``celery_tasks_published_total{task}``, ``celery_tasks_total{task,queue,state}``,
    ``celery_task_duration_seconds{task,queue}`` (exemplars), ``celery_task_queue_wait_seconds{queue}``,
    ``celery_beat_*{entry}``; connection-pool numbers after each task."""

    __slots__ = ("catalogue", "exemplars", "pools", "task")

    def __init__(self, state: MetricsState) -> None:
        self.catalogue, self.exemplars, self.pools = state.catalogue, state.exemplar_store, state.pool_recorder
        self.task = state.catalogue.guard("celery_tasks", "task")

    def enqueued(self, name: str, queue: str, backend: str = "") -> None:
        self.catalogue.celery_published.labels(self.task(name)).inc()

    def event(self, name: str, queue: str, state: str) -> None:
        self.catalogue.celery_tasks.labels(self.task(name), queue, state).inc()

    def started(self, run: Any, wait: float | None) -> None:
        run.labels = (self.task(run.name), run.queue)
        self.catalogue.celery_tasks.labels(*run.labels, "started").inc()
        if wait is not None:
            self.catalogue.celery_queue_wait.labels(run.queue).observe(wait)

    def finished(self, run: Any, outcome: str, state: str) -> None:
        self.catalogue.celery_tasks.labels(*run.labels, outcome).inc()

    def closed(self, run: Any, seconds: float) -> None:
        child = self.catalogue.celery_task_duration.labels(*run.labels)
        ids = run.span_ids
        if ids is None:
            child.observe(seconds)
        elif self.exemplars is None:
            child.observe(seconds, {"trace_id": ids[0], "span_id": ids[1]})
        else:  # multiprocess: prometheus_client keeps no exemplars there; our store does
            child.observe(seconds)
            self.exemplars.record(self.catalogue.celery_task_duration_shape.name, run.labels, seconds, *ids)
        if self.pools is not None:
            self.pools.maybe_record()

    def beat_ran(self, entry: str, interval: float | None) -> None:
        name = self.catalogue.guard("celery_beat", "entry")(entry)
        self.catalogue.celery_beat_last_run.labels(name).set_to_current_time()
        if interval is not None:
            self.catalogue.celery_beat_interval.labels(name).set(interval)


class DjangoTaskMetrics(NoTaskMetrics):
    """``django_tasks_enqueued_total{task,queue,backend}``, ``django_tasks_started_total{task,queue}``,
    ``django_tasks_finished_total{task,queue,status}``, ``django_tasks_duration_seconds{task,queue}``,
    ``django_tasks_queue_wait_seconds{queue}``."""

    __slots__ = ("catalogue", "task")

    def __init__(self, state: MetricsState) -> None:
        self.catalogue = state.catalogue
        self.task = state.catalogue.guard("django_tasks", "task")

    def enqueued(self, name: str, queue: str, backend: str = "") -> None:
        self.catalogue.django_tasks_enqueued.labels(self.task(name), queue, backend).inc()

    def event(self, name: str, queue: str, state: str) -> None:
        """A run that never began finished (its module failed to import): ``state`` is its status."""
        self.catalogue.django_tasks_finished.labels(self.task(name), queue, state).inc()

    def started(self, run: Any, wait: float | None) -> None:
        run.labels = (self.task(run.name), run.queue)
        self.catalogue.django_tasks_started.labels(*run.labels).inc()
        if wait is not None:
            self.catalogue.django_tasks_queue_wait.labels(run.queue).observe(wait)

    def finished(self, run: Any, outcome: str, state: str) -> None:
        self.catalogue.django_tasks_finished.labels(*run.labels, state.lower()).inc()
        self.catalogue.django_tasks_duration.labels(*run.labels).observe(run.seconds())


class RQMetrics(NoTaskMetrics):
    """Celery's shapes for RQ jobs: ``rq_jobs_enqueued_total{task}``, ``rq_job_events_total{task,queue,state}``
    (``started``, ``succeeded``, ``failed``), ``rq_job_duration_seconds{task,queue}``,
    ``rq_job_queue_wait_seconds{queue}``."""

    __slots__ = ("catalogue", "task")

    def __init__(self, state: MetricsState) -> None:
        self.catalogue = state.catalogue
        self.task = state.catalogue.guard("rq_jobs", "task")

    def enqueued(self, name: str, queue: str, backend: str = "") -> None:
        self.catalogue.rq_enqueued.labels(self.task(name)).inc()

    def started(self, run: Any, wait: float | None) -> None:
        run.labels = (self.task(run.name), run.queue)
        self.catalogue.rq_jobs.labels(*run.labels, "started").inc()
        if wait is not None:
            self.catalogue.rq_queue_wait.labels(run.queue).observe(wait)

    def finished(self, run: Any, outcome: str, state: str) -> None:
        self.catalogue.rq_jobs.labels(*run.labels, outcome).inc()

    def closed(self, run: Any, seconds: float) -> None:
        self.catalogue.rq_job_duration.labels(*run.labels).observe(seconds)


_RECORDERS: dict[str, Callable[[MetricsState], NoTaskMetrics]] = {
    "celery": CeleryTaskMetrics,
    "django_tasks": DjangoTaskMetrics,
    "rq": RQMetrics,
}


def task_metrics(metrics: object, system: str) -> NoTaskMetrics:
    """The recorder of ``system``'s task metrics in a runtime's ``metrics``; :data:`NO_TASK_METRICS` with metrics
    off (None)."""
    state = state_of(metrics)
    if state is None:
        return NO_TASK_METRICS
    return _RECORDERS[system](state)
