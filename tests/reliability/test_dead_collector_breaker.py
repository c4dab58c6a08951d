"""The dead-collector breaker (issue #30, ``django_observe.breaker``) in a real gunicorn worker exporting to a
real OTLP receiver that is started, stopped and restarted on the same port.

While the collector is down, the first export fails at once (a refused connection is not retried) and batches
are dropped without trying (``otel_export_dropped_total{signal="spans"}``
counts them, one line says so); when it is back, the spans of requests made after the restart arrive. With the
collector up, every request's span arrives and nothing is counted as dropped.
"""

from __future__ import annotations

import http.client

import pytest

from tests import support, support_metrics
from tests.support_otlp import HttpReceiver

pytestmark = pytest.mark.integration


def get(port: int, cid: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/api/ping", headers={"X-Correlation-ID": cid})
        return connection.getresponse().status
    finally:
        connection.close()


def arrived(receiver: HttpReceiver, prefix: str) -> set[str]:
    with receiver.lock:
        return {
            str(span.attributes.get("correlation_id"))
            for span in receiver.spans
            if str(span.attributes.get("correlation_id", "")).startswith(prefix)
        }


def dropped(metrics_port: int) -> float:
    samples = support_metrics.scrape(metrics_port)
    return sum(v for (name, labels), v in samples.items() if name == "otel_export_dropped_total")


def test_spans_are_dropped_while_the_collector_is_down_and_arrive_again_after_it_restarts(tmp_path):
    receiver = HttpReceiver().__enter__()
    port = int(receiver.endpoint.rsplit(":", 1)[1])
    env = support.sqlite_env(tmp_path, **support.tracing_to(receiver.endpoint), METRICS_PORT=str(support.free_port()))
    metrics_port = int(env["METRICS_PORT"])
    with support.gunicorn(env, tmp_path / "web.log", workers=1, extra=("-c", "python:django_observe.gunicorn")) as web:
        # Healthy: every request's span arrives, nothing is dropped.
        for i in range(40):
            assert get(web.port, f"up-{i}") == 200
        support.wait_until(lambda: len(arrived(receiver, "up-")) == 40, timeout=60, message="the 40 spans")
        support.wait_for_port("127.0.0.1", metrics_port)
        assert dropped(metrics_port) == 0
        # Down: an export fails, then batches are dropped without trying, counted and said once.
        receiver.__exit__(None, None, None)
        sent = 0

        def breaker_dropped() -> float:
            nonlocal sent
            get(web.port, f"down-{sent}")
            sent += 1
            return dropped(metrics_port)

        support.wait_until(breaker_dropped, timeout=120, interval=0.2, message="spans dropped by the breaker")
        assert "dropped without trying" in web.output()
        # Refused at once, not retried by the exporter (1, 2, 4 s while the span queue filled): the exporter's
        # first line is its failure, not a retry (breaker.fail_fast_session).
        assert "Failed to export spans batch" in web.output()
        assert "retrying in" not in web.output()
        # Back on the same port: the spans of requests made from now on arrive.
        receiver = HttpReceiver(port).__enter__()
        try:
            after = 0

            def delivered_after_restart() -> set[str]:
                nonlocal after
                get(web.port, f"back-{after}")
                after += 1
                return arrived(receiver, "back-")

            support.wait_until(delivered_after_restart, timeout=120, interval=0.2, message="spans after the restart")
            # Once it answers, nothing more is dropped: the last requests all arrive.
            base = dropped(metrics_port)
            for i in range(20):
                assert get(web.port, f"last-{i}") == 200
            support.wait_until(lambda: len(arrived(receiver, "last-")) == 20, timeout=60, message="the 20 last spans")
            assert dropped(metrics_port) == base
            assert "works again" in support.wait_until(
                lambda: "works again" in web.output() and web.output(), timeout=30, message="the recovery line"
            )
        finally:
            receiver.__exit__(None, None, None)
