"""Tracing verified over real OTLP: gunicorn (2 workers), a Celery prefork worker on Redis, PostgreSQL."""

import collections
import json
import socket
import subprocess
import threading

import pytest
import requests

from tests import support, support_otlp

pytestmark = pytest.mark.integration

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP SpanKind values
ERROR = 2


def wait_for(receiver, predicate, timeout=15, message="spans"):
    return support.wait_until(lambda: predicate(list(receiver.spans)), timeout=timeout, message=message)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The test project with tracing on, against a local OTLP/HTTP receiver."""
    tmp = tmp_path_factory.mktemp("tracing")
    url, drop = support.create_postgres_database()
    receiver = support_otlp.HttpReceiver().__enter__()
    env = support.project_env(
        DATABASE_URL=url,
        REDIS_URL=support.redis_url(12),
        LOG_FORMAT="json",
        **support.tracing_to(receiver.endpoint),
        TESTPROJECT_VAR_DIR=str(tmp / "var"),
        METRICS_PORT="0",
        METRICS_WORKER_PORT="0",
    )
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    support.manage("migrate", "-v0", env=env)
    token = support.manage("demo_token", env=env).stdout.strip().splitlines()[-1]
    worker = support.celery_worker(env, tmp / "worker.log")
    web = support.gunicorn(env, tmp / "web.log", workers=2)
    try:
        worker.start()
        support.wait_worker_ready(worker)
        web.start()
        yield {"env": env, "receiver": receiver, "web": web, "worker": worker, "token": token}
    finally:
        web.stop()
        worker.stop()
        receiver.__exit__(None, None, None)
        drop()


def test_one_trace_from_the_request_through_db_redis_and_the_task(stack):
    receiver, web = stack["receiver"], stack["web"]
    response = requests.post(
        web.url + "/api/chat?api_key=s3cret",
        data=json.dumps({"message": "hi"}),
        timeout=10,
        headers={"Authorization": f"Bearer {stack['token']}", "X-Correlation-ID": "req_trace1"},
    )
    assert response.status_code == 202
    server = wait_for(
        receiver,
        lambda spans: [
            s for s in spans if s.name == "POST api/chat" and s.attributes.get("correlation_id") == "req_trace1"
        ],
    )[0]
    trace = wait_for(
        receiver,
        lambda spans: (
            (t := [s for s in spans if s.trace_id == server.trace_id])
            and {"run/testproject.demo.tasks.process_message", "run/testproject.demo.tasks.summarize"}
            <= {s.name for s in t}
            and t
        ),
        timeout=20,
        message="the whole trace",
    )
    by_id = {s.span_id: s for s in trace}
    assert server.kind == SERVER and server.parent_span_id == ""
    assert server.resource["service.name"] == "testproject"
    assert server.attributes["enduser.id"]
    attributes = json.dumps([s.attributes for s in trace])
    assert "s3cret" not in attributes and stack["token"] not in attributes
    assert server.attributes["url.path"] == "/api/chat" and server.attributes["http.route"] == "api/chat"
    assert server.attributes["http.request.method"] == "POST" and server.attributes["http.response.status_code"] == 202
    db = [s for s in trace if s.attributes.get("db.system") == "postgresql" and s.parent_span_id == server.span_id]
    assert db, "database spans under the request"
    assert any(s.attributes.get("db.system") == "redis" and s.parent_span_id == server.span_id for s in trace)
    publish = next(s for s in trace if s.name == "apply_async/testproject.demo.tasks.process_message")
    assert publish.kind == PRODUCER and publish.parent_span_id == server.span_id
    run = next(s for s in trace if s.name == "run/testproject.demo.tasks.process_message")
    assert run.kind == CONSUMER and run.parent_span_id == publish.span_id
    child_run = next(s for s in trace if s.name == "run/testproject.demo.tasks.summarize")
    assert by_id[by_id[child_run.parent_span_id].parent_span_id].span_id == run.span_id
    # trace_id/span_id in the log lines written inside the spans
    web_lines = [json.loads(line) for line in web.output().splitlines() if line.startswith("{")]
    chat = next(
        e for e in web_lines if e.get("message") == "Chat request processed" and e.get("correlation_id") == "req_trace1"
    )
    assert chat["trace_id"] == server.trace_id
    request_line = next(
        e for e in web_lines if e.get("logger") == "django_observe.request" and e.get("correlation_id") == "req_trace1"
    )
    assert request_line["trace_id"] == server.trace_id and request_line["span_id"] == server.span_id
    worker_lines = [json.loads(line) for line in stack["worker"].output().splitlines() if line.startswith("{")]
    task_line = next(
        e
        for e in worker_lines
        if e.get("message") == "Chat message processed" and e.get("correlation_id") == "req_trace1"
    )
    assert task_line["trace_id"] == server.trace_id


def test_an_incoming_traceparent_continues_the_callers_trace(stack):
    receiver, web = stack["receiver"], stack["web"]
    trace_id, parent_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    headers = {"traceparent": f"00-{trace_id}-{parent_id}-01", "X-Correlation-ID": "req_parent1"}
    assert requests.get(web.url + "/api/ping?x=1", headers=headers, timeout=10).status_code == 200
    server = wait_for(
        receiver,
        lambda spans: [s for s in spans if s.attributes.get("correlation_id") == "req_parent1" and s.kind == SERVER],
    )[0]
    assert (server.trace_id, server.parent_span_id) == (trace_id, parent_id)
    assert server.name == "GET api/ping" and server.attributes["url.path"] == "/api/ping"


def test_client_errors_are_not_span_errors_and_health_is_not_traced(stack):
    receiver, web = stack["receiver"], stack["web"]
    headers = {"Authorization": f"Bearer {stack['token']}", "X-Correlation-ID": "req_404"}
    assert requests.get(web.url + "/api/messages/999999", headers=headers, timeout=10).status_code == 404
    for path in ("/healthz", "/readyz", "/health", "/health/database"):
        requests.get(web.url + path, timeout=10)
    assert requests.get(web.url + "/api/crash", headers={"X-Correlation-ID": "req_500"}, timeout=10).status_code == 500
    # Both server spans awaited: the two requests may be served by different workers, which export apart.
    spans = wait_for(
        receiver,
        lambda spans: (
            {"req_404", "req_500"} <= {s.attributes.get("correlation_id") for s in spans if s.kind == SERVER} and spans
        ),
    )
    not_found = next(s for s in spans if s.attributes.get("correlation_id") == "req_404" and s.kind == SERVER)
    assert not_found.name == "GET api/messages/<int:message_id>"
    assert not_found.status_code != ERROR
    crash = next(s for s in spans if s.attributes.get("correlation_id") == "req_500" and s.kind == SERVER)
    assert crash.status_code == ERROR
    assert not [s for s in spans if s.kind == SERVER and "health" in s.name]


def test_a_recycled_worker_loses_no_span(tmp_path):
    with support_otlp.HttpReceiver() as receiver:
        # A batch delay longer than the test: only the flush on each recycled child's exit gets spans out.
        env = support.sqlite_env(
            tmp_path,
            REDIS_URL=support.redis_url(13),
            OTEL_ENABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="600000",
            METRICS_WORKER_PORT="0",
        )
        import redis

        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
        worker = support.celery_worker(env, tmp_path / "worker.log", extra=("--max-tasks-per-child", "1"))
        worker.start()
        try:
            support.wait_worker_ready(worker)
            support.manage(
                "shell", "-c", "from testproject.demo.tasks import add\nfor i in range(4): add.delay(i, i)", env=env
            )
            support.wait_until(lambda: worker.output().count('"task_succeeded"') == 4, timeout=30, message="tasks")
            runs = wait_for(
                receiver,
                lambda spans: len([s for s in spans if s.name.startswith("run/")]) >= 3 and spans,
                timeout=30,
                message="spans of recycled children",
            )
        finally:
            worker.stop()
    assert len([s for s in runs if s.name == "run/testproject.demo.tasks.add"]) >= 3


def test_grpc_protocol(tmp_path):
    support.require_module("grpc")
    with support_otlp.GrpcReceiver() as receiver:
        env = support.sqlite_env(
            tmp_path,
            OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
            **support.tracing_to(receiver.endpoint),
            METRICS_PORT="0",
        )
        with support.gunicorn(env, tmp_path / "web.log", workers=1) as web:
            assert requests.get(web.url + "/api/ping", timeout=10).status_code == 200
            wait_for(receiver, lambda spans: [s for s in spans if s.name == "GET api/ping"], message="gRPC export")


class DroppingCollector:
    """A collector address that accepts each connection and drops it at once, counting them: every export attempt
    fails (the exporter retries with back-off, warning each time), and the count proves the attempts happened."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.attempts = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.attempts += 1
            conn.close()

    def close(self):
        self.listener.close()


