"""OTLP metrics: the Prometheus catalogue pushed to the OTLP endpoint (``OTEL_METRICS_EXPORTER=otlp``).

One process per process group exports: in multiprocess mode (gunicorn workers, Celery prefork children) the
process holding ``otlp-metrics.lock`` in the group's multiprocess directory reads the same aggregate the
metrics port serves (every worker's files, summed; dead workers' counters kept) every
``OTEL_METRIC_EXPORT_INTERVAL`` and converts the families:

- counters -> cumulative monotonic Sum; gauges (and info) -> Gauge;
- histograms -> cumulative explicit-bucket Histogram (Prometheus' cumulative ``le`` buckets become per-bucket
  counts);
- labels -> attributes; the ``http_server_*`` families also get the stable HTTP semantic-convention names
  (:data:`HTTP_ATTRIBUTES`).

Why not an SDK ``MeterProvider`` in each worker: a worker's own cumulative series ends when it is recycled
(its last interval is lost, or a new series starts at 0 under a new ``service.instance.id``), and every
worker would need its own instance id, multiplying series by workers. Reading the aggregate counts each
sample exactly once, and a recycled worker changes nothing: its files stay in the aggregate. When the
exporting worker dies, a sibling takes the lock within one interval and continues the same cumulative
series (same start time, stored in the directory, and same ``service.instance.id``, the group's).

The resource is the service identity with ``service.instance.id`` = ``<host>:<group>`` (the group being the
multiprocess directory: the gunicorn master's or the Celery worker's pid), so a web group and a worker group
on one host are two distinct streams.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import forking, shutdown
from ..identity import ServiceIdentity, instance_id
from ..otlp_exporters import otlp_exporter
from ..runtime import current
from .exporter import make_registry, take_group_lock

__all__ = ["HTTP_ATTRIBUTES", "MetricsPusher", "start", "to_metrics"]

logger = logging.getLogger("django_observe.metrics")

LOCK_NAME = "otlp-metrics.lock"
START_NAME = "otlp-start"
SCOPE = "django_observe"

# Prometheus label -> stable HTTP semantic-convention attribute, for the http_server_* families.
HTTP_ATTRIBUTES = {
    "method": "http.request.method",
    "route": "http.route",
    "status_code": "http.response.status_code",
}
_INT_ATTRIBUTES = frozenset({"http.response.status_code"})


def _unit(name: str) -> str:
    if name.endswith("_seconds"):
        return "s"
    if name.endswith("_bytes"):
        return "By"
    return "1"


def _attributes(labels: dict[str, str], semconv: bool) -> dict[str, Any]:
    if not semconv:
        return dict(labels)
    attributes: dict[str, Any] = {}
    for key, value in labels.items():
        name = HTTP_ATTRIBUTES.get(key, key)
        if name in _INT_ATTRIBUTES and value.isdigit():
            attributes[name] = int(value)
        else:
            attributes[name] = value
    return attributes


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def to_metrics(families: Iterable[Any], *, start_ns: int, now_ns: int, http_prefix: str = "http_server_") -> list[Any]:
    """OpenTelemetry SDK ``Metric`` objects for prometheus_client metric families.

    Args:
        families: from ``registry.collect()`` (one family per name; later duplicates are skipped).
        start_ns: start of the cumulative series; now_ns: the time of the values.
        http_prefix: families whose labels also get the HTTP semantic-convention names.
    """
    from opentelemetry.sdk.metrics.export import (
        AggregationTemporality,
        Gauge,
        Histogram,
        HistogramDataPoint,
        Metric,
        NumberDataPoint,
        Sum,
    )

    cumulative = AggregationTemporality.CUMULATIVE
    metrics: list[Any] = []
    seen: set[str] = set()
    for family in families:
        if family.name in seen:
            continue
        seen.add(family.name)
        semconv = family.name.startswith(http_prefix)
        kind = family.type
        if kind == "counter":
            points = [
                NumberDataPoint(_attributes(s.labels, semconv), start_ns, now_ns, s.value)
                for s in family.samples
                if s.name.endswith("_total")
            ]
            data: Any = Sum(points, cumulative, True)
        elif kind in ("gauge", "info", "unknown", "stateset"):
            points = [
                NumberDataPoint(_attributes(s.labels, semconv), now_ns, now_ns, s.value)
                for s in family.samples
                if not s.name.endswith("_created")
            ]
            data = Gauge(points)
        elif kind == "histogram":
            data = Histogram(_histogram_points(family, semconv, start_ns, now_ns, HistogramDataPoint), cumulative)
        else:  # summaries: OTLP has no cumulative-quantile equivalent worth sending
            continue
        if data.data_points:
            metrics.append(Metric(family.name, family.documentation, _unit(family.name), data))
    return metrics


def _histogram_points(family: Any, semconv: bool, start_ns: int, now_ns: int, point: Any) -> list[Any]:
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        entry = series.setdefault(_key(labels), {"labels": labels, "buckets": {}, "sum": 0.0, "count": 0})
        if sample.name.endswith("_bucket"):
            entry["buckets"][float(sample.labels["le"])] = sample.value
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
        elif sample.name.endswith("_count"):
            entry["count"] = int(sample.value)
    points = []
    for entry in series.values():
        bounds = sorted(entry["buckets"])
        cumulative_counts = [entry["buckets"][b] for b in bounds]
        counts = [int(c - p) for c, p in zip(cumulative_counts, [0.0, *cumulative_counts[:-1]], strict=True)]
        explicit = [b for b in bounds if b != float("inf")]
        if len(counts) == len(explicit):  # no +Inf bucket: everything above the last bound
            counts.append(max(0, entry["count"] - int(cumulative_counts[-1] if cumulative_counts else 0)))
        count = entry["count"] or int(cumulative_counts[-1] if cumulative_counts else 0)
        points.append(
            point(
                attributes=_attributes(entry["labels"], semconv),
                start_time_unix_nano=start_ns,
                time_unix_nano=now_ns,
                count=count,
                sum=entry["sum"],
                bucket_counts=counts,
                explicit_bounds=explicit,
                min=None,
                max=None,
            )
        )
    return points


def _group_start_ns(path: str | None) -> int:
    """Start of the cumulative series: kept in the group's directory, so a new exporter continues them."""
    if path is None:
        return time.time_ns()
    start_file = os.path.join(path, START_NAME)
    with contextlib.suppress(FileExistsError):
        fd = os.open(start_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(time.time_ns()))
    for _ in range(20):  # a sibling may be writing it right now
        with contextlib.suppress(OSError, ValueError), open(start_file) as fh:
            return int(fh.read())
        time.sleep(0.01)
    return time.time_ns()


