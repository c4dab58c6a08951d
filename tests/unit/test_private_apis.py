"""The private attributes of other libraries django_observe still relies on: each test fails loudly when the
library changes what the code assumes."""

import pytest
from django.http import HttpResponse


@pytest.mark.django_db  # close() sends request_finished, which closes old database connections
def test_django_response_closers_run_on_close():
    # middleware.py resets the correlation ID from HttpResponse._resource_closers: the only per-response
    # hook that close() runs after the server is done with the response.
    response = HttpResponse("x")
    assert isinstance(response._resource_closers, list)
    calls = []
    response._resource_closers.append(lambda: calls.append("closed"))
    response.close()
    assert calls == ["closed"]


def test_django_lazy_user_sentinel():
    # requestinfo.user_id() tells a user nobody loaded from a loaded one by SimpleLazyObject._wrapped.
    from django.utils.functional import SimpleLazyObject, empty

    lazy = SimpleLazyObject(lambda: object())
    assert lazy._wrapped is empty
    str(lazy)
    assert lazy._wrapped is not empty


def test_sdk_exporters_of_a_provider_we_did_not_build_can_be_wrapped_in_redaction():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from django_observe.tracing.setup import redact_exporters

    provider = TracerProvider()
    batch, simple = InMemorySpanExporter(), InMemorySpanExporter()
    provider.add_span_processor(BatchSpanProcessor(batch))
    provider.add_span_processor(SimpleSpanProcessor(simple))
    assert redact_exporters(provider, ()) == 2
    assert redact_exporters(provider, ()) == 2  # not wrapped twice
    with provider.get_tracer("t").start_as_current_span("s") as span:
        span.set_attribute("api_key", "SECRETVALUE")
    provider.force_flush()
    for exporter in (batch, simple):
        (finished,) = exporter.get_finished_spans()
        assert finished.attributes["api_key"] == "[REDACTED]"
    provider.shutdown()


def test_contrib_django_middleware_keeps_what_instrument_was_given():
    from opentelemetry.instrumentation.django.middleware.otel_middleware import _DjangoMiddleware

    for name in ("_tracer", "_otel_request_hook", "_otel_response_hook", "_excluded_urls"):
        assert hasattr(_DjangoMiddleware, name), name


def test_structlog_context_variables_live_in_one_dict():
    # logging/setup.py skips merge_contextvars while structlog.contextvars._CONTEXT_VARS is empty: structlog
    # must create each bound variable in that very dict.
    import structlog

    from django_observe.logging import setup

    assert setup.STRUCTLOG_CONTEXT_VARS is structlog.contextvars._CONTEXT_VARS
    structlog.contextvars.bind_contextvars(private_api_probe="x")
    try:
        assert "structlog_private_api_probe" in setup.STRUCTLOG_CONTEXT_VARS
        assert setup.merge_contextvars(None, "info", {})["private_api_probe"] == "x"
    finally:
        structlog.contextvars.unbind_contextvars("private_api_probe")


def test_django_response_headers_store():
    # middleware.py writes X-Correlation-ID and Access-Control-Expose-Headers into ResponseHeaders._store:
    # lower-case name -> (name, value), which is what the response serialises.
    response = HttpResponse("x")
    response.headers._store["x-correlation-id"] = ("X-Correlation-ID", "req_1")
    assert response["x-correlation-id"] == "req_1"
    assert ("X-Correlation-ID", "req_1") in response.items()
    assert b"X-Correlation-ID: req_1" in response.serialize_headers()


@pytest.mark.parametrize("multiprocess", [False, True])
def test_prometheus_histogram_and_gauge_values(tmp_path, monkeypatch, multiprocess):
    # metrics/http.py observes request histograms through histogram_parts() (_sum, _buckets, _upper_bounds)
    # and moves the in-flight gauge through its _value: the same samples as observe() and inc()/dec().
    from bisect import bisect_left

    from prometheus_client import CollectorRegistry, Gauge, Histogram, values

    from django_observe.metrics.http import histogram_parts

    if multiprocess:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        monkeypatch.setattr(values, "ValueClass", values.get_value_class())

    def samples(metric):
        collected = metric.collect()[0].samples
        return sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in collected if "created" not in s.name)

    observed = [0, 0.004, 0.005, 0.0051, 0.25, 2.5, 10, 11, 1e9]
    public, direct = CollectorRegistry(), CollectorRegistry()
    ours = Histogram("h", "h", ["route"], registry=public).labels("r")
    theirs = Histogram("h", "h", ["route"], registry=direct).labels("r")
    total, buckets, bounds = histogram_parts(theirs)
    for value in observed:
        ours.observe(value)
        total.inc(value)
        buckets[bisect_left(bounds, value)].inc(1)
    assert samples(ours) == samples(theirs)
    # Single process: RequestRecorder adds to the values' _value under its own lock (MutexValue._value is the
    # float every sample reads); multiprocess: _multiprocess tells it to keep inc(), which writes the file.
    assert total._multiprocess is multiprocess and all(b._multiprocess is multiprocess for b in buckets)
    if not multiprocess:
        added = Histogram("h", "h", ["route"], registry=CollectorRegistry()).labels("r")
        added_total, added_buckets, added_bounds = histogram_parts(added)
        for value in observed:
            added_total._value += value
            added_buckets[bisect_left(added_bounds, value)]._value += 1
        assert samples(added) == samples(ours)
        in_flight = [None, None]
        live = Gauge("live", "live", registry=CollectorRegistry())
        live.set_function(in_flight.__len__)
        in_flight.pop()
        assert samples(live) == [("live", (), 1.0)]
    else:
        # FileSlots: a value written through its slot reads as inc() writes it, whatever the file's size. Long
        # label values make the file grow past its first mapping (1 MiB) on the way, and values found before
        # the growth keep being written through their older mapping.
        from prometheus_client.multiprocess import MultiProcessCollector

        from django_observe.metrics.http import FileSlots

        def aggregate():
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=str(tmp_path))
            return sorted(
                (s.name, tuple(sorted(s.labels.items())), s.value) for m in registry.collect() for s in m.samples
            )

        slots = FileSlots()
        counted, written = Gauge("inc", "i", ["k"], registry=None), Gauge("thru", "t", ["k"], registry=None)
        early = written.labels("early")._value
        early_slot = slots.find(early)
        for n in range(1200):
            label = f"{n:04d}" + "x" * 1000
            counted.labels(label)._value.inc(n + 0.5)
            value = written.labels(label)._value
            view, index = slots.find(value)
            value._value += n + 0.5
            view[index] = value._value
        counted.labels("early")._value.inc(2.5)
        early._value += 2.5
        early_slot[0][early_slot[1]] = early._value
        grown = counted.labels("0000" + "x" * 1000)._value._file
        assert grown._capacity > 1024 * 1024
        assert len(slots.find(value)[0]) * 8 > 1024 * 1024 and early_slot[0].nbytes == 1 << 16
        pairs = aggregate()
        thru = [(v, labels) for name, labels, v in pairs if name == "thru"]
        assert len(thru) == 1201 and (2.5, "early") in [(v, dict(labels)["k"]) for v, labels in thru]
        assert [(v, labels) for name, labels, v in pairs if name == "inc"] == thru
    gauge = Gauge("g", "g", registry=CollectorRegistry(), multiprocess_mode="livesum")
    gauge._value.inc(1)
    gauge._value.inc(1)
    gauge._value.inc(-1)
    assert gauge._value.get() == 1
