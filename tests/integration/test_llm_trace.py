"""The seed's chat trace tree, over real OTLP: gunicorn with tracing on, the real openai SDK against a local
OpenAI-compatible server, and the token counts on the metrics port."""

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
    pytest.importorskip("openai")
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
                assert response.json()["usage"] == {
                    "input_tokens": support_llm.PROMPT_TOKENS,
                    "output_tokens": support_llm.COMPLETION_TOKENS,
                }

            def trace_of(correlation_id):
                spans = list(receiver.spans)
                server = [s for s in spans if s.kind == SERVER and s.attributes.get("correlation_id") == correlation_id]
                if not server:
                    return None
                trace = [s for s in spans if s.trace_id == server[0].trace_id]
                names = {s.name for s in trace}
                return (server[0], trace) if set(SEED_CHILDREN) | {"chat gpt-4o-mini"} <= names else None

            server, trace = support.wait_until(lambda: trace_of("req_llm0"), message="the chat trace")
            support.wait_until(lambda: trace_of("req_llm1"), message="the second chat trace")

            samples = support.wait_until(
                lambda: (
                    (s := support_metrics.scrape(metrics_port))
                    and support_metrics.value(s, "gen_ai_client_token_usage_count") >= 4
                    and s
                ),
                message="token metrics",
            )

    by_id = {s.span_id: s for s in trace}
    assert server.name == "POST api/chat" and server.parent_span_id == ""
    children = sorted(
        (s for s in trace if s.parent_span_id == server.span_id), key=lambda s: SEED_CHILDREN.index(s.name)
    )
    assert [s.name for s in children] == SEED_CHILDREN
    assert all(s.kind == INTERNAL for s in children)

    genai = [s for s in trace if "gen_ai.operation.name" in s.attributes]
    assert len(genai) == 1, [s.name for s in genai]
    llm_span = genai[0]
    assert llm_span.name == "chat gpt-4o-mini" and llm_span.kind == CLIENT
    assert by_id[llm_span.parent_span_id].name == "llm.chat_completion"
    attributes = llm_span.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes.get("gen_ai.provider.name", attributes.get("gen_ai.system")) == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert attributes["gen_ai.usage.input_tokens"] == support_llm.PROMPT_TOKENS
    assert attributes["gen_ai.usage.output_tokens"] == support_llm.COMPLETION_TOKENS
    assert list(attributes["gen_ai.response.finish_reasons"]) == ["stop"]  # an array attribute

    # No prompt or completion content anywhere in the exported spans.
    exported = json.dumps([[s.name, s.attributes] for s in receiver.spans], default=str)
    for content in ("4111-1111", "555-0100", "Which plan", "Try the blue plan", token):
        assert content not in exported, content
    assert all(r["messages"][-1]["content"].startswith("Which plan") for r in llm.requests)

    labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_response_model": "gpt-4o-mini-2024-07-18",
    }
    tokens = "gen_ai_client_token_usage"
    assert support_metrics.value(samples, f"{tokens}_sum", **labels, gen_ai_token_type="input") == 2 * 57
    assert support_metrics.value(samples, f"{tokens}_sum", **labels, gen_ai_token_type="output") == 2 * 116
    assert support_metrics.value(samples, f"{tokens}_count", **labels, gen_ai_token_type="input") == 2
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert support_metrics.value(samples, duration, **labels, error_type="") == 2
    # Every GenAI name the shipped dashboards query is exposed after real calls (the Prometheus test makes none).
    queried = promql.used_names() & promql.GENAI_NAMES
    assert queried and queried <= support_metrics.names(samples), queried - support_metrics.names(samples)
