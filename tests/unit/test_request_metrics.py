"""RequestRecorder: exact request metrics under concurrent threads, in single-process and multiprocess mode.

In single-process mode the recorder adds to the histogram values under one lock of its own and the in-flight
gauge reads a list's length; in multiprocess mode it calls inc(), which writes to the process's file.
"""

import asyncio
import os
import threading

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import resolve
from prometheus_client import CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector

from django_observe.metrics.catalogue import build_catalogue
from django_observe.metrics.http import RequestRecorder
from django_observe.queries import QueryCounter
from django_observe.requestinfo import SPAN_CONTEXT_ATTR, RequestState

THREADS, REQUESTS = 8, 400
SECONDS = 0.25  # exact in binary: the sum is exact too


def request(path="/api/ping"):
    made = RequestFactory().get(path)
    made.resolver_match = resolve(path)
    return made


def build(registry, **kwargs):
    catalogue = build_catalogue(registry=registry)
    return catalogue, RequestRecorder(catalogue, frozenset({"django_observe"}), **kwargs)


def hammer(recorder, queries_each=3):
    counter = QueryCounter(enabled=True)
    started = threading.Barrier(THREADS)

    def work():
        started.wait()
        for _ in range(REQUESTS):
            recorder.begin()
            stats = counter.new()
            for _ in range(queries_each):
                stats.add("SELECT 1", 0.001)
            recorder.end(request(), 200, SECONDS, stats, stats)

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def route_of(registry):
    labels = [s.labels for m in registry.collect() for s in m.samples if s.name.endswith("duration_seconds_count")]
    return labels[0]["route"]


def check_exact(registry):
    total = THREADS * REQUESTS
    route = route_of(registry)
    labels = {"method": "GET", "route": route, "status_code": "200"}
    get = registry.get_sample_value
    assert get("http_server_request_duration_seconds_count", labels) == total
    assert get("http_server_request_duration_seconds_sum", labels) == total * SECONDS
    assert get("http_server_request_duration_seconds_bucket", {**labels, "le": "0.1"}) == 0
    assert get("http_server_request_duration_seconds_bucket", {**labels, "le": "0.25"}) == total
    assert get("http_server_request_db_queries_count", {"route": route}) == total
    assert get("http_server_request_db_queries_sum", {"route": route}) == total * 3
    assert get("http_server_active_requests") == 0


def test_single_process_counts_are_exact_under_threads():
    registry = CollectorRegistry()
    catalogue, recorder = build(registry)
    assert catalogue.active_requests._value._multiprocess is False and recorder._in_flight is not None
    hammer(recorder)
    check_exact(registry)


def test_single_process_in_flight_gauge_follows_begin_and_end():
    registry = CollectorRegistry()
    _, recorder = build(registry)
    for _ in range(3):
        recorder.begin()
    assert registry.get_sample_value("http_server_active_requests") == 3
    recorder.end(request(), 200, 0.01, RequestState())
    assert registry.get_sample_value("http_server_active_requests") == 2


def test_excluded_apps_leave_the_gauge_balanced_and_observe_nothing():
    registry = CollectorRegistry()
    _, recorder = build(registry)
    recorder.begin()
    recorder.end(request("/healthz"), 200, 0.01, RequestState())
    assert registry.get_sample_value("http_server_active_requests") == 0
    assert not [s for m in registry.collect() for s in m.samples if s.name.endswith("duration_seconds_count")]


def test_authorized_requests_are_observed_twice():
    registry = CollectorRegistry()
    _, recorder = build(registry)
    state = RequestState()
    state.authorized = True
    recorder.begin()
    recorder.end(request(), 200, 0.01, state)
    recorder.begin()
    recorder.end(request(), 200, 0.01, RequestState())
    route = route_of(registry)
    labels = {"method": "GET", "route": route, "status_code": "200"}
    assert registry.get_sample_value("http_server_request_duration_seconds_count", labels) == 2
    assert registry.get_sample_value("authorized_invoke_duration_seconds_count", labels) == 1


class _Flags:
    sampled = True


class _SpanContext:
    is_valid = True
    trace_flags = _Flags()
    trace_id, span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7


