"""RQ end to end: gunicorn enqueues with django-rq, a real ``rq worker`` (RQ's own command) runs the jobs, against a
throwaway Redis.

The correlation ID and the trace travel with the job; the worker's lines carry our job fields; the metrics of
both processes count exactly after three jobs that succeed and one that fails.
"""

import pytest
import requests

from tests import support, support_metrics, support_otlp

pytestmark = pytest.mark.integration

SERVER, PRODUCER, CONSUMER = 2, 4, 5  # OTLP SpanKind values
COUNT = "testproject.demo.jobs.count_users"
BROKEN = "testproject.demo.jobs.broken_report"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    for name in ("rq", "django_rq"):
        support.require_module(name)
    tmp = tmp_path_factory.mktemp("rq")
    web_port, worker_port = support.free_port(), support.free_port()
    with support.throwaway_redis() as redis, support_otlp.HttpReceiver() as receiver:
        env = support.sqlite_env(
            tmp,
            TESTPROJECT_RQ_URL=redis.url,
            LOG_FORMAT="json",
            METRICS_PORT=str(web_port),
            METRICS_WORKER_PORT=str(worker_port),
            METRICS_MULTIPROC_DIR=str(tmp / "metrics"),
            **support.tracing_to(receiver.endpoint),
        )
        rq = str(support.Path(support.PYTHON).parent / "rq")
        argv = [rq, "worker", "-c", "testproject.rq_config", "--with-scheduler", "default", "reports"]
        with (
            support.gunicorn(env, tmp / "web.log", workers=1) as web,
            support.Server(argv, env, worker_port, tmp / "worker.log") as worker,
        ):
            for label in ("a", "b", "c"):
                response = requests.get(
                    f"{web.url}/api/rq/enqueue?label={label}", headers={"X-Correlation-ID": "req_rq_x"}, timeout=10
                )
                assert response.status_code == 202
            response = requests.get(
                f"{web.url}/api/rq/enqueue?fail=1", headers={"X-Correlation-ID": "req_rq_y"}, timeout=10
            )
            assert response.status_code == 202
            lines = support.wait_until(
                lambda: (
                    (
                        found := [
                            e for e in support.json_lines(worker.output()) if e.get("logger") == "django_observe.rq"
                        ]
                    )
                    and sum(e["message"] in ("task_succeeded", "task_failed") for e in found) >= 4
                    and found
                ),
                timeout=30,
                message="four finished jobs in the worker's log",
            )
            yield {
                "web": web,
                "worker": worker,
                "lines": lines,
                "receiver": receiver,
                "ports": (web_port, worker_port),
                "metrics_dir": tmp / "metrics" / str(worker.proc.pid),
            }


def test_the_job_lines_carry_the_requests_correlation_id_and_the_job_fields(stack):
    lines = stack["lines"]
    succeeded = [e for e in lines if e["message"] == "task_succeeded"]
    assert len(succeeded) == 3
    for line in succeeded:
        assert line["correlation_id"] == "req_rq_x"
        assert line["task_name"] == COUNT and line["task_id"] and line["queue"] == "default"
        assert line["task_state"] == "SUCCESS"
        assert line["db_queries"] == 2 and line["db_ms"] > 0 and line["duration_ms"] > 0
    started = [e for e in lines if e["message"] == "task_started"]
    assert {e["task_id"] for e in started} >= {e["task_id"] for e in succeeded}
    own = [e for e in support.json_lines(stack["worker"].output()) if e.get("message") == "users counted"]
    assert {e["label"] for e in own} == {"a", "b", "c"} and {e["correlation_id"] for e in own} == {"req_rq_x"}
    assert {e["task_name"] for e in own} == {COUNT}
    failed = next(e for e in lines if e["message"] == "task_failed")
    assert failed["correlation_id"] == "req_rq_y" and failed["task_name"] == BROKEN and failed["queue"] == "reports"
    assert failed["task_state"] == "FAILURE" and failed["exception"][0]["type"] == "ValueError"


def test_the_job_span_continues_the_requests_trace(stack):
    receiver = stack["receiver"]
    spans = support.wait_until(
        lambda: (
            (found := list(receiver.spans))
            and sum(s.name == "process default" for s in found) >= 3
            and sum(s.name == "process reports" for s in found) >= 1
            and sum(s.kind == SERVER and s.attributes.get("correlation_id") == "req_rq_x" for s in found) >= 3
            and found
        ),
        timeout=20,
        message="the request, create and process spans",
    )
    by_id = {s.span_id: s for s in spans}
    runs = [s for s in spans if s.name == "process default"]
    for run in runs:
        assert run.kind == CONSUMER
        assert run.attributes["messaging.system"] == "rq" and run.attributes["messaging.destination.name"] == "default"
        assert run.attributes["messaging.operation.type"] == "process" and run.attributes["code.function.name"] == COUNT
        create = by_id[run.parent_span_id]
        assert create.kind == PRODUCER and create.name == "create default"
        assert create.attributes["messaging.message.id"] == run.attributes["messaging.message.id"]
        server = by_id[create.parent_span_id]
        assert server.kind == SERVER and server.trace_id == run.trace_id
        assert server.attributes["correlation_id"] == "req_rq_x"
    assert len({run.trace_id for run in runs}) == 3
    broken = next(s for s in spans if s.name == "process reports")
    assert broken.status_code == 2  # ERROR


def test_metrics_count_exactly_on_both_sides(stack):
    web_port, worker_port = stack["ports"]
    value = support_metrics.value
    web = support_metrics.scrape(web_port)
    assert value(web, "rq_jobs_enqueued_total", task=COUNT) == 3
    assert value(web, "rq_jobs_enqueued_total", task=BROKEN) == 1
    worker = support_metrics.scrape(worker_port)
    assert value(worker, "rq_job_events_total", task=COUNT, queue="default", state="started") == 3
    assert value(worker, "rq_job_events_total", task=COUNT, queue="default", state="succeeded") == 3
    assert value(worker, "rq_job_events_total", task=COUNT, state="failed") == 0
    assert value(worker, "rq_job_events_total", task=BROKEN, queue="reports", state="started") == 1
    assert value(worker, "rq_job_events_total", task=BROKEN, queue="reports", state="failed") == 1
    assert value(worker, "rq_job_duration_seconds_count", task=COUNT, queue="default") == 3
    assert value(worker, "rq_job_duration_seconds_count", task=BROKEN, queue="reports") == 1
    assert value(worker, "rq_job_queue_wait_seconds_count", queue="default") == 3
    assert value(worker, "rq_job_queue_wait_seconds_count", queue="reports") == 1


def test_the_work_horses_metric_files_are_merged_at_the_next_scrape(stack):
    directory, main = stack["metrics_dir"], stack["worker"].proc.pid

    def horses_files():
        return [
            p.name
            for p in directory.glob("*.db")
            if p.name.split("_")[0] in ("counter", "histogram", "summary")
            and p.stem.split("_")[-1] not in (str(main), "merged")
        ]

    def merged_after_a_scrape():
        # A horse per job: its files are merged when the port is read after it exited (one still exiting at
        # this scrape is merged at the next).
        support_metrics.scrape(stack["ports"][1])
        return not horses_files()

    support.wait_until(merged_after_a_scrape, timeout=30, interval=1.0, message=f"no horse's file in {directory}")
    assert (directory / "counter_merged.db").exists() and (directory / "histogram_merged.db").exists()
