"""The dead-collector breaker's logic (``django_observe.breaker``), with a clock and an exporter of the test's
own (pure logic); tests/reliability/test_dead_collector_breaker.py runs it against a real receiver."""

from __future__ import annotations

import logging

from django_observe.breaker import ExportBreaker


class Exporter:
    def __init__(self) -> None:
        self.up = True
        self.calls: list[int] = []

    def export(self, batch):
        self.calls.append(len(batch))
        return "SUCCESS" if self.up else "FAILURE"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(exporter, clock, counted):
    return ExportBreaker(
        exporter,
        what="spans",
        where="http://collector:4318",
        failure="FAILURE",
        succeeded=lambda result: result == "SUCCESS",
        on_drop=counted.append,
        first=1.0,
        longest=8.0,
        clock=clock,
    )


def test_a_healthy_collector_gets_every_batch():
    exporter, clock, counted = Exporter(), Clock(), []
    wrapped = breaker(exporter, clock, counted)
    for size in (512, 512, 3):
        assert wrapped.export([None] * size) == "SUCCESS"
    assert exporter.calls == [512, 512, 3]
    assert counted == [] and wrapped.dropped_total == 0


def test_after_a_failure_batches_are_dropped_until_the_backoff_expires_then_it_recovers(caplog):
    exporter, clock, counted = Exporter(), Clock(), []
    wrapped = breaker(exporter, clock, counted)
    exporter.up = False
    with caplog.at_level(logging.WARNING, logger="django_observe.export"):
        assert wrapped.export([None] * 5) == "FAILURE"  # tried: the collector is down
        assert wrapped.export([None] * 7) == "FAILURE"  # dropped without trying
        clock.now += 0.5
        assert wrapped.export([None] * 2) == "FAILURE"
        assert exporter.calls == [5] and counted == [7, 2]
        clock.now += 0.6  # 1 s after the failure: tried again, fails, backoff 2 s
        wrapped.export([None])
        assert exporter.calls == [5, 1]
        clock.now += 1.9
        wrapped.export([None])
        assert exporter.calls == [5, 1]
        clock.now += 0.2
        wrapped.export([None])  # 4 s next
        clock.now += 4.1
        wrapped.export([None])  # 8 s next (the bound)
        clock.now += 8.1
        wrapped.export([None])  # still 8 s
        assert exporter.calls == [5, 1, 1, 1, 1]
        clock.now += 7.9
        wrapped.export([None] * 4)
        assert exporter.calls == [5, 1, 1, 1, 1] and counted[-1] == 4
        exporter.up = True
        clock.now += 0.2
        assert wrapped.export([None] * 3) == "SUCCESS"  # the collector is back: its first item tried, closes
        assert wrapped.export([None] * 6) == "SUCCESS"
    assert exporter.calls == [5, 1, 1, 1, 1, 1, 2, 6]
    assert sum(counted) == wrapped.dropped_total == 14
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # one when it opens, one when it works again
    assert "OTLP export of spans to http://collector:4318 failed" in lines[0]
    assert "otel_export_dropped_total" in lines[0]
    assert lines[1].endswith("works again; 14 spans were dropped without trying while it failed")


def test_a_trial_export_tries_one_item_and_drops_the_rest_while_the_collector_is_still_down():
    # Encoding a whole batch (512 spans) to learn that nothing listens cost a megabyte of transient memory in
    # the export thread on every trial (the long run of `python -m benchmarks.footprint --growth`).
    exporter, clock, counted = Exporter(), Clock(), []
    wrapped = breaker(exporter, clock, counted)
    exporter.up = False
    assert wrapped.export([None] * 512) == "FAILURE"  # the first failure: nothing told it the collector is down
    clock.now += 1.1
    assert wrapped.export([None] * 512) == "FAILURE"
    assert exporter.calls == [512, 1]
    assert counted == [511] and wrapped.dropped_total == 511
    assert wrapped.open
    clock.now += 2.1
    exporter.up = True
    assert wrapped.export([None] * 512) == "SUCCESS"
    assert exporter.calls == [512, 1, 1, 511]  # the trial, then the rest of the batch
    assert not wrapped.open and wrapped.dropped == 0


def test_a_counter_that_raises_does_not_break_the_export_thread():
    exporter, clock = Exporter(), Clock()
    exporter.up = False

    def broken(count):
        raise RuntimeError("no")

    wrapped = ExportBreaker(
        exporter, what="spans", where="x", failure="FAILURE", succeeded="SUCCESS".__eq__, on_drop=broken, clock=clock
    )
    wrapped.export([None])
    assert wrapped.export([None]) == "FAILURE"
