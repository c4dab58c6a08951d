"""The metric catalogue (names fixed; ``METRICS_NAMESPACE`` adds a prefix) and the cardinality guards (their
budgets are shared by the processes of the service: ``cardinality``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from .cardinality import Admissions, encode

__all__ = ["OTHER", "Catalogue", "HistogramShape", "LabelGuard", "SeriesGuard", "build_catalogue"]

OTHER = "__other__"
# OpenTelemetry's recommended boundaries for http.server.request.duration (seconds).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
QUERY_COUNT_BUCKETS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500)
TASK_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# The GenAI semantic conventions' recommended boundaries (gen_ai.client.token.usage, gen_ai.client.operation.duration).
GENAI_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
# Prometheus labels of the GenAI metrics: the semantic-convention attributes with "." as "_", as an OpenTelemetry
# Collector's Prometheus exporter would name them.
GENAI_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")


class LabelGuard:
    """Folds values of one label into ``__other__`` once ``limit`` distinct values were admitted, by any
    process of the service (``cardinality.Admissions``).

    Args:
        metric: metric name, for the overflow counter.
        label: label name.
        limit: distinct values kept before folding.
        overflow: counter ``metrics_label_overflow_total{metric,label}`` incremented on each fold.
        directory: the multiprocess directory (the budget is shared there), or None.
    """

    __slots__ = ("_admissions", "_label", "_metric", "_overflow", "_seen")

    def __init__(self, metric: str, label: str, limit: int, overflow: Counter, directory: str | None = None):
        self._metric, self._label, self._overflow = metric, label, overflow
        self._admissions = Admissions(f"{metric}:{label}", limit, directory)
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if self._admissions.admit(encode((value,))):
            self._seen.add(value)
            return value
        self._overflow.labels(self._metric, self._label).inc()
        return OTHER


class SeriesGuard:
    """Bounds the series (label-value combinations) of one metric: once ``limit`` combinations were admitted,
    by any process of the service, a new combination has its labels folded into ``__other__`` (those at the
    positions in ``keep``, bounded by construction like a token type, are kept) and counts an overflow.

    Args:
        metric: metric name (the overflow counter's ``metric`` label).
        labelnames: the metric's label names (their list is the overflow counter's ``label`` label).
        limit: combinations kept before folding.
        overflow: counter ``metrics_label_overflow_total{metric,label}``.
        directory: the multiprocess directory (the budget is shared there), or None.
        keep: positions of labels never folded.
    """

    __slots__ = ("_admissions", "_keep", "_overflow", "_seen")

    def __init__(
        self,
        metric: str,
        labelnames: Sequence[str],
        limit: int,
        overflow: Counter,
        directory: str | None = None,
        keep: Sequence[int] = (),
    ):
        self._overflow = overflow.labels(metric, ",".join(labelnames))
        self._admissions = Admissions(metric, limit, directory)
        self._keep = frozenset(keep)
        self._seen: set[tuple[str, ...]] = set()

    def __call__(self, values: tuple[str, ...]) -> tuple[str, ...]:
        if values in self._seen:
            return values
        if self._admissions.admit(encode(values)):
            self._seen.add(values)
            return values
        self._overflow.inc()
        return tuple(v if i in self._keep else OTHER for i, v in enumerate(values))


@dataclasses.dataclass(frozen=True)
class HistogramShape:
    """What the exemplar store needs of a histogram: its full name, label names and bucket bounds.

    Recorded when the catalogue creates the histogram, so nothing reads prometheus_client's private
    attributes (``_name``, ``_labelnames``, ``_upper_bounds``).
    """

    name: str
    labelnames: tuple[str, ...]
    upper_bounds: tuple[float, ...]


def _shape(namespace: str, name: str, labelnames: Sequence[str], buckets: Sequence[float]) -> HistogramShape:
    bounds = [float(b) for b in buckets]
    if bounds[-1] != float("inf"):
        bounds.append(float("inf"))  # as prometheus_client adds it
    return HistogramShape(f"{namespace}_{name}" if namespace else name, tuple(labelnames), tuple(bounds))


@dataclasses.dataclass
class Catalogue:
    """Every metric django_observe records, created once per process."""

    namespace: str
    request_duration: Histogram
    active_requests: Gauge
    exceptions: Counter
    authorization_duration: Histogram
    authorized_invoke_duration: Histogram
    db_duration: Histogram
    db_errors: Counter
    db_connections: Counter
    request_db_queries: Histogram
    repeated_queries: Counter
    cache_operations: Counter
    celery_published: Counter
    celery_tasks: Counter
    celery_task_duration: Histogram
    celery_queue_wait: Histogram
    celery_beat_last_run: Gauge
    celery_beat_interval: Gauge
    django_tasks_enqueued: Counter
    django_tasks_started: Counter
    django_tasks_finished: Counter
    django_tasks_duration: Histogram
    django_tasks_queue_wait: Histogram
    rq_enqueued: Counter
    rq_jobs: Counter
    rq_job_duration: Histogram
    rq_queue_wait: Histogram
    websocket_active_connections: Gauge
    websocket_connections: Counter
    websocket_messages_received: Counter
    websocket_messages_sent: Counter
    websocket_message_duration: Histogram
    health_status: Gauge
    health_duration: Gauge
    genai_token_usage: Histogram
    genai_operation_duration: Histogram
    genai_time_to_first_chunk: Histogram
    genai_cost: Counter
    genai_unpriced: Counter
    genai_agent_duration: Histogram
    genai_tool_duration: Histogram
    genai_retrieval_duration: Histogram
    label_overflow: Counter
    export_dropped: Counter
    max_label_values: int
    request_duration_shape: HistogramShape
    celery_task_duration_shape: HistogramShape
    directory: str | None = None  # the multiprocess directory: the cardinality budgets are shared there
    guards: dict[tuple[str, str], LabelGuard] = dataclasses.field(default_factory=dict)
    series_guards: dict[str, SeriesGuard] = dataclasses.field(default_factory=dict)

    def metrics(self) -> list[Counter | Gauge | Histogram]:
        """Every metric object of the catalogue (to unregister them from the registry)."""
        return [v for v in vars(self).values() if isinstance(v, (Counter, Gauge, Histogram))]

    def guard(self, metric: str, label: str) -> LabelGuard:
        key = (metric, label)
        guard = self.guards.get(key)
        if guard is None:
            guard = self.guards.setdefault(
                key, LabelGuard(metric, label, self.max_label_values, self.label_overflow, self.directory)
            )
        return guard

    def series(self, metric: str, labelnames: Sequence[str], keep: Sequence[int] = ()) -> SeriesGuard:
        """The series guard of ``metric`` (created on first use; ``keep``: see :class:`SeriesGuard`)."""
        guard = self.series_guards.get(metric)
        if guard is None:
            guard = self.series_guards.setdefault(
                metric,
                SeriesGuard(metric, labelnames, self.max_label_values, self.label_overflow, self.directory, keep),
            )
        return guard

    def admissions(self, name: str) -> Admissions:
        """A budget of ``max_label_values`` keys named ``name``, shared like the guards' (business metrics)."""
        return Admissions(name, self.max_label_values, self.directory)


