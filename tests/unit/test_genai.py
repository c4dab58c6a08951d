"""llm_call: GenAI client spans, token metrics, content capture, no duplicate with the OpenAI instrumentation."""

import importlib
import json

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

import django_observe
from django_observe.integrations.genai import current_llm_call, llm_call
from tests import support, support_llm

CLIENT = trace.SpanKind.CLIENT


@pytest.fixture
def spans(monkeypatch):
    """An SDK provider as the global one for this test only (the session keeps tracing off)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    yield memory
    provider.shutdown()


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def token_labels(model, token_type, provider="anthropic", response_model=""):
    return {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": provider,
        "gen_ai_request_model": model,
        "gen_ai_response_model": response_model,
        "gen_ai_token_type": token_type,
    }


def test_a_client_span_with_the_genai_attributes(spans):
    with (
        trace.get_tracer("test").start_as_current_span("llm.chat_completion") as parent,
        django_observe.llm_call(model="claude-sonnet-4", provider="anthropic") as call,
    ):
        call.record(response_model="claude-sonnet-4-20250514", input_tokens=12, output_tokens=30)
        call.record(finish_reasons=["end_turn"], response_id="msg_1")
    span = next(s for s in spans.get_finished_spans() if s.name == "chat claude-sonnet-4")
    assert span.kind == CLIENT and span.parent.span_id == parent.get_span_context().span_id
    assert dict(span.attributes) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.system": "anthropic",
        "gen_ai.request.model": "claude-sonnet-4",
        "gen_ai.response.model": "claude-sonnet-4-20250514",
        "gen_ai.response.id": "msg_1",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.usage.output_tokens": 30,
        "gen_ai.response.finish_reasons": ("end_turn",),
        # 12 x 3.00 + 30 x 15.00 USD per million tokens (the shipped claude-sonnet-4 price)
        "django_observe.llm.cost": 0.000486,
        "django_observe.llm.currency": "USD",
    }
    assert span.status.status_code == trace.StatusCode.UNSET


def test_tokens_and_duration_are_metrics_even_with_tracing_off():
    assert not django_observe.tracing.is_enabled()
    labels = token_labels("m-off", "input", response_model="m-off-1")
    before = sample("gen_ai_client_token_usage_sum", **labels)
    with llm_call(model="m-off", provider="anthropic") as call:
        assert call.span is None
        call.record(response_model="m-off-1", input_tokens=40, output_tokens=2)
    assert sample("gen_ai_client_token_usage_sum", **labels) - before == 40
    assert sample("gen_ai_client_token_usage_count", **labels) >= 1
    output = token_labels("m-off", "output", response_model="m-off-1")
    assert sample("gen_ai_client_token_usage_bucket", **output, le="4.0") >= 1
    duration = {k: v for k, v in labels.items() if k != "gen_ai_token_type"}
    assert sample("gen_ai_client_operation_duration_seconds_count", **duration, error_type="") >= 1


def test_a_failed_call_has_an_error_type_and_no_exception_text(spans):
    before = sample(
        "gen_ai_client_operation_duration_seconds_count",
        gen_ai_operation_name="chat",
        gen_ai_provider_name="anthropic",
        gen_ai_request_model="m-fail",
        gen_ai_response_model="",
        error_type="TimeoutError",
    )
    with (
        trace.get_tracer("t").start_as_current_span("parent"),
        pytest.raises(TimeoutError),
        llm_call(model="m-fail", provider="anthropic"),
    ):
        raise TimeoutError("prompt: my password is hunter2")
    span = next(s for s in spans.get_finished_spans() if s.name == "chat m-fail")
    assert span.status.status_code == trace.StatusCode.ERROR and span.attributes["error.type"] == "TimeoutError"
    assert "hunter2" not in repr(span.events) + str(span.status.description)
    after = sample(
        "gen_ai_client_operation_duration_seconds_count",
        gen_ai_operation_name="chat",
        gen_ai_provider_name="anthropic",
        gen_ai_request_model="m-fail",
        gen_ai_response_model="",
        error_type="TimeoutError",
    )
    assert after - before == 1


def test_content_is_not_recorded_by_default(spans):
    with trace.get_tracer("t").start_as_current_span("parent"), llm_call(model="m", provider="x") as call:
        assert not call.captures_content
        call.record_messages(input=[{"role": "user", "content": "my card is 4111"}], output="ok")
    span = next(s for s in spans.get_finished_spans() if s.name == "chat m")
    assert "gen_ai.input.messages" not in span.attributes and "4111" not in json.dumps(dict(span.attributes))


def test_content_capture_is_opt_in_and_redacted(spans, observe):
    observe(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    messages = [{"role": "user", "content": "hello, my api_key=sk-live-123"}]
    with trace.get_tracer("t").start_as_current_span("parent"), llm_call(model="m", provider="x") as call:
        assert call.captures_content
        call.record_messages(input=messages, output=[{"role": "assistant", "content": "hi"}])
    span = next(s for s in spans.get_finished_spans() if s.name == "chat m")
    recorded = json.loads(span.attributes["gen_ai.input.messages"])
    assert recorded[0]["role"] == "user" and "hello" in recorded[0]["content"]
    assert "sk-live-123" not in span.attributes["gen_ai.input.messages"]
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [{"role": "assistant", "content": "hi"}]


def test_an_invalid_capture_setting_names_the_accepted_values():
    import types

    from django_observe import conf

    with pytest.raises(conf.InvalidConfiguration) as info:
        conf.load_config(
            types.SimpleNamespace(DEBUG=False), environ={"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "maybe"}
        )
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" in str(info.value)
    assert '"span_only"' in str(info.value)
    config = conf.load_config(
        types.SimpleNamespace(DEBUG=False), environ={"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "True"}
    )
    assert config.otel_instrumentation_genai_capture_message_content == "true"


def test_record_response_reads_openai_and_anthropic_shapes():
    with llm_call(model="gpt-4o-mini", provider="openai", span=False) as call:
        call.record_response(
            {
                "id": "c1",
                "model": "gpt-4o-mini-2024-07-18",
                "choices": [{"finish_reason": "stop"}, {"finish_reason": "length"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7},
            }
        )
    assert (call.input_tokens, call.output_tokens, call.finish_reasons) == (5, 7, ("stop", "length"))
    assert call.response_model == "gpt-4o-mini-2024-07-18"

    class Usage:
        input_tokens, output_tokens = 3, 4

    class Message:
        id, model, stop_reason, usage = "msg", "claude", "end_turn", Usage()

    with llm_call(model="claude", provider="anthropic") as call:
        call.record_response(Message())
        call.record(input_tokens=-1, output_tokens="9")  # ignored: not non-negative integers
    assert (call.input_tokens, call.output_tokens, call.finish_reasons) == (None, None, ("end_turn",))


def test_as_a_decorator_each_call_gets_its_own_block(spans):
    @llm_call(model="m-deco", provider="mistral_ai")
    def ask(tokens):
        current_llm_call().record(input_tokens=tokens)
        return tokens

    with trace.get_tracer("t").start_as_current_span("parent"):
        assert [ask(1), ask(2)] == [1, 2]
    assert current_llm_call() is None
    found = [s.attributes["gen_ai.usage.input_tokens"] for s in spans.get_finished_spans() if s.name == "chat m-deco"]
    assert found == [1, 2]


def test_no_second_span_inside_a_genai_span(spans):
    with (
        trace.get_tracer("t").start_as_current_span("parent"),
        llm_call(model="outer", provider="x") as outer,
        llm_call(model="inner", provider="x") as inner,
    ):
        inner.record(input_tokens=1)
    assert outer.span is not None and inner.span is None
    assert [s.name for s in spans.get_finished_spans()] == ["chat outer", "parent"]


def test_one_genai_span_when_the_openai_instrumentation_traces_the_call(spans):
    """The real openai SDK against the local fake server, with the GenAI instrumentation on and our cost hook."""
    openai = support.require_module("openai")
    from opentelemetry.instrumentation.genai.openai import OpenAIInstrumentor

    from django_observe.tracing.genai_cost import CostHook

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=trace.get_tracer_provider(), completion_hook=CostHook())
    labels = token_labels("gpt-4o-mini", "output", provider="openai", response_model="gpt-4o-mini-2024-07-18")
    before = sample("gen_ai_client_token_usage_sum", **labels)
    try:
        with support_llm.FakeOpenAI() as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-not-secret", max_retries=0)
            with (
                trace.get_tracer("t").start_as_current_span("llm.chat_completion"),
                llm_call(model="gpt-4o-mini", provider="openai") as call,
            ):
                response = client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "my secret plan"}]
                )
                call.record_response(response)
    finally:
        instrumentor.uninstrument()
    genai = [s for s in spans.get_finished_spans() if "gen_ai.operation.name" in (s.attributes or {})]
    assert [s.name for s in genai] == ["chat gpt-4o-mini"], "exactly one GenAI span"
    assert genai[0].instrumentation_scope.name != "django_observe.genai"
    assert genai[0].attributes["gen_ai.provider.name"] == "openai"
    assert genai[0].attributes["gen_ai.usage.input_tokens"] == support_llm.PROMPT_TOKENS
    assert "my secret plan" not in json.dumps(dict(genai[0].attributes))
    # the known workload priced at gpt-4o-mini's shipped prices, put on the instrumentation's span by CostHook
    assert genai[0].attributes["django_observe.llm.cost"] == pytest.approx(support_llm.OPENAI_COST)
    assert genai[0].attributes["django_observe.llm.currency"] == "USD"
    assert call.span is None and call.cost == pytest.approx(support_llm.OPENAI_COST)
    after = sample("gen_ai_client_token_usage_sum", **labels)
    assert after - before == support_llm.COMPLETION_TOKENS


def test_the_catalogue_honours_the_namespace():
    from prometheus_client import CollectorRegistry

    from django_observe.llm.usage import Usage
    from django_observe.metrics.catalogue import build_catalogue
    from django_observe.metrics.genai import CallFacts, record_llm_call

    registry = CollectorRegistry()
    catalogue = build_catalogue("acme", registry=registry)
    facts = CallFacts("chat", "openai", "gpt", "gpt-1", seconds=0.5, usage=Usage(input=10))
    record_llm_call(catalogue, facts, None, "USD")
    labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt",
        "gen_ai_response_model": "gpt-1",
    }
    tokens = "acme_gen_ai_client_token_usage"
    assert registry.get_sample_value(f"{tokens}_sum", {**labels, "gen_ai_token_type": "input"}) == 10
    assert registry.get_sample_value(f"{tokens}_count", {**labels, "gen_ai_token_type": "output"}) is None
    assert (
        registry.get_sample_value(
            "acme_gen_ai_client_operation_duration_seconds_bucket", {**labels, "error_type": "", "le": "0.64"}
        )
        == 1
    )


def test_model_labels_go_through_the_cardinality_guard():
    from prometheus_client import CollectorRegistry

    from django_observe.llm.usage import Usage
    from django_observe.metrics.catalogue import OTHER, build_catalogue
    from django_observe.metrics.genai import CallFacts, record_llm_call

    registry = CollectorRegistry()
    catalogue = build_catalogue(registry=registry, max_label_values=2)
    for i in range(4):
        facts = CallFacts("chat", "p", f"model-{i}", seconds=0.1, usage=Usage(input=1, output=1))
        record_llm_call(catalogue, facts, None, "USD")
    # Two series (model-0's input and output) fill the token metric's budget; the other calls are folded,
    # their token type kept.
    kept = {"gen_ai_operation_name": "chat", "gen_ai_provider_name": "p", "gen_ai_response_model": ""}
    assert registry.get_sample_value(
        "gen_ai_client_token_usage_count", {**kept, "gen_ai_request_model": "model-0", "gen_ai_token_type": "input"}
    )
    folded = {label: OTHER for label in [*kept, "gen_ai_request_model"]}
    assert registry.get_sample_value("gen_ai_client_token_usage_count", {**folded, "gen_ai_token_type": "input"}) == 3


def test_an_instrumentation_that_cannot_be_imported_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    from django_observe.tracing import setup

    (tmp_path / "fake_llm_sdk.py").write_text("")
    (tmp_path / "fake_llm_instrumentation.py").write_text("from opentelemetry.util.genai.missing import x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(setup, "_INSTRUMENTORS", (("fake_llm_sdk", "fake_llm_instrumentation", "Instrumentor"),))
    monkeypatch.setattr(setup, "_hooked", set())
    with caplog.at_level("WARNING", logger="django_observe.tracing"):
        setup.instrument_libraries()
        assert "fake_llm_instrumentation" not in caplog.text  # nothing until the project imports the library
        importlib.import_module("fake_llm_sdk")
    assert "fake_llm_instrumentation cannot be imported, fake_llm_sdk calls are not traced" in caplog.text


def test_the_genai_instrumentations_are_in_the_list():
    from django_observe.tracing import setup

    assert ("openai", "opentelemetry.instrumentation.genai.openai", "OpenAIInstrumentor") in setup._INSTRUMENTORS
    assert (
        "anthropic",
        "opentelemetry.instrumentation.genai.anthropic",
        "AnthropicInstrumentor",
    ) in setup._INSTRUMENTORS
