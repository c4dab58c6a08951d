"""The seed's chat trace tree, over real OTLP: gunicorn with tracing on, an agent over the real openai SDK
against a local OpenAI-compatible server (the GenAI instrumentation making the model calls' spans), and the
token counts and cost on the metrics port."""

import json

import pytest
import requests

from tests import promql, support, support_llm, support_metrics, support_otlp

pytestmark = pytest.mark.integration

SERVER, INTERNAL, CLIENT = 2, 1, 3  # OTLP SpanKind values
SEED_CHILDREN = [
    "auth.validate_token",
    "db.get_agent",
    "db.get_session",
    "knowledge.search",
    "llm.chat_completion",
    "db.save_message",
    "billing.record_usage",
]


def test_the_chat_request_makes_the_seed_trace_and_counts_its_tokens(tmp_path):
    support.require_module("openai")
    metrics_port = support.free_port()
    with support_otlp.HttpReceiver() as receiver, support_llm.FakeOpenAI(reply="Try the blue plan.") as llm:
        env = support.sqlite_env(
            tmp_path,
            LOG_FORMAT="json",
            **support.tracing_to(receiver.endpoint),
            OPENAI_BASE_URL=llm.base_url,
            METRICS_PORT=str(metrics_port),
        )
        token = support.manage("demo_token", env=env).stdout.strip().splitlines()[-1]
        with support.gunicorn(env, tmp_path / "web.log", workers=2) as web:
            headers = {"Authorization": f"Bearer {token}"}
            for i, secret in enumerate(("my card is 4111-1111", "call me at 555-0100")):
                response = requests.post(
                    web.url + "/api/chat",
                    data=json.dumps({"message": f"Which plan suits me? {secret}"}),
                    headers={**headers, "X-Correlation-ID": f"req_llm{i}"},
                    timeout=15,
                )
                assert response.status_code == 200, web.output()[-3000:]
                assert response.json()["reply"] == "Try the blue plan."
                assert response.json()["usage"] == {  # two model calls: the tool call, then the answer
                    "input_tokens": 2 * support_llm.PROMPT_TOKENS,
                    "output_tokens": 2 * support_llm.COMPLETION_TOKENS,
                }

            def trace_of(correlation_id):
                spans = list(receiver.spans)
                server = [s for s in spans if s.kind == SERVER and s.attributes.get("correlation_id") == correlation_id]
                if not server:
                    return None
                trace = [s for s in spans if s.trace_id == server[0].trace_id]
                names = {s.name for s in trace}
                wanted = set(SEED_CHILDREN) | {"chat gpt-4o-mini", "execute_tool lookup_plan", "invoke_agent assistant"}
                return (server[0], trace) if wanted | {"pgvector.similarity_search"} <= names else None

            server, trace = support.wait_until(lambda: trace_of("req_llm0"), message="the chat trace")
            support.wait_until(lambda: trace_of("req_llm1"), message="the second chat trace")

            samples = support.wait_until(
                lambda: (
                    (s := support_metrics.scrape(metrics_port))
                    and support_metrics.value(s, "gen_ai_client_token_usage_count") >= 4 * 4
                    and s
                ),
                message="token metrics",
            )

    assert server.name == "POST api/chat" and server.parent_span_id == ""
    children = sorted(
        (s for s in trace if s.parent_span_id == server.span_id), key=lambda s: SEED_CHILDREN.index(s.name)
    )
    assert [s.name for s in children] == SEED_CHILDREN
    assert all(s.kind == INTERNAL for s in children), [(s.name, s.kind) for s in children]

    def kids(span):
        return sorted((s for s in trace if s.parent_span_id == span.span_id), key=lambda s: s.start_time_unix_nano)

    def named(name):
        return next(s for s in trace if s.name == name)

    # knowledge.search
    #   pgvector.similarity_search          retrieval from the "pgvector" data source, 0 or more documents
    # llm.chat_completion
    #   invoke_agent assistant              the agent run: its id, 3 steps, the tools it used
    #     chat gpt-4o-mini                  step 1: the model asks for the tool
    #     execute_tool lookup_plan          step 2
    #     chat gpt-4o-mini                  step 3: the answer
    [search] = kids(named("knowledge.search"))
    assert search.name == "pgvector.similarity_search"
    assert search.attributes["gen_ai.operation.name"] == "retrieval"
    assert search.attributes["gen_ai.data_source.id"] == "pgvector"
    assert isinstance(search.attributes["django_observe.retrieval.documents"], int)
    [agent] = kids(named("llm.chat_completion"))
    assert agent.name == "invoke_agent assistant" and agent.kind == INTERNAL
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "assistant" and agent.attributes["gen_ai.agent.id"]
    assert agent.attributes["django_observe.agent.steps"] == 3
    assert list(agent.attributes["django_observe.agent.tools"]) == ["lookup_plan"]
    steps = kids(agent)
    assert [s.name for s in steps] == ["chat gpt-4o-mini", "execute_tool lookup_plan", "chat gpt-4o-mini"]
    tool = steps[1]
    assert tool.attributes["gen_ai.tool.name"] == "lookup_plan" and tool.attributes["gen_ai.tool.call.id"]
    assert tool.attributes["django_observe.agent.step"] == 2

    for llm_span in (steps[0], steps[2]):
        assert llm_span.kind == CLIENT
        assert llm_span.instrumentation_scope == "opentelemetry.instrumentation.genai.openai", "not ours: no duplicate"
        attributes = llm_span.attributes
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "openai"
        assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
        assert attributes["gen_ai.usage.input_tokens"] == support_llm.PROMPT_TOKENS
        assert attributes["gen_ai.usage.output_tokens"] == support_llm.COMPLETION_TOKENS
        assert attributes["gen_ai.usage.cache_read.input_tokens"] == support_llm.CACHED_TOKENS
        assert attributes["gen_ai.usage.reasoning.output_tokens"] == support_llm.REASONING_TOKENS
        assert attributes["django_observe.llm.cost"] == pytest.approx(support_llm.OPENAI_COST)
        assert attributes["django_observe.llm.currency"] == "USD"
    assert list(steps[0].attributes["gen_ai.response.finish_reasons"]) == ["tool_calls"]  # an array attribute
    assert list(steps[2].attributes["gen_ai.response.finish_reasons"]) == ["stop"]

    # No prompt or completion content anywhere in the exported spans.
    exported = json.dumps([[s.name, s.attributes] for s in receiver.spans], default=str)
    for content in ("4111-1111", "555-0100", "Which plan", "Try the blue plan", token):
        assert content not in exported, content
    prompts = [[m for m in r["messages"] if m["role"] == "user"][-1]["content"] for r in llm.requests]
    assert len(prompts) == 4 and all(p.startswith("Which plan") for p in prompts)

    labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_response_model": "gpt-4o-mini-2024-07-18",
    }
    tokens = "gen_ai_client_token_usage"
    # 2 requests x 2 model calls, summed over gunicorn's 2 workers
    assert support_metrics.value(samples, f"{tokens}_sum", **labels, gen_ai_token_type="input") == 4 * 57
    assert support_metrics.value(samples, f"{tokens}_sum", **labels, gen_ai_token_type="output") == 4 * 116
    assert support_metrics.value(samples, f"{tokens}_sum", **labels, gen_ai_token_type="cache_read") == 4 * 32
    assert support_metrics.value(samples, f"{tokens}_sum", **labels, gen_ai_token_type="reasoning") == 4 * 20
    assert support_metrics.value(samples, f"{tokens}_count", **labels, gen_ai_token_type="input") == 4
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert support_metrics.value(samples, duration, **labels, error_type="") == 4
    cost = "gen_ai_client_cost_total"
    by_type = {"gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o-mini", "currency": "USD"}
    spent = sum(
        support_metrics.value(samples, cost, **by_type, gen_ai_token_type=t) or 0
        for t in ("input", "cache_read", "output")
    )
    assert spent == pytest.approx(4 * support_llm.OPENAI_COST)
    # Every GenAI name the shipped dashboards query is exposed after real calls (the Prometheus test makes none).
    queried = promql.used_names() & promql.GENAI_NAMES
    assert queried and queried <= support_metrics.names(samples), queried - support_metrics.names(samples)
