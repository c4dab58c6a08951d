"""invoke_agent, execute_tool and retrieval: spans, steps, content capture off by default, duration metrics."""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from django_observe import execute_tool, invoke_agent, retrieval


@pytest.fixture
def spans(monkeypatch):
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    monkeypatch.setattr("django_observe.tracing.agents.is_enabled", lambda: True)
    yield memory
    provider.shutdown()


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_an_agent_run_with_a_retrieval_and_tool_calls(spans):
    tools_before = sample("gen_ai_execute_tool_duration_seconds_count", gen_ai_tool_name="search", error_type="")
    with invoke_agent("planner", agent_id="agent_789") as run:
        with retrieval("pgvector", name="pgvector.similarity_search", top_k=3) as found:
            found.record(documents=2, query="secret plan for acme")
        assert run.step() == 1
        with execute_tool("search", call_id="call_1") as tool:
            tool.record(arguments={"q": "secret plan"}, result="found it")
        with execute_tool("search", call_id="call_2"):
            pass
        assert run.step() == 4
    by_name = {}
    for span in spans.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    [agent] = by_name["invoke_agent planner"]
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.id"] == "agent_789"
    assert agent.attributes["django_observe.agent.steps"] == 4
    assert agent.attributes["django_observe.agent.tools"] == ("search",)
    tools = by_name["execute_tool search"]
    assert [t.attributes["django_observe.agent.step"] for t in tools] == [2, 3]
    assert all(t.parent.span_id == agent.context.span_id for t in tools)
    assert tools[0].attributes["gen_ai.tool.call.id"] == "call_1"
    assert tools[0].attributes["gen_ai.agent.name"] == "planner"
    [search] = by_name["pgvector.similarity_search"]
    assert search.attributes["gen_ai.data_source.id"] == "pgvector"
    assert search.attributes["django_observe.retrieval.documents"] == 2
    exported = str([dict(s.attributes) for s in spans.get_finished_spans()])
    assert "secret plan" not in exported and "found it" not in exported, "content off by default"
    after = sample("gen_ai_execute_tool_duration_seconds_count", gen_ai_tool_name="search", error_type="")
    assert after - tools_before == 2


def test_content_capture_is_opt_in_and_redacted(spans, observe):
    observe(OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="span_only")
    with execute_tool("lookup") as tool:
        tool.record(arguments={"plan": "blue", "api_key": "sk-live-123"}, result="Blue plan")
    [span] = spans.get_finished_spans()
    assert "blue" in span.attributes["gen_ai.tool.call.arguments"]
    assert "sk-live-123" not in span.attributes["gen_ai.tool.call.arguments"]
    assert span.attributes["gen_ai.tool.call.result"] == "Blue plan"


def test_a_failing_tool_reports_its_error_class_never_its_message(spans):
    before = sample("gen_ai_execute_tool_duration_seconds_count", gen_ai_tool_name="flaky", error_type="TimeoutError")
    with pytest.raises(TimeoutError), execute_tool("flaky"):
        raise TimeoutError("the prompt was: my card is 4111-1111")
    [span] = spans.get_finished_spans()
    assert span.attributes["error.type"] == "TimeoutError"
    assert span.status.status_code == trace.StatusCode.ERROR and "4111" not in (span.status.description or "")
    assert not span.events
    after = sample("gen_ai_execute_tool_duration_seconds_count", gen_ai_tool_name="flaky", error_type="TimeoutError")
    assert after - before == 1


def test_decorators_give_each_call_its_own_block(spans):
    @retrieval("docs")
    def search(query):
        return [query]

    search("a")
    search("b")
    assert [s.name for s in spans.get_finished_spans()] == ["retrieval docs", "retrieval docs"]
