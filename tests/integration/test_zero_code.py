"""Zero-code runs and pre-fork servers: one server span per request, none lost across fork or at exit.

The batch processor's delay is set far beyond the test, so every span the receiver gets was exported
by a forked worker's flush when it exited gracefully.
"""

import os
from pathlib import Path

import pytest
import requests

from tests import support, support_otlp

pytestmark = pytest.mark.integration

SERVER = 2  # OTLP SpanKind
REQUESTS = 12
INSTRUMENT = str(Path(support.PYTHON).parent / "opentelemetry-instrument")


def serve_and_stop(tmp_path, receiver, *, prefix=(), **env):
    env = support.sqlite_env(
        tmp_path,
        **{
            **support.tracing_to(receiver.endpoint),
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            **env,
        },
    )
    web = support.gunicorn(env, tmp_path / "web.log", workers=2, extra=("--preload",), prefix=prefix)
    with web:
        for _ in range(REQUESTS):
            response = requests.get(web.url + "/api/ping?api_key=SECRETQ", timeout=10, headers={"X-Api-Key": "K"})
            assert response.status_code == 200
        assert not [s for s in receiver.spans if s.kind == SERVER], "exported before exit: the test proves nothing"
    return [s for s in receiver.spans if s.kind == SERVER and s.attributes.get("http.route") == "api/ping"], web


def test_preload_workers_export_every_span_when_they_exit(tmp_path):
    with support_otlp.HttpReceiver() as receiver:
        spans, _ = serve_and_stop(tmp_path, receiver)
    assert len(spans) == REQUESTS
    assert all(s.name == "GET api/ping" for s in spans)


def test_opentelemetry_instrument_gives_one_span_per_request_with_our_options(tmp_path):
    if not os.path.exists(INSTRUMENT):
        support.missing(f"{INSTRUMENT} is not installed (opentelemetry-distro, in the otel extra)")
    with support_otlp.HttpReceiver() as receiver:
        spans, web = serve_and_stop(
            tmp_path,
            receiver,
            prefix=(INSTRUMENT,),
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
            OTEL_SERVICE_NAME="zero-code",
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST="x-api-key",
        )
        all_server = [s for s in receiver.spans if s.kind == SERVER]
    assert "opentelemetry-instrumentation-django uninstrumented" in web.output()
    # One span per request (the contrib middleware was taken out), made by django_observe.
    assert len(spans) == REQUESTS and len(all_server) == REQUESTS, [s.name for s in all_server]
    assert all("correlation_id" in s.attributes for s in spans)
    # The provider opentelemetry-instrument built is reused: its resource, and our redaction on its exporter.
    assert {s.resource.get("service.name") for s in spans} == {"zero-code"}
    assert "SECRETQ" not in str([s.attributes for s in receiver.spans])
    assert {s.attributes["http.request.header.x_api_key"] for s in spans} == {("[REDACTED]",)}
