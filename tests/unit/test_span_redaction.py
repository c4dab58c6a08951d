"""Spans reach the exporter without secrets: exception events of request spans, client URLs."""

import http.server
import threading

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from django_observe.tracing.redaction import RedactingSpanExporter


@pytest.fixture
def exported():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(memory, extra_keys=("ssn",))))
    yield provider, memory
    provider.shutdown()


def _text(spans):
    parts = []
    for span in spans:
        parts += [span.name, str(dict(span.attributes)), str(span.status.description)]
        parts += [str(dict(e.attributes)) for e in span.events]
    return " ".join(parts)


def test_exception_event_with_dsn_password_and_token(exported):
    provider, memory = exported
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("GET /x", record_exception=False) as span:
        try:
            raise ConnectionError("broker amqp://guest:BROKERPW@rabbit:5672// refused; retry /cb?token=TOKENQ")
        except ConnectionError as exc:
            span.record_exception(exc)
        span.set_attribute("ssn", "SSNVALUE")
        span.set_attribute("http.request.header.authorization", ("Bearer HDR",))
    text = _text(memory.get_finished_spans())
    for secret in ("BROKERPW", "TOKENQ", "SSNVALUE", "HDR"):
        assert secret not in text, text
    assert "rabbit:5672" in text  # the rest of the message stays


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("library", ["requests", "httpx"])
def test_client_span_url_query_is_redacted(exported, library):
    provider, memory = exported
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://u:URLPW@127.0.0.1:{server.server_port}/v1?api_key=APIKEYQ&token=TOKENQ&page=2"
    if library == "requests":
        import requests
        from opentelemetry.instrumentation.requests import RequestsInstrumentor as Instrumentor

        call = requests.get
    else:
        import httpx
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor as Instrumentor

        call = httpx.get
    instrumentor = Instrumentor()
    already = instrumentor.is_instrumented_by_opentelemetry
    if already:
        instrumentor.uninstrument()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with provider.get_tracer("t").start_as_current_span("parent"):
            call(url, timeout=5)
    finally:
        instrumentor.uninstrument()
        server.shutdown()
    client = [s for s in memory.get_finished_spans() if s.name != "parent"]
    assert client, memory.get_finished_spans()
    text = _text(client)
    assert "page=2" in text, text  # the URL is there ...
    for secret in ("APIKEYQ", "TOKENQ", "URLPW"):
        assert secret not in text, text  # ... without its secrets
