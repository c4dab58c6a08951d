"""From a slow request to its cause: exemplars across gunicorn workers and Celery prefork children, a real
Prometheus storing them, and the database cost (queries, time, N+1) of each request and task."""

import glob
import json
import time

import pytest
import requests

from tests import support, support_metrics, support_otlp

pytestmark = pytest.mark.integration

OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}
PINGS, SLOW, TASKS = 30, 3, 4
TASK_SPAN = "run/testproject.demo.tasks.add"


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def wait_for_spans(receiver, predicate, timeout=20):
    return support.wait_until(lambda: predicate(list(receiver.spans)), timeout=timeout, message="spans")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """gunicorn (3 workers) and a prefork Celery worker with tracing on, over a private broker and SQLite."""
    tmp = tmp_path_factory.mktemp("cause")
    receiver = support_otlp.HttpReceiver().__enter__()
    web_port, worker_port = support.free_port(), support.free_port()
    env = support.sqlite_env(
        tmp,
        **support.tracing_to(receiver.endpoint),
        LOG_FORMAT="json",
        METRICS_PORT=str(web_port),
        METRICS_WORKER_PORT=str(worker_port),
        METRICS_MULTIPROC_DIR=str(tmp / "metrics"),
    )
    worker = support.celery_worker(env, tmp / "worker.log")
    web = support.gunicorn(env, tmp / "web.log", workers=3)
    try:
        worker.start()
        support.wait_worker_ready(worker)
        web.start()
        support.wait_for_port("127.0.0.1", web_port, 30)
        support.wait_for_port("127.0.0.1", worker_port, 30)
        yield {"env": env, "receiver": receiver, "web": web, "worker": worker, "ports": (web_port, worker_port)}
    finally:
        web.stop()
        worker.stop()
        receiver.__exit__(None, None, None)


def test_slow_request_is_an_exemplar_whose_trace_the_collector_has(stack):
    web, receiver = stack["web"], stack["receiver"]
    web_port, worker_port = stack["ports"]
    with requests.Session() as session:
        for _ in range(PINGS):
            assert session.get(web.url + "/api/ping", timeout=10).status_code == 200
        for _ in range(SLOW):
            assert session.get(web.url + "/api/slow?ms=300", timeout=10).status_code == 200
        task_ids = [session.get(web.url + "/api/enqueue", timeout=10).json()["task_id"] for _ in range(TASKS)]
    slow_spans = wait_for_spans(receiver, lambda spans: [s for s in spans if s.name == "GET api/slow"][SLOW - 1 :])
    slow_traces = {s.trace_id for s in receiver.spans if s.name == "GET api/slow"}
    wait_for_spans(receiver, lambda spans: len([s for s in spans if s.name == TASK_SPAN]) >= TASKS)
    task_traces = {s.trace_id for s in receiver.spans if s.name == TASK_SPAN}
    assert slow_spans and len(task_ids) == TASKS

    # Every process keeps its own exemplars; all of them are merged at scrape time.
    files = support.wait_until(
        lambda: glob.glob(stack["env"]["METRICS_MULTIPROC_DIR"] + "/*/exemplars_*.json"), message="exemplar files"
    )
    assert files

    def slow_exemplar_lines():
        text = requests.get(f"http://127.0.0.1:{web_port}/metrics", headers=OPENMETRICS, timeout=10).text
        return [
            line
            for line in text.splitlines()
            if line.startswith("http_server_request_duration_seconds_bucket") and 'route="api/slow"' in line
            if " # {" in line
        ]

    lines = support.wait_until(slow_exemplar_lines, message="an exemplar on the api/slow buckets")
    # The 300 ms requests land in the (0.25, 0.5] bucket; its exemplar is one of their traces.
    line = next(line for line in lines if 'le="0.5"' in line)
    trace_id = line.split('trace_id="', 1)[1][:32]
    assert trace_id in slow_traces
    # Counts stay exact across the three workers.
    samples = support_metrics.scrape(web_port)
    assert support_metrics.value(samples, "http_server_request_duration_seconds_count", route="api/ping") == PINGS
    assert support_metrics.value(samples, "http_server_request_duration_seconds_count", route="api/slow") == SLOW
    # The classic text format carries no exemplars.
    plain = requests.get(f"http://127.0.0.1:{web_port}/metrics", timeout=10).text
    assert " # {" not in plain

    # A real Prometheus with exemplar storage scrapes both ports; its exemplar API returns our trace ids.
    with support_metrics.prometheus({"web": web_port, "worker": worker_port}) as prom:

        def exemplars(metric):
            end = time.time() + 60
            response = requests.get(
                f"{prom}/api/v1/query_exemplars",
                params={"query": metric, "start": end - 600, "end": end},
                timeout=10,
            )
            response.raise_for_status()
            found = {}
            for series in response.json()["data"]:
                for exemplar in series["exemplars"]:
                    found[exemplar["labels"]["trace_id"]] = series["seriesLabels"]
            return found

        stored = support.wait_until(
            lambda: {
                t: s for t, s in exemplars("http_server_request_duration_seconds_bucket").items() if t in slow_traces
            },
            timeout=30,
            message="Prometheus stores the api/slow exemplar",
        )
        assert all(labels["route"] == "api/slow" for labels in stored.values())
        task_stored = support.wait_until(
            lambda: set(exemplars("celery_task_duration_seconds_bucket")) & task_traces,
            timeout=30,
            message="Prometheus stores a task exemplar",
        )
        assert task_stored <= task_traces