def test_single_process_exemplar_on_the_observed_bucket():
    registry = CollectorRegistry()
    _, recorder = build(registry, exemplars=True)
    traced = request()
    setattr(traced, SPAN_CONTEXT_ATTR, _SpanContext())
    recorder.begin()
    recorder.end(traced, 200, 0.2, RequestState())
    buckets = [
        s for m in registry.collect() for s in m.samples if s.name == "http_server_request_duration_seconds_bucket"
    ]
    with_exemplar = [s for s in buckets if s.exemplar is not None]
    assert [s.labels["le"] for s in with_exemplar] == ["0.25"]
    assert with_exemplar[0].exemplar.labels == {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "00f067aa0ba902b7",
    }
    assert with_exemplar[0].exemplar.value == 0.2


def test_multiprocess_counts_are_exact_under_threads_and_reach_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.get_value_class())
    catalogue, recorder = build(registry=None)
    assert catalogue.active_requests._value._multiprocess is True and recorder._in_flight is None
    hammer(recorder)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    check_exact(registry)


def test_multiprocess_child_after_fork_writes_its_own_file(tmp_path, monkeypatch):
    # gunicorn --preload: the recorder is built in the master, the workers are forked from it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.get_value_class())
    _, recorder = build(registry=None)
    recorder.begin()
    recorder.end(request(), 200, SECONDS, RequestState())
    pid = os.fork()
    if pid == 0:  # the child: 5 requests, then leave without pytest's teardown
        try:
            for _ in range(5):
                recorder.begin()
                recorder.end(request(), 200, SECONDS, RequestState())
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    files = sorted(path.name for path in tmp_path.iterdir())
    assert f"histogram_{pid}.db" in files and f"histogram_{os.getpid()}.db" in files
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    labels = {"method": "GET", "route": route_of(registry), "status_code": "200"}
    assert registry.get_sample_value("http_server_request_duration_seconds_count", labels) == 6
    assert registry.get_sample_value("http_server_active_requests") == 0


@pytest.mark.parametrize("threshold", [10, 2])
def test_query_stats_defaults_are_per_object(threshold):
    counter = QueryCounter(enabled=True, threshold=threshold)
    first, second = counter.new(), counter.new()
    for _ in range(threshold + 2):
        first.add("SELECT %s", 0.5)
    first.add("SELECT 2", 0.25)
    assert (first.count, first.seconds, first.threshold) == (threshold + 3, 0.5 * (threshold + 2) + 0.25, threshold)
    assert first.repeated == {"SELECT %s": threshold + 2}
    assert first.worst_repeat() == ("SELECT %s", threshold + 2)
    assert first.shapes == {"SELECT %s": threshold + 2, "SELECT 2": 1}
    # The class attributes are the defaults: nothing one object recorded is seen by another.
    assert (second.count, second.seconds, second.shapes, dict(second.repeated)) == (0, 0.0, None, {})
    assert second.worst_repeat() is None and second.threshold == threshold and not second.authorized


def in_flight() -> float:
    from django_observe import runtime

    return runtime.get_runtime().metrics.registry.get_sample_value("http_server_active_requests")


@pytest.mark.parametrize("raised", [KeyboardInterrupt, asyncio.CancelledError])
def test_a_request_without_a_response_leaves_the_in_flight_gauge(raised):
    from django_observe.middleware import ObserveMiddleware

    def fail(request):
        raise raised()

    async def fail_async(request):
        raise raised()

    before = in_flight()
    with pytest.raises(raised):
        ObserveMiddleware(fail)(request())
    assert in_flight() == before
    with pytest.raises(raised):
        asyncio.run(ObserveMiddleware(fail_async)(request()))
    assert in_flight() == before
    assert ObserveMiddleware(lambda r: HttpResponse())(request()).status_code == 200
    assert in_flight() == before


def test_routes_folded_into_other_are_counted_as_overflow_on_every_request():
    registry = CollectorRegistry()
    catalogue = build_catalogue(max_label_values=1, registry=registry)
    recorder = RequestRecorder(catalogue, frozenset({"django_observe"}))
    for path in ("/api/ping", "/api/chat", "/api/chat", "/api/chat"):
        recorder.begin()
        recorder.end(request(path), 200, SECONDS, RequestState())
    get = registry.get_sample_value
    assert (
        get("http_server_request_duration_seconds_count", {"method": "GET", "route": "api/ping", "status_code": "200"})
        == 1
    )
    assert (
        get("http_server_request_duration_seconds_count", {"method": "GET", "route": "__other__", "status_code": "200"})
        == 3
    )
    # The folded route is resolved again each time, so the overflow counter sees each of its requests.
    labels = {"metric": "http_server_request_duration_seconds", "label": "route"}
    assert get("metrics_label_overflow_total", labels) == 3
    assert get("http_server_active_requests") == 0
