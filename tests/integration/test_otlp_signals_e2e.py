"""Traces, metrics and logs over real OTLP/HTTP from gunicorn (3 workers) and a Celery prefork worker (2 children):
exact request and task counts, one service identity in every signal and on stdout, no secret in the logs."""

import json

import pytest
import requests

from tests import support, support_otlp
from tests.support_metrics import scrape, value

pytestmark = pytest.mark.integration

REQUESTS, TASKS = 30, 6
NAME, VERSION, ENVIRONMENT = "acc-customer", "2.3.4", "staging"
DURATION = "http_server_request_duration_seconds"
ADD_TASK = "testproject.demo.tasks.add"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("otlp")
    receiver = support_otlp.HttpReceiver().__enter__()
    metrics_port = support.free_port()
    env = support.sqlite_env(
        tmp,
        OTEL_ENABLED="true",
        LOG_FORMAT="json",
        LOG_JSON_FLAVOR="ecs",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_SERVICE_NAME=NAME,
        SERVICE_VERSION=VERSION,
        OTEL_RESOURCE_ATTRIBUTES=f"deployment.environment={ENVIRONMENT},team=pay%20ments",
        OTEL_METRICS_EXPORTER="otlp",
        OTEL_METRIC_EXPORT_INTERVAL="500",
        OTEL_LOGS_EXPORTER="otlp",
        OTEL_BSP_SCHEDULE_DELAY="200",
        OTEL_BLRP_SCHEDULE_DELAY="200",
        METRICS_PORT=str(metrics_port),
    )
    worker = support.celery_worker(env, tmp / "worker.log")
    web = support.gunicorn(env, tmp / "web.log", workers=3)
    try:
        worker.start()
        support.wait_worker_ready(worker)
        web.start()
        support.wait_for_port("127.0.0.1", metrics_port, proc=web.proc)
        with requests.Session() as http:
            for i in range(REQUESTS):
                assert http.get(f"{web.url}/api/ping?password=planted", timeout=10).status_code == 200
            for _ in range(TASKS):
                assert http.get(f"{web.url}/api/enqueue", timeout=10).status_code == 202
        yield {"receiver": receiver, "web": web, "worker": worker, "metrics_port": metrics_port}
    finally:
        web.stop()
        worker.stop()
        receiver.__exit__(None, None, None)


def _ping_count(receiver):
    return sum(p.count for p in receiver.latest_points(DURATION) if p.attributes.get("http.route") == "api/ping")


def _tasks_succeeded(receiver):
    return sum(
        p.value
        for p in receiver.latest_points("celery_tasks")
        if p.attributes.get("task") == ADD_TASK and p.attributes.get("state") == "succeeded"
    )


def _identity(resource):
    return (resource["service.name"], resource["service.version"], resource["deployment.environment.name"])


def test_metric_counts_over_otlp_are_exact_across_workers_and_children(stack):
    receiver = stack["receiver"]
    support.wait_until(lambda: _ping_count(receiver) == REQUESTS, timeout=30, message=f"{REQUESTS} requests")
    support.wait_until(lambda: _tasks_succeeded(receiver) == TASKS, timeout=30, message=f"{TASKS} tasks")
    points = [p for p in receiver.latest_points(DURATION) if p.attributes.get("http.route") == "api/ping"]
    assert {(p.attributes["http.request.method"], p.attributes["http.response.status_code"]) for p in points} == {
        ("GET", 200)
    }
    # The Prometheus port (same aggregate) says the same.
    samples = scrape(stack["metrics_port"])
    assert value(samples, f"{DURATION}_count", route="api/ping", method="GET", status_code="200") == REQUESTS
    # One exporting stream per process group (web, worker), each with the identity.
    resources = {p.resource["service.instance.id"]: p.resource for e in receiver.metric_exports for p in e}
    assert len(resources) == 2
    for resource in resources.values():
        assert _identity(resource) == (NAME, VERSION, ENVIRONMENT) and resource["team"] == "pay ments"
    target = [p for p in receiver.latest_points("target_info")]
    assert target and target[0].attributes["service_name"] == NAME


def test_traces_logs_and_stdout_carry_the_same_identity(stack):
    receiver, web, worker = stack["receiver"], stack["web"], stack["worker"]
    support.wait_until(
        lambda: len([s for s in receiver.spans if s.name == "GET api/ping"]) >= REQUESTS, message="spans"
    )
    spans = [s for s in receiver.spans if s.name == "GET api/ping"]
    assert {_identity(s.resource) for s in spans} == {(NAME, VERSION, ENVIRONMENT)}
    assert len({s.resource["service.instance.id"] for s in spans}) <= 3  # one per gunicorn worker

    def request_logs():
        return [log for log in receiver.logs if log.attributes.get("logger") == "django_observe.request"]

    support.wait_until(lambda: len(request_logs()) >= REQUESTS + TASKS, message="request log records")
    support.wait_until(
        lambda: any(log.attributes.get("task_name") == ADD_TASK for log in receiver.logs), message="task logs"
    )
    logs = receiver.logs
    assert {_identity(log.resource) for log in logs} == {(NAME, VERSION, ENVIRONMENT)}
    span_ids = {(s.trace_id, s.span_id) for s in spans}
    ping_logs = [log for log in request_logs() if log.attributes.get("route") == "api/ping"]
    assert ping_logs and all((log.trace_id, log.span_id) in span_ids for log in ping_logs)
    assert all(log.attributes.get("correlation_id", "").startswith("req_") for log in ping_logs)
    task_logs = [log for log in logs if log.attributes.get("task_name") == ADD_TASK]
    assert all(log.trace_id and log.attributes.get("correlation_id") for log in task_logs)
    assert "planted" not in json.dumps([[log.body, log.attributes] for log in logs], default=str)
    # The same process's span and log record share service.instance.id.
    by_span = {(s.trace_id, s.span_id): s.resource["service.instance.id"] for s in spans}
    assert all(log.resource["service.instance.id"] == by_span[(log.trace_id, log.span_id)] for log in ping_logs)

    # stdout: the ECS lines say the same, unchanged by the OTLP handler.
    lines = [json.loads(line) for line in (web.output() + worker.output()).splitlines() if line.startswith("{")]
    assert lines
    assert {(e["service.name"], e["service.version"], e["service.environment"]) for e in lines} == {
        (NAME, VERSION, ENVIRONMENT)
    }
