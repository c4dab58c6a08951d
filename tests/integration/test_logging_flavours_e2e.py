"""LOG_JSON_FLAVOR and LOG_REQUESTS_SAMPLE, read from the real output of the test project under gunicorn.

Tracing is on with the ``none`` exporter: spans (and their IDs) are made, nothing is sent anywhere.
The field names are checked against each platform's documented names:

- GCP: the special JSON fields of structured logs and the ``LogEntry.httpRequest`` fields
  (cloud.google.com/logging/docs/structured-logging, .../reference/v2/rest/v2/LogEntry);
- Datadog: reserved attributes, the status remapper's level names, the default standard attributes and
  ``dd.trace_id``/``dd.span_id`` as in Datadog's OpenTelemetry log correlation guide;
- ECS: field names of the Elastic Common Schema reference and the ecs-logging spec
  (``@timestamp``, ``log.level``, ``message`` first).
"""

import json
import re

import pytest
import requests

from tests import support
from tests import support_metrics as sm

pytestmark = pytest.mark.integration

GCP_SPECIAL = {
    "severity",
    "message",
    "time",
    "httpRequest",
    "logging.googleapis.com/trace",
    "logging.googleapis.com/spanId",
    "logging.googleapis.com/trace_sampled",
    "logging.googleapis.com/labels",
    "logging.googleapis.com/insertId",
    "logging.googleapis.com/operation",
    "logging.googleapis.com/sourceLocation",
}
GCP_HTTP_REQUEST = {
    "requestMethod",
    "requestUrl",
    "requestSize",
    "status",
    "responseSize",
    "userAgent",
    "remoteIp",
    "serverIp",
    "referer",
    "latency",
    "cacheLookup",
    "cacheHit",
    "cacheValidatedWithOriginServer",
    "cacheFillBytes",
    "protocol",
}
GCP_SEVERITIES = {"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"}

DATADOG_STATUSES = {"emerg", "alert", "critical", "error", "warning", "notice", "info", "debug", "ok"}
DATADOG_RESERVED = {"host", "service", "status", "message", "timestamp", "trace_id", "span_id", "source"}
DATADOG_STANDARD = {
    "logger.name",
    "http.method",
    "http.status_code",
    "http.url_details.path",
    "http.useragent",
    "duration",
    "usr.id",
    "error.kind",
    "error.message",
    "error.stack",
}
DATADOG_CORRELATION = {"dd.trace_id", "dd.span_id", "dd.service", "dd.env", "dd.version"}

ECS_FIELDS = {
    "@timestamp",
    "log.level",
    "log.logger",
    "message",
    "ecs.version",
    "service.name",
    "service.version",
    "service.environment",
    "event.dataset",
    "event.duration",
    "trace.id",
    "span.id",
    "user.id",
    "http.request.method",
    "http.response.status_code",
    "url.path",
    "user_agent.original",
    "error.type",
    "error.message",
    "error.stack_trace",
}

# Our own keys that stay as custom fields (jsonPayload / custom attributes / non-ECS keys).
CUSTOM = {"logger", "correlation_id", "route", "duration_ms", "marker", "user_id", "stack_trace"}
UA = "flavour-test/1.0"


def json_lines(output: str) -> list[dict]:
    """Every line our formatter wrote (gunicorn's master logs its first lines in its own format)."""
    return [
        json.loads(line) for line in output.splitlines() if line and not (line.startswith("[") and "] [" in line[:40])
    ]


def run_flavour(tmp_path, flavor: str, **env_extra: str) -> tuple[list[dict], str]:
    env = support.sqlite_env(
        tmp_path,
        LOG_FORMAT="json",
        LOG_JSON_FLAVOR=flavor,
        OTEL_ENABLED="true",
        OTEL_TRACES_EXPORTER="none",
        **env_extra,
    )
    with support.gunicorn(env, tmp_path / "out.log", workers=1) as server:
        headers = {"User-Agent": UA}
        work = requests.get(
            server.url + "/api/work?marker=f1&token=s3cret",
            headers={**headers, "X-Correlation-ID": f"req_{flavor}_work"},
            timeout=10,
        )
        assert work.status_code == 200 and work.headers["X-Correlation-ID"] == f"req_{flavor}_work"
        crash = requests.get(
            server.url + "/api/crash", headers={**headers, "X-Correlation-ID": f"req_{flavor}_crash"}, timeout=10
        )
        assert crash.status_code == 500 and crash.headers["X-Correlation-ID"] == f"req_{flavor}_crash"
        assert f"req_{flavor}_crash" in crash.text  # the documented 500.html snippet
        support.wait_until(
            lambda: server.output().count('"GET /api/') >= 2 and f"req_{flavor}_crash" in server.output(),
            message="both request lines",
        )
        output = server.output()
    assert "s3cret" not in output and "hunter2" not in output
    return json_lines(output), output


def by_correlation(lines: list[dict], key: str, value: str) -> list[dict]:
    return [e for e in lines if e.get(key) == value]