def test_collector_down_requests_still_succeed_and_it_is_reported_once(tmp_path):
    collector = DroppingCollector()
    env = support.sqlite_env(
        tmp_path,
        OTEL_ENABLED="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        LOG_FORMAT="json",
        OTEL_BSP_SCHEDULE_DELAY="100",
        METRICS_PORT="0",
    )
    try:
        with support.gunicorn(env, tmp_path / "web.log", workers=1) as web:
            for _ in range(10):
                assert requests.get(web.url + "/api/ping", timeout=30).status_code == 200
            # The positive event: three failed attempts, each of which the exporter reports (a warning per retry,
            # an error when it gives up), so "one line" below means the rest were suppressed, not late.
            support.wait_until(lambda: collector.attempts >= 3, timeout=60, message="three failed export attempts")
            assert requests.get(web.url + "/api/ping", timeout=30).status_code == 200  # requests unaffected
    finally:
        collector.close()
    exporter_lines = [
        line
        for line in web.output().splitlines()
        if '"logger":"opentelemetry' in line and ('"level":"WARNING"' in line or '"level":"ERROR"' in line)
    ]
    assert len(exporter_lines) == 1, exporter_lines
    assert "reported once per process" in exporter_lines[0]


def test_disabled_exports_nothing_and_adds_no_middleware(tmp_path):
    with support_otlp.HttpReceiver() as receiver:
        env = support.sqlite_env(
            tmp_path, OTEL_ENABLED="false", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, METRICS_PORT="0"
        )
        with support.gunicorn(env, tmp_path / "web.log", workers=1) as web:
            for _ in range(5):
                assert requests.get(web.url + "/api/ping", timeout=5).status_code == 200
        # gunicorn has exited: a process that traced would have flushed its spans on the way out (and the receiver
        # stores before it answers), so nothing can arrive after this point.
        assert receiver.requests == 0
    # (redis-py 8 imports parts of the OpenTelemetry SDK by itself; what we control is instrumentation
    # and the tracer provider.)
    probe = (
        "import django, sys; django.setup(); from django.conf import settings;"
        "from opentelemetry import trace;"
        "print(any('opentelemetry' in m for m in settings.MIDDLEWARE));"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.instrumentation'))"
        " + [type(trace.get_tracer_provider()).__name__])"
    )
    off = subprocess.run(
        [support.PYTHON, "-c", probe], cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert off.stdout.split() == ["False", "['ProxyTracerProvider']"], off.stdout + off.stderr
    on = subprocess.run(
        [support.PYTHON, "-c", probe],
        cwd=support.ROOT,
        env=dict(env, OTEL_ENABLED="true"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # On: request spans come from ObserveMiddleware (no contrib middleware), the SDK provider is installed and
    # the client libraries the project uses are instrumented (requests: the OTLP exporter imports it; Celery:
    # the test project has an app), those it does not use are not even imported (no Redis on this SQLite
    # project, so neither redis nor its instrumentation is loaded).
    first, second = on.stdout.splitlines()[:2]
    assert first == "False", on.stdout + on.stderr
    assert "'TracerProvider'" in second and "'opentelemetry.instrumentation.requests'" in second, second
    assert "'opentelemetry.instrumentation.celery'" in second, second
    assert "'opentelemetry.instrumentation.redis'" not in second, second


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift", 'must be one of "http/protobuf", "grpc"'),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "must be an http:// or https:// URL with a host"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "must be one of"),
    ],
)
def test_tracing_configuration_errors_fail_at_startup(tmp_path, variable, value, message):
    env = support.sqlite_env(tmp_path)
    result = support.manage("check", env=dict(env, OTEL_ENABLED="true", **{variable: value}), check=False)
    assert result.returncode != 0
    assert f"environment variable {variable} {message}" in result.stderr


def test_exemplars_link_latency_to_traces_in_single_process_mode(tmp_path):
    with support_otlp.HttpReceiver() as receiver:
        port = support.free_port()
        env = support.sqlite_env(
            tmp_path,
            **support.tracing_to(receiver.endpoint),
            METRICS_PORT=str(port),
        )
        with support.runserver(env, tmp_path / "web.log") as web:
            support.wait_for_port("127.0.0.1", port, 20)
            assert requests.get(web.url + "/api/ping", timeout=10).status_code == 200
            text = requests.get(
                f"http://127.0.0.1:{port}/metrics", timeout=10, headers={"Accept": "application/openmetrics-text"}
            ).text
            span = wait_for(receiver, lambda spans: [s for s in spans if s.name == "GET api/ping"])[0]
    lines = [
        line
        for line in text.splitlines()
        if line.startswith("http_server_request_duration_seconds_bucket")
        and 'route="api/ping"' in line
        and "# {" in line
    ]
    assert lines, "an exemplar on the request histogram"
    assert f'trace_id="{span.trace_id}"' in lines[0]


def test_collector_down_with_otlp_logs_and_metrics_each_exporter_is_reported_once(tmp_path):
    """The once-per-process note holds for the log and metric exporters too (their loggers are children of
    the ones that had the filter: a parent's filter never sees them)."""
    collector = DroppingCollector()
    env = support.sqlite_env(
        tmp_path,
        OTEL_ENABLED="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_METRIC_EXPORT_INTERVAL="200",
        LOG_FORMAT="json",
        OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_BLRP_SCHEDULE_DELAY="100",
        METRICS_PORT="0",
    )
    try:
        with support.gunicorn(env, tmp_path / "web.log", workers=1) as web:
            for _ in range(10):
                assert requests.get(web.url + "/api/ping", timeout=30).status_code == 200
            # Many failed attempts of the three exporters: each would warn on every retry.
            support.wait_until(lambda: collector.attempts >= 12, timeout=90, message="twelve failed export attempts")
            assert requests.get(web.url + "/api/ping", timeout=30).status_code == 200
    finally:
        collector.close()
    lines = [
        json.loads(line)
        for line in web.output().splitlines()
        if '"logger":"opentelemetry' in line and ('"level":"WARNING"' in line or '"level":"ERROR"' in line)
    ]
    per_logger = collections.Counter(line["logger"] for line in lines)
    print(f"collector down, {collector.attempts} failed attempts: exporter lines per logger {dict(per_logger)}")
    assert per_logger and all(count == 1 for count in per_logger.values()), per_logger


def test_a_malformed_baggage_header_is_reported_once_per_process(tmp_path):
    """One anonymous 1.5 KB ``baggage`` header of malformed entries made OpenTelemetry warn once per entry
    (181 lines, 42.7 KB of stdout, per request)."""
    baggage = ",".join(f"bad entry{i}" for i in range(180))
    assert len(baggage) >= 1500
    with support_otlp.HttpReceiver() as receiver:
        env = support.sqlite_env(tmp_path, LOG_FORMAT="json", METRICS_PORT="0", **support.tracing_to(receiver.endpoint))
        with support.gunicorn(env, tmp_path / "web.log", workers=1) as web:
            for _ in range(3):
                response = requests.get(web.url + "/api/ping", headers={"baggage": baggage}, timeout=30)
                assert response.status_code == 200
            wait_for(receiver, lambda spans: len([s for s in spans if s.name == "GET api/ping"]) >= 3, message="3")
    warnings = [
        line
        for line in web.output().splitlines()
        if '"logger":"opentelemetry.baggage' in line and '"level":"WARNING"' in line
    ]
    print(f"3 requests with a 1.5 KB malformed baggage header: {len(warnings)} warning lines")
    assert len(warnings) == 1, warnings[:5]
    assert "reported once per process" in warnings[0]