def test_n_plus_one_request_is_flagged_in_its_log_line_and_in_metrics(stack):
    web = stack["web"]
    web_port, _ = stack["ports"]
    before = support_metrics.scrape(web_port)
    bad = requests.get(web.url + "/api/users/report?n=15", timeout=10)
    good = requests.get(web.url + "/api/users/report?n=3", timeout=10)
    assert bad.status_code == good.status_code == 200
    bad_id, good_id = bad.headers["X-Correlation-ID"], good.headers["X-Correlation-ID"]

    def lines_of(correlation_id):
        return [line for line in json_lines(web.output()) if line.get("correlation_id") == correlation_id]

    bad_lines = support.wait_until(
        lambda: [line for line in lines_of(bad_id) if line["logger"] == "django_observe.request"], message="request"
    )
    request_line = bad_lines[0]
    assert request_line["db_queries"] == 15  # the view's fifteen lookups, nothing else
    assert isinstance(request_line["db_ms"], float) and request_line["db_ms"] > 0  # time spent in them
    warning = [line for line in lines_of(bad_id) if line["message"] == "repeated_query"]
    assert len(warning) == 1, lines_of(bad_id)
    assert warning[0]["level"] == "WARNING"
    assert warning[0]["route"] == "api/users/report"
    assert warning[0]["repeats"] == 15 and warning[0]["threshold"] == 10
    assert "%s" in warning[0]["statement"]  # the shape, never the parameters
    good_request = support.wait_until(
        lambda: [line for line in lines_of(good_id) if line["logger"] == "django_observe.request"], message="request"
    )[0]
    assert good_request["db_queries"] == 3 and good_request["db_ms"] > 0
    assert not [line for line in lines_of(good_id) if line["message"] == "repeated_query"]

    after = support_metrics.scrape(web_port)
    route = {"route": "api/users/report"}
    repeated = "http_server_repeated_queries_total"
    assert support_metrics.value(after, repeated, **route) - support_metrics.value(before, repeated, **route) == 1
    counted = "http_server_request_db_queries_count"
    assert support_metrics.value(after, counted, **route) - support_metrics.value(before, counted, **route) == 2
    summed = "http_server_request_db_queries_sum"
    assert support_metrics.value(after, summed, **route) - support_metrics.value(before, summed, **route) == 15 + 3


def test_task_log_lines_carry_their_database_cost(stack):
    web, worker = stack["web"], stack["worker"]
    response = requests.get(web.url + "/api/enqueue?lookups=12", timeout=10)
    task_id = response.json()["task_id"]

    def task_lines():
        return [line for line in json_lines(worker.output()) if line.get("task_id") == task_id]

    done = support.wait_until(
        lambda: [line for line in task_lines() if line["message"] == "task_succeeded"], message="task_succeeded"
    )[0]
    assert done["db_queries"] == 12 and done["db_ms"] > 0  # the task's twelve lookups
    warning = [line for line in task_lines() if line["message"] == "repeated_query"]
    assert len(warning) == 1 and warning[0]["repeats"] == 12
    assert warning[0]["correlation_id"] == response.headers["X-Correlation-ID"]


def test_without_tracing_no_exemplars_are_kept(tmp_path):
    port = support.free_port()
    env = support.sqlite_env(
        tmp_path, METRICS_PORT=str(port), METRICS_MULTIPROC_DIR=str(tmp_path / "metrics"), LOG_FORMAT="json"
    )
    with support.gunicorn(env, tmp_path / "web.log", workers=2) as web:
        support.wait_for_port("127.0.0.1", port, 30)
        for _ in range(10):
            assert requests.get(web.url + "/api/ping", timeout=10).status_code == 200
        request_lines = support.wait_until(
            lambda: (
                [line for line in json_lines(web.output()) if line["logger"] == "django_observe.request"][9:]
                and [line for line in json_lines(web.output()) if line["logger"] == "django_observe.request"]
            ),
            message="the ten request lines",
        )
        # The cause, seen on every request: no trace ID, so nothing was handed to the exemplar store (which
        # only writes what a traced request recorded); the files' absence below follows from it, not from a sleep.
        assert len(request_lines) == 10 and not [line for line in request_lines if "trace_id" in line]
        assert all(line["db_queries"] == 0 and line["db_ms"] == 0 for line in request_lines)  # ping runs no SQL
        text = requests.get(f"http://127.0.0.1:{port}/metrics", headers=OPENMETRICS, timeout=10).text
        samples = support_metrics.scrape(port)
    assert support_metrics.value(samples, "http_server_request_duration_seconds_count", route="api/ping") == 10
    assert "http_server_request_duration_seconds_bucket" in text and " # {" not in text
    assert not glob.glob(str(tmp_path / "metrics" / "*" / "exemplars_*.json"))