def test_gcp_flavour(tmp_path):
    lines, _ = run_flavour(tmp_path, "gcp", LOG_GCP_PROJECT="test-proj")
    for event in lines:
        assert event["severity"] in GCP_SEVERITIES, event
        assert "level" not in event and "timestamp" not in event
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"])
        assert {k for k in event if k.startswith("logging.googleapis.com/")} <= GCP_SPECIAL
    work = by_correlation(lines, "correlation_id", "req_gcp_work")
    (request_line,) = [e for e in work if "httpRequest" in e]
    assert set(request_line["httpRequest"]) <= GCP_HTTP_REQUEST
    assert request_line["httpRequest"]["requestMethod"] == "GET"
    assert request_line["httpRequest"]["requestUrl"] == "/api/work"  # no query string
    assert request_line["httpRequest"]["status"] == 200
    assert request_line["httpRequest"]["userAgent"] == UA
    assert re.fullmatch(r"\d+(\.\d{1,9})?s", request_line["httpRequest"]["latency"])
    assert request_line["severity"] == "INFO" and request_line["message"] == "GET /api/work"
    trace = request_line["logging.googleapis.com/trace"]
    assert re.fullmatch(r"projects/test-proj/traces/[0-9a-f]{32}", trace)
    assert re.fullmatch(r"[0-9a-f]{16}", request_line["logging.googleapis.com/spanId"])
    assert request_line["logging.googleapis.com/trace_sampled"] is True
    app = [e for e in work if e["logger"] == "api.chat"]
    assert [e["message"] for e in app] == ["work started", "work done"]
    assert all(e["logging.googleapis.com/trace"] == trace for e in app)  # one trace in Cloud Trace
    (crash,) = [e for e in by_correlation(lines, "correlation_id", "req_gcp_crash") if "httpRequest" in e]
    assert crash["severity"] == "ERROR" and crash["httpRequest"]["status"] == 500
    assert crash["stack_trace"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: demo crash password=[REDACTED]" in crash["stack_trace"]


def test_datadog_flavour(tmp_path):
    lines, _ = run_flavour(tmp_path, "datadog", SERVICE_ENVIRONMENT="staging")
    for event in lines:
        assert event["status"] in DATADOG_STATUSES, event
        assert event["service"] == event["dd.service"] == "testproject"
        assert event["dd.env"] == "staging" and event["dd.version"] == "1.0.0"
        dotted = {k for k in event if "." in k}
        assert dotted <= DATADOG_STANDARD | DATADOG_CORRELATION, dotted - DATADOG_STANDARD - DATADOG_CORRELATION
        assert not ({"level", "trace_id", "span_id"} & set(event))
    work = by_correlation(lines, "correlation_id", "req_datadog_work")
    (request_line,) = [e for e in work if e["logger.name"] == "django_observe.request"]
    assert request_line["status"] == "info"
    assert request_line["http.method"] == "GET" and request_line["http.status_code"] == 200
    assert request_line["http.url_details.path"] == "/api/work" and request_line["http.useragent"] == UA
    assert isinstance(request_line["duration"], int) and request_line["duration"] >= 10_000_000  # ns, slept 10 ms
    trace_id = request_line["dd.trace_id"]
    assert re.fullmatch(r"\d+", trace_id) and int(trace_id) < 2**64
    assert re.fullmatch(r"\d+", request_line["dd.span_id"]) and int(request_line["dd.span_id"]) < 2**64
    assert all(e["dd.trace_id"] == trace_id for e in work)
    (crash,) = [
        e
        for e in by_correlation(lines, "correlation_id", "req_datadog_crash")
        if e["logger.name"] == "django_observe.request"
    ]
    assert crash["status"] == "error" and crash["http.status_code"] == 500
    assert crash["error.kind"] == "RuntimeError" and "[REDACTED]" in crash["error.message"]
    assert crash["error.stack"].startswith("Traceback")


def test_ecs_flavour(tmp_path):
    lines, output = run_flavour(tmp_path, "ecs")
    for line, event in zip([raw for raw in output.splitlines() if raw.startswith("{")], lines, strict=True):
        assert line.startswith('{"@timestamp":'), line  # the ecs-logging spec's first three keys
        assert list(event)[:3] == ["@timestamp", "log.level", "message"]
        dotted = {k for k in event if "." in k and not k.startswith("labels.")}
        assert dotted <= ECS_FIELDS, dotted - ECS_FIELDS
        assert event["service.name"] == "testproject" and event["ecs.version"].startswith("8.")
    work = by_correlation(lines, "labels.correlation_id", "req_ecs_work")
    (request_line,) = [e for e in work if e["log.logger"] == "django_observe.request"]
    assert request_line["log.level"] == "info"
    assert request_line["http.request.method"] == "GET" and request_line["http.response.status_code"] == 200
    assert request_line["url.path"] == "/api/work" and request_line["user_agent.original"] == UA
    assert request_line["event.duration"] >= 10_000_000
    assert re.fullmatch(r"[0-9a-f]{32}", request_line["trace.id"])
    assert re.fullmatch(r"[0-9a-f]{16}", request_line["span.id"])
    assert all(e["trace.id"] == request_line["trace.id"] for e in work)
    (crash,) = [
        e
        for e in by_correlation(lines, "labels.correlation_id", "req_ecs_crash")
        if e["log.logger"] == "django_observe.request"
    ]
    assert crash["log.level"] == "error" and crash["http.response.status_code"] == 500
    assert crash["error.type"] == "RuntimeError" and "Traceback" in crash["error.stack_trace"]


def test_default_flavour_is_unchanged_with_tracing_on(tmp_path):
    lines, _ = run_flavour(tmp_path, "default")
    work = by_correlation(lines, "correlation_id", "req_default_work")
    (request_line,) = [e for e in work if e["logger"] == "django_observe.request"]
    assert list(request_line)[:5] == ["timestamp", "level", "logger", "message", "correlation_id"]
    assert set(request_line) - {"db_queries", "db_ms"} == {
        "timestamp",
        "level",
        "logger",
        "message",
        "correlation_id",
        "method",
        "path",
        "route",
        "status",
        "duration_ms",
        "trace_id",
        "span_id",
    }


def test_request_lines_are_sampled_but_errors_slow_requests_and_metrics_are_not(tmp_path):
    metrics_port = support.free_port()
    env = support.sqlite_env(
        tmp_path,
        LOG_FORMAT="json",
        LOG_REQUESTS_SAMPLE=json.dumps({"/api/ping": 0, "api/work": 0, "/api/awork": 1}),
        LOG_SLOW_REQUEST_MS="300",
        METRICS_PORT=str(metrics_port),
        METRICS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    with support.gunicorn(env, tmp_path / "out.log", workers=1) as server:
        session = requests.Session()
        for i in range(50):
            assert session.get(server.url + "/api/ping", headers={"X-Correlation-ID": f"req_ping{i}"}).ok
        for i in range(3):
            session.get(server.url + f"/api/work?marker=fast{i}", headers={"X-Correlation-ID": f"req_fast{i}"})
        slow = session.get(server.url + "/api/work?sleep_ms=400", headers={"X-Correlation-ID": "req_slow"})
        assert slow.ok
        for i in range(5):
            error = session.post(server.url + "/api/ping", headers={"X-Correlation-ID": f"req_err{i}"})
            assert error.status_code == 403  # a client error (CSRF) on a sampled path
        for i in range(4):
            session.get(server.url + "/api/awork", headers={"X-Correlation-ID": f"req_kept{i}"})
        session.get(server.url + "/api/crash", headers={"X-Correlation-ID": "req_crash"})
        support.wait_until(lambda: "req_crash" in server.output(), message="crash line")
        support.wait_for_port("127.0.0.1", metrics_port, 20)
        pings = sm.value(
            sm.scrape(metrics_port), "http_server_request_duration_seconds_count", route="api/ping", method="GET"
        )
        lines = [e for e in json_lines(server.output()) if e.get("logger") == "django_observe.request"]
    assert pings == 50  # metrics count every request
    ping_lines = [e for e in lines if e["path"] == "/api/ping" and e["status"] == 200]
    assert len(ping_lines) < 50
    assert all(e["duration_ms"] >= 300 for e in ping_lines)  # only ever kept for being slow
    work_lines = [e for e in lines if e["path"] == "/api/work"]
    assert [e["correlation_id"] for e in work_lines if e["duration_ms"] < 300] == []
    assert "req_slow" in [e["correlation_id"] for e in work_lines]
    errors = sorted(e["correlation_id"] for e in lines if e["status"] == 403)
    assert errors == [f"req_err{i}" for i in range(5)]
    assert len([e for e in lines if e["path"] == "/api/awork"]) == 4  # rate 1
    assert [e["status"] for e in lines if e["correlation_id"] == "req_crash"] == [500]


def test_celery_worker_lines_use_the_flavour_too(tmp_path):
    env = support.sqlite_env(tmp_path, LOG_FORMAT="json", LOG_JSON_FLAVOR="ecs")  # filesystem broker
    with (
        support.gunicorn(env, tmp_path / "web.log", workers=1) as server,
        support.running_worker(env, tmp_path / "worker.log") as worker,
    ):
        response = requests.get(
            server.url + "/api/enqueue?chain=1&marker=c1", headers={"X-Correlation-ID": "req_ecs_task"}, timeout=10
        )
        assert response.status_code == 202
        support.wait_until(lambda: "child task ran" in worker.output(), timeout=30, message="child task")
    lines = [
        json.loads(line)
        for line in worker.output().splitlines()
        if line.startswith("{")  # Celery writes its shutdown notice straight to the terminal
    ]
    assert lines and all(list(e)[:3] == ["@timestamp", "log.level", "message"] for e in lines)
    task_lines = [e for e in lines if e.get("labels.correlation_id") == "req_ecs_task"]
    messages = {e["message"] for e in task_lines}
    assert {"parent task ran", "child task ran", "task_started", "task_succeeded"} <= messages
    child = next(e for e in task_lines if e["message"] == "child task ran")
    assert child["log.logger"] and child["task_name"].endswith("chain_child") and child["parent_task_id"]
