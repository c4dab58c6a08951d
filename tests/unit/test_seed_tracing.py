"""Seed 000's tracing configuration, read as written: the Jaeger agent variables, `tracing = "Jaeger"`, an
endpoint on 4317 with no protocol set, and a protocol mismatch reported in words (issue #32)."""

from __future__ import annotations

import logging
import types

import pytest

from django_observe.conf import InvalidConfiguration, load_config
from django_observe.tracing import mismatch
from django_observe.tracing.setup import describe

PRODUCTION = types.SimpleNamespace(DEBUG=False)


def test_jaeger_agent_variables_send_otlp_to_that_hosts_jaeger():
    config = load_config(
        PRODUCTION,
        {"TRACING": "Jaeger", "OTEL_EXPORTER_JAEGER_AGENT_HOST": "jaeger", "OTEL_EXPORTER_JAEGER_AGENT_PORT": "6831"},
    )
    assert config.otel_enabled
    assert config.otel_exporter_otlp_endpoint == "http://jaeger:4318"
    assert config.otel_exporter_otlp_protocol == "http/protobuf"
    line = describe(config)
    assert "endpoint=http://jaeger:4318 (OTEL_EXPORTER_JAEGER_AGENT_HOST=jaeger: Jaeger's OTLP port 4318" in line
    assert "agent port 6831 (UDP, Thrift) not used" in line


def test_jaeger_host_with_grpc_protocol_uses_4317():
    config = load_config(
        PRODUCTION, {"OTEL_EXPORTER_JAEGER_AGENT_HOST": "jaeger", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    )
    assert config.otel_exporter_otlp_endpoint == "http://jaeger:4317"


def test_explicit_otlp_endpoint_wins_over_the_jaeger_host():
    config = load_config(
        PRODUCTION,
        {"OTEL_EXPORTER_JAEGER_AGENT_HOST": "jaeger", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
    )
    assert config.otel_exporter_otlp_endpoint == "http://collector:4318"


def test_tracing_jaeger_with_tracing_switched_off_fails_loudly():
    with pytest.raises(InvalidConfiguration, match="TRACING is 'jaeger' but .*OTEL_ENABLED is False"):
        load_config(PRODUCTION, {"TRACING": "jaeger", "OTEL_ENABLED": "false"})


def test_tracing_setting_rejects_unknown_values():
    with pytest.raises(InvalidConfiguration, match='TRACING must be one of "opentelemetry", "jaeger", "none"'):
        load_config(PRODUCTION, {"TRACING": "zipkin"})


def test_endpoint_on_4317_without_a_protocol_uses_grpc_and_says_so():
    config = load_config(PRODUCTION, {"OTEL_ENABLED": "1", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4317"})
    assert config.otel_exporter_otlp_protocol == "grpc"
    assert "protocol=grpc (default for an endpoint on port 4317, OTLP/gRPC's)" in describe(config)


def test_an_explicit_protocol_on_4317_is_kept():
    config = load_config(
        PRODUCTION,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
    )
    assert config.otel_exporter_otlp_protocol == "http/protobuf"


def test_protocol_mismatch_is_explained_in_words():
    dump = "Transient error ('Connection aborted.', BadStatusLine('\x00\x00\x18\x04\x00\x00')) encountered"
    assert mismatch.explain(dump) == mismatch.HTTP_AT_GRPC
    grpc = "error details: Failed parsing HTTP/2 (Expected SETTINGS frame as the first frame, got frame type 79)"
    assert mismatch.explain(grpc) == mismatch.GRPC_AT_HTTP
    assert mismatch.explain("Connection refused") is None
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "Transient error %s", (dump,), None)
    assert mismatch.MismatchWords().filter(record)
    assert "\x00" not in record.getMessage()
    assert "set OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in record.getMessage()