def build_catalogue(
    namespace: str = "",
    buckets: Sequence[float] = DEFAULT_BUCKETS,
    max_label_values: int = 200,
    registry: CollectorRegistry | None = REGISTRY,
    directory: str | None = None,
) -> Catalogue:
    """Create the metrics (in multiprocess mode they write to ``PROMETHEUS_MULTIPROC_DIR``)."""
    kw: dict[str, Any] = {"namespace": namespace, "registry": registry}
    buckets = tuple(buckets)
    return Catalogue(
        namespace=namespace,
        request_duration=Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP requests.",
            ["method", "route", "status_code"],
            buckets=buckets,
            **kw,
        ),
        active_requests=Gauge(
            "http_server_active_requests", "HTTP requests in flight.", multiprocess_mode="livesum", **kw
        ),
        exceptions=Counter(
            "http_server_exceptions", "Unhandled exceptions raised by views.", ["route", "exception_type"], **kw
        ),
        authorization_duration=Histogram(
            "authorization_duration_seconds",
            "Time spent authenticating and authorizing a request.",
            ["mechanism", "decision"],
            buckets=buckets,
            **kw,
        ),
        authorized_invoke_duration=Histogram(
            "authorized_invoke_duration_seconds",
            "Duration of requests that passed authorization.",
            ["method", "route", "status_code"],
            buckets=buckets,
            **kw,
        ),
        db_duration=Histogram(
            "db_client_operation_duration_seconds",
            "Duration of database queries.",
            ["alias", "vendor"],
            buckets=buckets,
            **kw,
        ),
        db_errors=Counter("db_client_errors", "Database queries that raised.", ["alias", "vendor", "error_type"], **kw),
        db_connections=Counter(
            "db_client_connections_created", "Database connections opened.", ["alias", "vendor"], **kw
        ),
        request_db_queries=Histogram(
            "http_server_request_db_queries",
            "SQL statements run per HTTP request (every database alias).",
            ["route"],
            buckets=QUERY_COUNT_BUCKETS,
            **kw,
        ),
        repeated_queries=Counter(
            "http_server_repeated_queries",
            "Requests that ran one statement shape more than DB_REPEATED_QUERY_THRESHOLD times (N+1).",
            ["route"],
            **kw,
        ),
        cache_operations=Counter("cache_operations", "Cache operations.", ["cache", "operation", "result"], **kw),
        celery_published=Counter("celery_tasks_published", "Celery tasks published.", ["task"], **kw),
        celery_tasks=Counter("celery_tasks", "Celery task events by state.", ["task", "queue", "state"], **kw),
        celery_task_duration=Histogram(
            "celery_task_duration_seconds", "Run time of Celery tasks.", ["task", "queue"], buckets=TASK_BUCKETS, **kw
        ),
        celery_queue_wait=Histogram(
            "celery_task_queue_wait_seconds",
            "Time from publishing a task to its start.",
            ["queue"],
            buckets=TASK_BUCKETS,
            **kw,
        ),
        celery_beat_last_run=Gauge(
            "celery_beat_last_run_timestamp_seconds",
            "Unix time celery beat last sent each schedule entry.",
            ["entry"],
            multiprocess_mode="max",
            **kw,
        ),
        celery_beat_interval=Gauge(
            "celery_beat_entry_interval_seconds",
            "Seconds from an entry's last run to its next one, as beat computed it when it sent the entry.",
            ["entry"],
            multiprocess_mode="mostrecent",
            **kw,
        ),
        django_tasks_enqueued=Counter(
            "django_tasks_enqueued", "Tasks enqueued (Django's tasks framework).", ["task", "queue", "backend"], **kw
        ),
        django_tasks_started=Counter(
            "django_tasks_started", "Task runs started (Django's tasks framework).", ["task", "queue"], **kw
        ),
        django_tasks_finished=Counter(
            "django_tasks_finished",
            "Task runs finished, by status (successful, failed).",
            ["task", "queue", "status"],
            **kw,
        ),
        django_tasks_duration=Histogram(
            "django_tasks_duration_seconds",
            "Run time of tasks (Django's tasks framework).",
            ["task", "queue"],
            buckets=TASK_BUCKETS,
            **kw,
        ),
        django_tasks_queue_wait=Histogram(
            "django_tasks_queue_wait_seconds",
            "Time from enqueuing a task (or its run_after) to its start.",
            ["queue"],
            buckets=TASK_BUCKETS,
            **kw,
        ),
        rq_enqueued=Counter("rq_jobs_enqueued", "RQ jobs enqueued (in the enqueuing process).", ["task"], **kw),
        rq_jobs=Counter(
            "rq_job_events", "RQ job events by state (started, succeeded, failed).", ["task", "queue", "state"], **kw
        ),
        rq_job_duration=Histogram(
            "rq_job_duration_seconds", "Run time of RQ jobs.", ["task", "queue"], buckets=TASK_BUCKETS, **kw
        ),
        rq_queue_wait=Histogram(
            "rq_job_queue_wait_seconds",
            "Time from enqueuing an RQ job to its start.",
            ["queue"],
            buckets=TASK_BUCKETS,
            **kw,
        ),
        websocket_active_connections=Gauge(
            "websocket_server_active_connections",
            "WebSocket connections open (accepted by a Channels consumer, not closed yet).",
            ["consumer"],
            multiprocess_mode="livesum",
            **kw,
        ),
        websocket_connections=Counter(
            "websocket_server_connections",
            "WebSocket connections ended, by close code (rejected: closed before it was accepted).",
            ["consumer", "close_code"],
            **kw,
        ),
        websocket_messages_received=Counter(
            "websocket_server_messages_received", "WebSocket messages received by consumers.", ["consumer"], **kw
        ),
        websocket_messages_sent=Counter(
            "websocket_server_messages_sent", "WebSocket messages sent by consumers.", ["consumer"], **kw
        ),
        websocket_message_duration=Histogram(
            "websocket_server_message_duration_seconds",
            "Time a consumer took to handle a received WebSocket message.",
            ["consumer"],
            buckets=buckets,
            **kw,
        ),
        health_status=Gauge(
            "health_check_status",
            "Last result of each health check (1 pass or warn, 0 fail).",
            ["check", "critical"],
            multiprocess_mode="mostrecent",
            **kw,
        ),
        health_duration=Gauge(
            "health_check_duration_seconds",
            "Duration of the last run of each health check.",
            ["check"],
            multiprocess_mode="mostrecent",
            **kw,
        ),
        genai_token_usage=Histogram(
            "gen_ai_client_token_usage",
            "Tokens used by LLM calls (gen_ai.client.token.usage), by token type: input and output (totals), "
            "cache_read, cache_write and reasoning (breakdowns: parts of input and output, not added to them).",
            [*GENAI_LABELS, "gen_ai_token_type"],
            buckets=GENAI_TOKEN_BUCKETS,
            **kw,
        ),
        genai_operation_duration=Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Duration of LLM calls (gen_ai.client.operation.duration); error_type is empty on success.",
            [*GENAI_LABELS, "error_type"],
            buckets=GENAI_DURATION_BUCKETS,
            **kw,
        ),
        genai_time_to_first_chunk=Histogram(
            "gen_ai_client_operation_time_to_first_chunk_seconds",
            "Time from a streamed LLM call's start to its first chunk (gen_ai.client.operation.time_to_first_chunk).",
            GENAI_LABELS,
            buckets=GENAI_DURATION_BUCKETS,
            **kw,
        ),
        genai_cost=Counter(
            "gen_ai_client_cost",
            "Cost of LLM calls in LLM_CURRENCY by cost type (input, cache_read, cache_write, output, reasoning: "
            "the types add up to the calls' cost), from the LLM_PRICES table.",
            ["gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type", "currency"],
            **kw,
        ),
        genai_unpriced=Counter(
            "gen_ai_client_unpriced_calls",
            "LLM calls whose model has no price in LLM_PRICES (their cost is unknown, not counted).",
            ["gen_ai_provider_name", "gen_ai_request_model"],
            **kw,
        ),
        genai_agent_duration=Histogram(
            "gen_ai_invoke_agent_duration_seconds",
            "Duration of agent runs (gen_ai.invoke_agent.duration); error_type is empty on success.",
            ["gen_ai_agent_name", "error_type"],
            buckets=GENAI_DURATION_BUCKETS,
            **kw,
        ),
        genai_tool_duration=Histogram(
            "gen_ai_execute_tool_duration_seconds",
            "Duration of tool calls (gen_ai.execute_tool.duration); error_type is empty on success.",
            ["gen_ai_tool_name", "error_type"],
            buckets=GENAI_DURATION_BUCKETS,
            **kw,
        ),
        genai_retrieval_duration=Histogram(
            "gen_ai_retrieval_duration_seconds",
            "Duration of retrievals (vector or search store queries), by data source; error_type is empty on success.",
            ["gen_ai_data_source_id", "error_type"],
            buckets=GENAI_DURATION_BUCKETS,
            **kw,
        ),
        label_overflow=Counter(
            "metrics_label_overflow",
            "Label values folded into __other__ by the cardinality guard.",
            ["metric", "label"],
            **kw,
        ),
        export_dropped=Counter(
            "otel_export_dropped",
            "Spans and log records dropped without trying while the OTLP collector failed (dead-collector breaker).",
            ["signal"],
            **kw,
        ),
        max_label_values=max_label_values,
        directory=directory,
        request_duration_shape=_shape(
            namespace, "http_server_request_duration_seconds", ["method", "route", "status_code"], buckets
        ),
        celery_task_duration_shape=_shape(namespace, "celery_task_duration_seconds", ["task", "queue"], TASK_BUCKETS),
    )
