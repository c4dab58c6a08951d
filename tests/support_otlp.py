"""Local OTLP receivers (HTTP and gRPC) decoding traces, metrics and logs with opentelemetry-proto."""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

from tests import support


@dataclasses.dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_code: int
    status_message: str = ""
    events: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    instrumentation_scope: str = ""
    start_time_unix_nano: int = 0

    def texts(self) -> list[str]:
        """Every string the span carries: name, status message, attribute keys and values, event names and
        event attributes (what must never hold a secret)."""
        out = [self.name, self.status_message]
        for attributes in (self.attributes, self.resource, *(attrs for _, attrs in self.events)):
            for key, value in attributes.items():
                out.extend((key, str(value)))
        out.extend(name for name, _ in self.events)
        return out


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind) if kind else None


def _attributes(key_values: Any) -> dict[str, Any]:
    return {a.key: _value(a.value) for a in key_values}


def _walk(resources: Any, scopes: str, items: str) -> Iterator[tuple[dict[str, Any], Any, Any]]:
    """The one walk of an OTLP export request: ``(resource attributes, scope, item)`` for every span, metric or
    log record (``scopes``/``items``: ``scope_spans``/``spans``, ``scope_metrics``/``metrics``, ...)."""
    for resource_items in resources:
        resource = _attributes(resource_items.resource.attributes)
        for scope_items in getattr(resource_items, scopes):
            for item in getattr(scope_items, items):
                yield resource, scope_items.scope, item


def decode(request: Any) -> list[Span]:
    return [
        Span(
            name=span.name,
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            kind=span.kind,
            attributes=_attributes(span.attributes),
            resource=resource,
            status_code=span.status.code,
            status_message=span.status.message,
            events=[(e.name, _attributes(e.attributes)) for e in span.events],
            instrumentation_scope=scope.name,
            start_time_unix_nano=span.start_time_unix_nano,
        )
        for resource, scope, span in _walk(request.resource_spans, "scope_spans", "spans")
    ]


@dataclasses.dataclass
class Point:
    """One data point of an OTLP metric: ``value`` for sums and gauges, ``count``/``sum`` for histograms."""

    metric: str
    kind: str  # sum, gauge or histogram
    attributes: dict[str, Any]
    resource: dict[str, Any]
    value: float = 0.0
    count: int = 0
    monotonic: bool = False


@dataclasses.dataclass
class Log:
    body: Any
    severity_text: str
    trace_id: str
    span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


def decode_metrics(request: Any) -> list[Point]:
    points = []
    for resource, _, metric in _walk(request.resource_metrics, "scope_metrics", "metrics"):
        kind = metric.WhichOneof("data")
        data = getattr(metric, kind)
        for p in data.data_points:
            attributes = _attributes(p.attributes)
            if kind == "histogram":
                points.append(Point(metric.name, kind, attributes, resource, p.sum, p.count))
            else:
                value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                monotonic = kind == "sum" and data.is_monotonic
                points.append(Point(metric.name, kind, attributes, resource, value, monotonic=monotonic))
    return points


def decode_logs(request: Any) -> list[Log]:
    return [
        Log(
            body=_value(record.body),
            severity_text=record.severity_text,
            trace_id=record.trace_id.hex(),
            span_id=record.span_id.hex(),
            attributes=_attributes(record.attributes),
            resource=resource,
        )
        for resource, _, record in _walk(request.resource_logs, "scope_logs", "log_records")
    ]


class Receiver:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self.lock = threading.Lock()
        self.metric_exports: list[list[Point]] = []  # one list per export request, in arrival order
        self.logs: list[Log] = []

    def add_metrics(self, points: list[Point]) -> None:
        with self.lock:
            self.metric_exports.append(points)

    def add_logs(self, logs: list[Log]) -> None:
        with self.lock:
            self.logs.extend(logs)

    def latest_points(self, metric: str) -> list[Point]:
        """The points of ``metric`` in the newest export that has it (cumulative: the current totals)."""
        with self.lock:
            exports = list(self.metric_exports)
        for points in reversed(exports):
            found = [p for p in points if p.metric == metric]
            if found:
                return found
        return []

    def add(self, spans: list[Span]) -> None:
        with self.lock:
            self.requests += 1
            self.spans.extend(spans)

    def names(self) -> list[str]:
        with self.lock:
            return [s.name for s in self.spans]


class HttpReceiver(Receiver):
    """OTLP/HTTP on a free loopback port: ``endpoint`` is the base URL (``/v1/traces``, ``/v1/metrics`` and
    ``/v1/logs`` are appended). ``port``: a given one (a receiver restarted where the last one listened)."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__()
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                known = {"/v1/traces", "/v1/metrics", "/v1/logs"}
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver.add(decode(request))
                elif self.path == "/v1/metrics":
                    request = ExportMetricsServiceRequest()
                    request.ParseFromString(body)
                    receiver.add_metrics(decode_metrics(request))
                elif self.path == "/v1/logs":
                    request = ExportLogsServiceRequest()
                    request.ParseFromString(body)
                    receiver.add_logs(decode_logs(request))
                # The three responses are empty messages: the same (empty) bytes.
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path in known else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", port or support.free_port()), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HttpReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class GrpcReceiver(Receiver):
    """OTLP/gRPC (the trace, metrics and logs services) on a free loopback port."""

    def __init__(self) -> None:
        super().__init__()
        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802
                receiver.add(decode(request))
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                receiver.add_metrics(decode_metrics(request))
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request, context):  # noqa: N802
                receiver.add_logs(decode_logs(request))
                return logs_service_pb2.ExportLogsServiceResponse()

        port = support.free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), self.server)
        self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.endpoint = f"http://127.0.0.1:{port}"

    def __enter__(self) -> GrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(grace=None)
