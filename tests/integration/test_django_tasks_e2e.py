"""Django's tasks framework end to end: gunicorn enqueues, the real ``manage.py db_worker`` runs the task.

The correlation ID and the trace travel with the task; the worker's lines carry our task fields; the metrics
of both processes count exactly.
"""

import pytest
import requests

from tests import support, support_metrics, support_otlp

pytestmark = pytest.mark.integration

SERVER, PRODUCER, CONSUMER = 2, 4, 5  # OTLP SpanKind values
COUNT = "testproject.demo.background.count_users"
BROKEN = "testproject.demo.background.broken_report"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    support.require_module("django_tasks_db")
    tmp = tmp_path_factory.mktemp("django_tasks")
    web_port, worker_port = support.free_port(), support.free_port()
    with support_otlp.HttpReceiver() as receiver:
        env = support.sqlite_env(
            tmp,
            TESTPROJECT_DJANGO_TASKS="1",
            LOG_FORMAT="json",
            OTEL_ENABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="200",
            METRICS_PORT=str(web_port),
            METRICS_WORKER_PORT=str(worker_port),
        )
        with (
            support.gunicorn(env, tmp / "web.log", workers=2) as web,
            support.db_worker(env, tmp / "worker.log") as worker,
        ):
            for label in ("a", "b", "c"):
                response = requests.get(
                    f"{web.url}/api/tasks/enqueue?label={label}", headers={"X-Correlation-ID": "req_x"}, timeout=10
                )
                assert response.status_code == 202
            response = requests.get(
                f"{web.url}/api/tasks/enqueue?fail=1", headers={"X-Correlation-ID": "req_y"}, timeout=10
            )
            assert response.status_code == 202
            lines = support.wait_until(
                lambda: (
                    (
                        found := [
                            e for e in support.json_lines(worker.output()) if e.get("logger") == "django_observe.tasks"
                        ]
                    )
                    and sum(e["message"] in ("task_succeeded", "task_failed") for e in found) >= 4
                    and found
                ),
                timeout=20,
                message="four finished tasks in the worker's log",
            )
            yield {"web": web, "worker": worker, "lines": lines, "receiver": receiver, "ports": (web_port, worker_port)}


def test_the_worker_lines_carry_the_requests_correlation_id_and_the_task_fields(stack):
    lines = stack["lines"]
    succeeded = [e for e in lines if e["message"] == "task_succeeded"]
    assert len(succeeded) == 3
    for line in succeeded:
        assert line["correlation_id"] == "req_x"
        assert line["task_name"] == COUNT and line["task_id"]
        assert line["task_state"] == "SUCCESSFUL"
        # its two counts, and the backend's UPDATE of the result row: db_worker saves it (set_successful) before
        # it sends task_finished, inside the window the task's line measures
        assert line["db_queries"] == 2 + 1 and line["db_ms"] > 0 and line["duration_ms"] > 0
    started = [e for e in lines if e["message"] == "task_started"]
    assert {e["task_id"] for e in started} >= {e["task_id"] for e in succeeded}
    # the task's own log line is bound too (and the function, which takes no **kwargs, ran: the reserved
    # argument was removed before the call)
    own = [e for e in support.json_lines(stack["worker"].output()) if e.get("message") == "users counted"]
    assert {e["label"] for e in own} == {"a", "b", "c"} and {e["correlation_id"] for e in own} == {"req_x"}
    failed = next(e for e in lines if e["message"] == "task_failed")
    assert failed["correlation_id"] == "req_y" and failed["task_name"] == BROKEN
    assert failed["exception_type"] == "builtins.ValueError" and failed["exception"][0]["type"] == "ValueError"


def test_the_task_span_continues_the_requests_trace(stack):
    receiver = stack["receiver"]

    def complete():
        # the web and the worker export on their own schedules: wait for every span the checks below read
        # (each run's enqueue and server span, and the failed task's run), not only the successful runs
        found = list(receiver.spans)
        ids = {s.span_id: s for s in found}
        runs = [s for s in found if s.name == f"{COUNT} process"]
        chained = all(run.parent_span_id in ids and ids[run.parent_span_id].parent_span_id in ids for run in runs)
        broken = any(s.name == f"{BROKEN} process" for s in found)
        return len(runs) >= 3 and chained and broken and found

    spans = support.wait_until(complete, timeout=30, message="the request, enqueue and task spans")
    by_id = {s.span_id: s for s in spans}
    runs = [s for s in spans if s.name == f"{COUNT} process"]
    for run in runs:
        assert run.kind == CONSUMER
        enqueue = by_id[run.parent_span_id]
        assert enqueue.kind == PRODUCER and enqueue.name == f"{COUNT} enqueue"
        server = by_id[enqueue.parent_span_id]
        assert server.kind == SERVER and server.trace_id == run.trace_id
        assert server.attributes["correlation_id"] == "req_x"
        assert run.attributes["messaging.message.id"] == enqueue.attributes["messaging.message.id"]
    assert len({run.trace_id for run in runs}) == 3
    broken = next(s for s in spans if s.name == f"{BROKEN} process")
    assert broken.status_code == 2  # ERROR


def test_metrics_count_exactly_on_both_sides(stack):
    web_port, worker_port = stack["ports"]
    web = support_metrics.scrape(web_port)
    assert (
        support_metrics.value(web, "django_tasks_enqueued_total", task=COUNT, queue="default", backend="default") == 3
    )
    assert support_metrics.value(web, "django_tasks_enqueued_total", task=BROKEN, queue="reports") == 1
    worker = support_metrics.scrape(worker_port)
    assert support_metrics.value(worker, "django_tasks_started_total", task=COUNT, queue="default") == 3
    assert support_metrics.value(worker, "django_tasks_finished_total", task=COUNT, status="successful") == 3
    assert support_metrics.value(worker, "django_tasks_finished_total", task=BROKEN, status="failed") == 1
    assert support_metrics.value(worker, "django_tasks_finished_total", task=COUNT, status="failed") == 0
    assert support_metrics.value(worker, "django_tasks_duration_seconds_count", task=COUNT) == 3
    assert support_metrics.value(worker, "django_tasks_queue_wait_seconds_count", queue="default") == 3
    assert support_metrics.value(worker, "django_tasks_queue_wait_seconds_count", queue="reports") == 1
