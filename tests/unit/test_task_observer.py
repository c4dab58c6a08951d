"""The shared task lifecycle (integrations.tasks.TaskObserver): what a run binds, writes and records, and
that it unbinds everything again (pure logic: a list recorder, a fresh logger, no queue)."""

from __future__ import annotations

import contextvars
import logging

import pytest

from django_observe.correlation import CorrelationPolicy, correlation_context, get_correlation_id
from django_observe.integrations.tasks import TaskObserver
from django_observe.logging.processors import task_context
from django_observe.metrics.tasks import NO_TASK_METRICS
from django_observe.queries import QueryCounter
from django_observe.queries import current as current_queries


class Recorded:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def started(self, run, wait):
        self.events.append(("started", run.name, run.queue, wait))

    def finished(self, run, outcome, state):
        self.events.append(("finished", run.name, outcome, state))

    def closed(self, run, seconds):
        self.events.append(("closed", run.name, seconds >= 0))


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.bound = (get_correlation_id(), dict(task_context.get() or {}))
        self.records.append(record)


@pytest.fixture
def lines():
    handler, logger = Lines(), logging.getLogger("tests.task_observer")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, handler.records
    logger.removeHandler(handler)


def observer(logger, metrics=NO_TASK_METRICS, queries=None) -> TaskObserver:
    return TaskObserver("testq", logger, CorrelationPolicy(), queries=queries, metrics=metrics)


def test_a_run_binds_its_context_writes_its_lines_records_its_metrics_and_unbinds(lines):
    logger, records = lines
    metrics = Recorded()
    obs = observer(logger, metrics, QueryCounter(True))
    before = get_correlation_id(), task_context.get()  # whatever earlier tests left in this context
    run = obs.begin("t1", "app.work", "high", {"correlation_id": "req_abc"}, wait=1.5, fields={"queue": "high"})
    assert get_correlation_id() == "req_abc"
    assert task_context.get() == {"task_id": "t1", "task_name": "app.work", "queue": "high"}
    current_queries().add("SELECT 1", 0.002)
    obs.end(run, "succeeded", state="SUCCESS")
    assert (get_correlation_id(), task_context.get()) == before and current_queries() is None
    assert [r.getMessage() for r in records] == ["task_started", "task_succeeded"]
    assert all(r.bound == ("req_abc", {"task_id": "t1", "task_name": "app.work", "queue": "high"}) for r in records)
    done = records[1]
    assert (done.task_state, done.db_queries, done.levelno) == ("SUCCESS", 1, logging.INFO)
    assert done.duration_ms >= 0
    assert metrics.events == [
        ("started", "app.work", "high", 1.5),
        ("finished", "app.work", "succeeded", "SUCCESS"),
        ("closed", "app.work", True),
    ]


@pytest.mark.parametrize("incoming", ["bad id with spaces", "x" * 500, "", None, 42])
def test_an_invalid_incoming_id_is_replaced_never_bound(lines, incoming):
    logger, records = lines
    obs = observer(logger)
    run = obs.begin("t2", "app.work", "default", {"correlation_id": incoming})
    bound = get_correlation_id()
    obs.end(run, "succeeded", state="SUCCESS")
    assert bound and bound != incoming and CorrelationPolicy().accept(bound) == bound


def test_a_run_inside_a_request_keeps_the_callers_id_and_restores_it(lines):
    logger, _ = lines
    obs = observer(logger)
    with correlation_context("req_caller"):
        run = obs.begin("t3", "app.eager", "default", {})
        assert get_correlation_id() == "req_caller"
        inner = obs.begin("t4", "app.nested", "default", {"correlation_id": "req_inner"})
        assert get_correlation_id() == "req_inner" and task_context.get()["task_id"] == "t4"
        obs.end(inner, "succeeded", state="SUCCESS")
        assert get_correlation_id() == "req_caller" and task_context.get()["task_id"] == "t3"
        obs.end(run, "succeeded", state="SUCCESS")
        assert get_correlation_id() == "req_caller" and task_context.get() is None


def test_outcomes_write_their_line_at_their_level_with_the_error(lines):
    logger, records = lines
    metrics = Recorded()
    obs = observer(logger, metrics)
    run = obs.begin("t5", "app.flaky", "default", {})
    obs.finish(run, "retried", state="RETRY", fields={"reason": "later"})
    try:
        raise ValueError("boom")
    except ValueError as exc:
        obs.finish(run, "failed", state="FAILURE", error=exc)
    obs.close(run, failed=True)
    retried, failed = records[1], records[2]
    assert (retried.getMessage(), retried.levelno, retried.reason) == ("task_retried", logging.WARNING, "later")
    assert (failed.getMessage(), failed.levelno, failed.exc_info[0]) == ("task_failed", logging.ERROR, ValueError)
    assert [e[2] for e in metrics.events if e[0] == "finished"] == ["retried", "failed"]
    obs.finish(None, "failed", state="FAILED", fields={"task_id": "t6", "task_name": "app.broken"})
    assert records[-1].task_name == "app.broken" and len(metrics.events) == 4  # no run: nothing recorded


def test_outgoing_carries_the_current_id_only(lines):
    logger, _ = lines
    obs = observer(logger)
    assert contextvars.Context().run(obs.outgoing) == {}  # a fresh context: no ID bound
    with correlation_context("req_out"):
        assert obs.outgoing() == {"correlation_id": "req_out"}
    with obs.producing("create q", "q") as span:
        assert span is None  # tracing off: no span
