"""The first hour (issue #32), with real processes: the `tracing enabled` start-up line under runserver and a
Celery worker, the seed's Jaeger variables understood, a protocol mismatch reported in words."""

from __future__ import annotations

import pytest
import requests

from tests import support
from tests.support_otlp import GrpcReceiver

pytestmark = pytest.mark.integration


def test_runserver_announces_tracing_with_the_seeds_jaeger_variables(tmp_path):
    env = support.sqlite_env(
        tmp_path,
        TRACING="Jaeger",
        OTEL_EXPORTER_JAEGER_AGENT_HOST="127.0.0.1",
        OTEL_EXPORTER_JAEGER_AGENT_PORT="6831",
        LOG_FORMAT="text",
        LOG_LEVEL="info",
    )
    with support.runserver(env, tmp_path / "out.log") as server:
        support.wait_until(lambda: "tracing enabled" in server.output(), timeout=30, message="tracing enabled")
    lines = [line for line in server.output().splitlines() if "tracing enabled" in line]
    assert len(lines) == 1, lines
    assert (
        "endpoint=http://127.0.0.1:4318 (OTEL_EXPORTER_JAEGER_AGENT_HOST=127.0.0.1: Jaeger's OTLP port 4318"
        in (lines[0])
    )


def test_celery_worker_announces_tracing(tmp_path):
    grpc_port = support.free_port()
    env = support.sqlite_env(
        tmp_path,
        OTEL_ENABLED="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{grpc_port}",
        LOG_FORMAT="text",
        LOG_LEVEL="info",
    )
    with support.running_worker(env, tmp_path / "worker.log") as worker:
        support.wait_until(lambda: "tracing enabled" in worker.output(), timeout=30, message="tracing enabled")
    assert worker.output().count("tracing enabled") == 1


def test_http_exporter_at_a_grpc_receiver_is_reported_in_words(tmp_path):
    with GrpcReceiver() as receiver:
        env = support.sqlite_env(
            tmp_path,
            **support.tracing_to(receiver.endpoint),
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            LOG_FORMAT="text",
            LOG_LEVEL="info",
        )
        with support.runserver(env, tmp_path / "out.log") as server:
            requests.get(server.url + "/api/ping", timeout=10)
            support.wait_until(lambda: "answered in HTTP/2" in server.output(), timeout=30, message="mismatch words")
    assert "BadStatusLine" not in server.output()
    assert "set OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in server.output()


CLEAR_ERROR = (
    'environment variable LOG_LEVEL must be one of "error", "warning", "info", "debug", "trace", "warn", got \'loud\''
)


@pytest.mark.parametrize(
    "argv",
    [
        ["manage.py", "shell", "-c", "pass"],
        ["manage.py", "migrate"],
        ["-m", "uvicorn", "testproject.asgi:application", "--port", "0"],
        ["-m", "celery", "-A", "testproject", "worker", "--without-gossip", "--without-mingle"],
    ],
    ids=["shell", "migrate", "uvicorn", "celery"],
)
def test_bad_configuration_is_the_same_few_lines_everywhere(tmp_path, argv):
    import subprocess

    env = support.project_env(SQLITE_PATH=str(tmp_path / "db.sqlite3"), LOG_LEVEL="loud")
    done = subprocess.run(
        [support.PYTHON, *argv], cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert CLEAR_ERROR in done.stderr
    assert "https://django-observe.readthedocs.io/en/latest/configuration/" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 5, done.stderr


def test_runserver_under_debug_logs_each_request_and_error_once(tmp_path):
    env = support.sqlite_env(tmp_path, DEBUG="1", LOG_FORMAT="text", LOG_LEVEL="info", METRICS_PORT="0")
    check = support.manage("check", env=env)
    assert "W002" not in check.stdout + check.stderr
    with support.runserver(env, tmp_path / "out.log") as server:
        requests.get(server.url + "/api/ping", headers={"X-Correlation-ID": "req_quiet1"}, timeout=10)
        requests.get(server.url + "/api/crash", headers={"X-Correlation-ID": "req_quiet2"}, timeout=10)
        requests.get(server.url + "/healthz", timeout=10)
        support.wait_until(lambda: "(req_quiet2)" in server.output(), message="the 500's request line")
        support.wait_until(lambda: "GET /healthz" in server.output(), message="the probe's line")
    out = server.output()
    assert out.count("(req_quiet1)") == 1, out
    assert out.count("(req_quiet2)") == 1, out
    assert out.count("Traceback (most recent call last)") == 1, out
    assert "[django.request]" not in out
    assert "socket.socket" not in out
    assert out.count("GET /healthz") == 1
