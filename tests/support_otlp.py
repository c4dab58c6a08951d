"""Local OTLP receivers (HTTP and gRPC) that decode ExportTraceServiceRequest with opentelemetry-proto."""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import threading
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
    return getattr(any_value, kind) if kind else None


def decode(request: Any) -> list[Span]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        kind=span.kind,
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        resource=resource,
                        status_code=span.status.code,
                        status_message=span.status.message,
                        events=[(e.name, {a.key: _value(a.value) for a in e.attributes}) for e in span.events],
                    )
                )
    return spans


class Receiver:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.requests = 0
        self.lock = threading.Lock()

    def add(self, spans: list[Span]) -> None:
        with self.lock:
            self.requests += 1
            self.spans.extend(spans)

    def names(self) -> list[str]:
        with self.lock:
            return [s.name for s in self.spans]


class HttpReceiver(Receiver):
    """OTLP/HTTP on a free loopback port: ``endpoint`` is the base URL (``/v1/traces`` is appended)."""

    def __init__(self) -> None:
        super().__init__()
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
                if self.path == "/v1/traces":
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver.add(decode(request))
                payload = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", support.free_port()), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HttpReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


class GrpcReceiver(Receiver):
    """OTLP/gRPC (TraceService) on a free loopback port."""

    def __init__(self) -> None:
        super().__init__()
        import grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request, context):  # noqa: N802
                receiver.add(decode(request))
                return trace_service_pb2.ExportTraceServiceResponse()

        port = support.free_port()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.endpoint = f"http://127.0.0.1:{port}"

    def __enter__(self) -> GrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(grace=None)
