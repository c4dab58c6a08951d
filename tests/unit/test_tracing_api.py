from django_observe import tracing


def test_get_tracer_is_a_no_op_when_tracing_is_off():
    assert not tracing.is_enabled()
    tracer = tracing.get_tracer(__name__)
    with tracer.start_as_current_span("my_custom_operation") as span:
        span.set_attribute("custom.key", "value")
        assert not span.is_recording()
        assert not span.get_span_context().is_valid


def test_shim_without_the_opentelemetry_api():
    tracer = tracing._NoOpTracer()
    with tracer.start_as_current_span("x") as span:
        span.set_attribute("a", 1)
        span.add_event("e")
        assert span.is_recording() is False
