"""The OTLP HTTP exporters' session behind the breaker (``django_observe.breaker.fail_fast_session``): a collector
nothing listens for fails the export at once, without the exporter's retries (1, 2, 4 s, during which the span
queue filled: +5 MB in a worker); a connection that opens and then breaks is still the exporter's to retry.
Real sockets on loopback and the real exporter."""

from __future__ import annotations

import logging
import socket
import threading

import pytest
import requests

from django_observe.breaker import CollectorUnreachable, fail_fast_session


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_is_collector_unreachable_and_not_a_requests_connection_error():
    session = fail_fast_session({})
    with pytest.raises(CollectorUnreachable) as raised:
        session.post(f"http://127.0.0.1:{closed_port()}/v1/traces", data=b"x", timeout=5)
    assert not isinstance(raised.value, requests.exceptions.RequestException)
    assert "Connection refused" in str(raised.value)  # observe_doctor's words still find it


def test_a_connection_that_opens_then_breaks_is_left_to_the_exporters_retries():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def reset_each() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            conn.recv(65536)
            conn.close()

    threading.Thread(target=reset_each, daemon=True).start()
    try:
        with pytest.raises(requests.exceptions.ConnectionError):
            fail_fast_session({}).post(f"http://127.0.0.1:{server.getsockname()[1]}/v1/traces", data=b"x", timeout=5)
    finally:
        server.close()


def test_a_configured_credential_provider_keeps_the_exporters_own_session():
    assert fail_fast_session({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": "my_provider"}) is None
    assert fail_fast_session({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "my_provider"}) is None
    assert fail_fast_session({"OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER": ""}) is not None


@pytest.mark.parametrize("with_session", [True, False])
def test_the_exporter_retries_a_dead_collector_only_without_the_session(with_session, caplog):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExportResult

    span = TracerProvider().get_tracer("t").start_span("s")
    span.end()
    session = fail_fast_session({}) if with_session else None
    # A 1.5 s timeout bounds the run without the session: one retry after about 1 s, then the deadline.
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{closed_port()}/v1/traces", timeout=1.5, session=session)
    # The runtime's once-per-process filters on the exporter's logger would hide its lines after the first.
    said = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    filters, said.filters = said.filters, []
    try:
        with caplog.at_level(logging.WARNING, logger="opentelemetry"):
            assert exporter.export([span]) == SpanExportResult.FAILURE
    finally:
        said.filters = filters
        exporter.shutdown()
    retried = [r for r in caplog.records if "retrying" in r.getMessage()]
    failed = [r for r in caplog.records if "Failed to export" in r.getMessage()]
    assert len(failed) == 1, [r.getMessage() for r in caplog.records]
    assert (len(retried) == 0) if with_session else (len(retried) >= 1), [r.getMessage() for r in caplog.records]