class MetricsPusher:
    """Pushes the metrics of this process group to the OTLP endpoint, from the process elected by a lock.

    Args:
        path: the multiprocess directory, or None (single process: this process's registry).
        collect: returns the metric families to export (the aggregate plus the scrape-time collectors).
        identity: the service identity of the resource.
        exporter: an OTLP metric exporter (``export(MetricsData, timeout_millis=)``).
        interval: seconds between exports.
    """

    def __init__(
        self,
        path: str | None,
        collect: Callable[[], Iterable[Any]],
        identity: ServiceIdentity,
        exporter: Any,
        interval: float,
    ):
        self.path, self.collect, self.identity = path, collect, identity
        self.exporter, self.interval = exporter, interval
        self.lock_path = os.path.join(path, LOCK_NAME) if path else None
        group = os.path.basename(path.rstrip("/")) if path else instance_id()
        self.instance = f"{socket.gethostname()}:{group}"
        self._lock_file: Any = None
        self._stop = threading.Event()
        self._start_ns: int | None = None
        self._resource: Any = None
        self._export_lock = threading.Lock()
        self._pid = os.getpid()

    def elected(self) -> bool:
        """This process holds the group's export lock (taken on the first call that finds it free)."""
        if self.lock_path is None:
            return True
        self._lock_file = take_group_lock(self.lock_path, self._lock_file)
        return self._lock_file is not None

    def push(self) -> bool:
        """Export the current values once (if elected); True when the collector accepted them."""
        from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData, ResourceMetrics, ScopeMetrics
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        if not self.elected():
            return False
        with self._export_lock:
            if self._start_ns is None:
                self._start_ns = _group_start_ns(self.path)
                self._resource = Resource.create(self.identity.resource_attributes(instance=self.instance))
            metrics = to_metrics(self.collect(), start_ns=self._start_ns, now_ns=time.time_ns())
            data = MetricsData(
                [ResourceMetrics(self._resource, [ScopeMetrics(InstrumentationScope(SCOPE), metrics, "")], "")]
            )
            return self.exporter.export(data, timeout_millis=10_000) == MetricExportResult.SUCCESS

    def run(self) -> None:
        push = forking.forks_wait_for_first_call(self.push)  # the first push imports about 50 modules
        while not self._stop.wait(self.interval):
            try:
                push()
            except Exception:  # never let one bad export stop the thread
                logger.warning("OTLP metrics export failed", exc_info=True)

    def start(self) -> None:
        threading.Thread(target=self.run, name="django_observe_otlp_metrics", daemon=True).start()
        atexit.register(self.final_push)

    def final_push(self) -> None:
        """At exit, the elected process exports once more (the last interval's increments), for at most
        ``OTEL_EXPORT_SHUTDOWN_TIMEOUT`` seconds (``django_observe.shutdown``)."""
        self._stop.set()
        if os.getpid() == self._pid and (self._lock_file is not None or self.lock_path is None):
            shutdown.begin()
            budget = shutdown.Budget("metric exports", "the OTLP collector")
            with contextlib.suppress(Exception):
                budget.call(self.push, count=1, default=False)
            budget.report()


def _families(path: str | None, registry: Any) -> Iterable[Any]:
    rt = current()
    collectors = list(rt.metrics.collectors) if rt is not None and rt.metrics is not None else []
    if path is not None:
        yield from make_registry(path, collectors).collect()
        return
    yield from registry.collect()
    registered = set(getattr(registry, "_collector_to_names", {}))
    for collector in collectors:
        if collector not in registered:
            yield from collector.collect()


def start(state: Any, config: Any, identity: ServiceIdentity, role: str) -> MetricsPusher | None:
    """Start pushing this group's metrics when ``OTEL_ENABLED`` and ``OTEL_METRICS_EXPORTER=otlp`` (serving
    processes only: ``web`` and ``worker``)."""
    if not (config.otel_enabled and config.otel_metrics_exporter == "otlp") or role not in ("web", "worker"):
        return None
    path, registry = state.multiprocess_path, state.registry
    pusher = MetricsPusher(
        path,
        lambda: _families(path, registry),
        identity,
        otlp_exporter("metrics", config.otel_exporter_otlp_endpoint, config.otel_exporter_otlp_protocol),
        config.otel_metric_export_interval / 1000,
    )
    pusher.start()
    logger.info("pushing OTLP metrics every %gs (%s)", pusher.interval, pusher.instance)
    return pusher
