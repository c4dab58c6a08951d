"""``manage.py observe_doctor`` against real processes (issue #32): each misconfiguration is created for real
(an OTLP/gRPC receiver spoken to in HTTP, no Celery worker, a dead Redis, nothing on the metrics port, an
unwritable multiprocess directory, Jaeger variables with tracing off, an invalid setting) and the doctor names
it and exits 1; with gunicorn (2 workers), a Celery worker and an OTLP/HTTP receiver all right, it exits 0."""

from __future__ import annotations

import json

import pytest

from tests import support
from tests.support_otlp import GrpcReceiver, HttpReceiver

pytestmark = pytest.mark.integration


def doctor(env: dict[str, str], *args: str):
    return support.manage("observe_doctor", *args, env=env, check=False, timeout=120)


def ids(result) -> set[str]:
    return {finding["id"] for finding in json.loads(result.stdout)["findings"]}


def test_doctor_names_each_misconfiguration(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with GrpcReceiver() as grpc:
        env = support.sqlite_env(
            tmp_path,
            OTEL_ENABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=grpc.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            METRICS_PORT=str(support.free_port()),
            METRICS_ADDRESS="127.0.0.1",
            REDIS_URLS="redis://127.0.0.1:1/0",
            HEALTH_TIMEOUT="1",
            METRICS_MULTIPROC_DIR=str(blocker / "metrics"),
        )
        result = doctor(env, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    found = ids(result)
    assert {
        "otlp.protocol_mismatch",
        "metrics.port_unreachable",
        "metrics.multiprocess_dir",
        "celery.no_worker",
        "health.redis",
    } <= found, found
    body = json.loads(result.stdout)
    mismatch = next(f for f in body["findings"] if f["id"] == "otlp.protocol_mismatch")
    assert "set OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in mismatch["problem"]


def test_doctor_reports_invalid_settings_and_ignored_jaeger_variables(tmp_path):
    env = support.sqlite_env(tmp_path)
    result = doctor(dict(env, LOG_LEVEL="loud", METRICS_ADDRESS="127.0.0.1"))
    assert result.returncode == 1
    assert "[config.invalid] environment variable LOG_LEVEL must be one of" in result.stdout
    result = doctor(dict(env, OTEL_EXPORTER_JAEGER_AGENT_HOST="127.0.0.1"), "--json")
    assert result.returncode == 1
    assert "tracing.jaeger_ignored" in ids(result)


def test_doctor_is_clean_when_every_signal_arrives(tmp_path):
    with HttpReceiver() as receiver:
        env = support.sqlite_env(
            tmp_path,
            **support.tracing_to(receiver.endpoint),
            METRICS_PORT=str(support.free_port()),
            METRICS_ADDRESS="127.0.0.1",
        )
        with (
            support.gunicorn(env, tmp_path / "web.log", workers=2, extra=("-c", "python:django_observe.gunicorn")),
            support.running_worker(env, tmp_path / "worker.log"),
        ):
            support.wait_for_port("127.0.0.1", int(env["METRICS_PORT"]))
            result = doctor(env, "--json")
            assert json.loads(result.stdout) == {"ok": True, "findings": []}, result.stdout + result.stderr
            assert result.returncode == 0
        assert "observe_doctor test span" in receiver.names()


SIGNALS_ON = {"OTEL_LOGS_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp"}


@pytest.mark.parametrize(("receiver_class", "protocol"), [(HttpReceiver, "http/protobuf"), (GrpcReceiver, "grpc")])
def test_doctor_sends_a_test_span_log_record_and_metric_the_collector_accepts(tmp_path, receiver_class, protocol):
    """With the OTLP log and metrics exporters on, the doctor sends one of each signal through the service's
    exporters; the receiver decodes exactly those three, and no OTLP finding is reported."""
    with receiver_class() as receiver:
        env = support.sqlite_env(
            tmp_path,
            OTEL_ENABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
            **SIGNALS_ON,
        )
        result = doctor(env, "--json")
    assert not {i for i in ids(result) if i.startswith("otlp")}, result.stdout + result.stderr
    assert [(s.name, s.instrumentation_scope, s.resource["service.name"]) for s in receiver.spans] == [
        ("observe_doctor test span", "django_observe.doctor", "testproject")
    ]
    assert [(log.body, log.severity_text, log.resource["service.name"]) for log in receiver.logs] == [
        ("observe_doctor test log record", "INFO", "testproject")
    ]
    exports = [
        [(p.metric, p.kind, p.value, p.resource["service.name"]) for p in points] for points in receiver.metric_exports
    ]
    assert exports == [[("observe_doctor_test", "gauge", 1, "testproject")]]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_doctor_reports_each_signal_a_dead_collector_refuses(tmp_path, protocol):
    """Nothing listens at the endpoint: one finding per signal naming it, the endpoint and the reason; exit 1.
    It returns (each export is bounded by the doctor's timeout; the subprocess timeout fails a hang)."""
    endpoint = f"http://127.0.0.1:{support.free_port()}"
    env = support.sqlite_env(
        tmp_path,
        OTEL_ENABLED="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL=protocol,
        **SIGNALS_ON,
    )
    result = doctor(env, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    found = {f["id"]: f["problem"] for f in json.loads(result.stdout)["findings"]}
    for finding, what in (
        ("otlp.unreachable", "a test span (traces)"),
        ("otlp.logs.unreachable", "a test log record (logs)"),
        ("otlp.metrics.unreachable", "a test metric (metrics)"),
    ):
        assert found[finding] == (
            f"{what} to {endpoint} ({protocol}) was not acknowledged: connection refused: nothing listens at {endpoint}"
        )
    text = doctor(env)
    assert text.returncode == 1
    assert f"[otlp.metrics.unreachable] a test metric (metrics) to {endpoint}" in text.stdout


def test_doctor_names_a_protocol_mismatch_for_logs_and_metrics(tmp_path):
    with GrpcReceiver() as grpc:
        env = support.sqlite_env(
            tmp_path,
            OTEL_ENABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=grpc.endpoint,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            **SIGNALS_ON,
        )
        result = doctor(env, "--json")
    assert result.returncode == 1
    found = {f["id"]: f["problem"] for f in json.loads(result.stdout)["findings"]}
    for finding in ("otlp.protocol_mismatch", "otlp.logs.protocol_mismatch", "otlp.metrics.protocol_mismatch"):
        assert "set OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in found[finding], found
    assert grpc.spans == [] and grpc.logs == [] and grpc.metric_exports == []
