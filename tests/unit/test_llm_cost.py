"""LLM usage by token type, the price table, and the openai/anthropic SDK hooks (real SDKs, local fake server)."""

import asyncio
import json
import logging

import pytest
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import REGISTRY

from django_observe.conf import load_config
from django_observe.integrations.genai import llm_call
from django_observe.llm.pricing import DEFAULT_PRICES, Price, PriceTable, call_cost, parse_prices
from django_observe.llm.usage import Usage, take_request_totals, usage_from
from tests import support, support_llm


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def tokens(provider, model, response_model, token_type):
    labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": provider,
        "gen_ai_request_model": model,
        "gen_ai_response_model": response_model,
        "gen_ai_token_type": token_type,
    }
    return sample("gen_ai_client_token_usage_sum", **labels)


def cost(provider, model, cost_type, currency="USD"):
    labels = {"gen_ai_provider_name": provider, "gen_ai_request_model": model}
    return sample("gen_ai_client_cost_total", **labels, gen_ai_token_type=cost_type, currency=currency)


def snapshot(provider, model, response_model):
    types = ("input", "output", "cache_read", "cache_write", "reasoning")
    return {
        "tokens": {t: tokens(provider, model, response_model, t) for t in types},
        "cost": sum(cost(provider, model, t) for t in types),
    }


def delta(before, after):
    return {
        "tokens": {t: after["tokens"][t] - before["tokens"][t] for t in before["tokens"]},
        "cost": after["cost"] - before["cost"],
    }


# --- pure pieces


def test_anthropic_input_is_made_to_include_the_cached_tokens():
    usage = usage_from({"input_tokens": 40, "cache_read_input_tokens": 200, "cache_creation_input_tokens": 50})
    assert usage == Usage(input=290, cache_read=200, cache_write=50)


def test_openai_cached_and_reasoning_tokens_are_breakdowns():
    raw = support_llm.FakeLLM.openai_usage()
    assert usage_from(raw) == Usage(input=57, output=116, cache_read=32, reasoning=20)
    responses_api = {
        "input_tokens": 57,
        "output_tokens": 116,
        "input_tokens_details": {"cached_tokens": 32},
        "output_tokens_details": {"reasoning_tokens": 20},
    }
    assert usage_from(responses_api) == Usage(input=57, output=116, cache_read=32, reasoning=20)


def test_the_cost_types_add_up_and_nothing_is_counted_twice():
    price = Price(input=3.0, output=15.0, cache_read=0.3, cache_write=3.75)
    by_type = call_cost(Usage(input=290, output=90, cache_read=200, cache_write=50), price)
    assert by_type == pytest.approx(
        {"input": 40 * 3e-6, "cache_read": 200 * 0.3e-6, "cache_write": 50 * 3.75e-6, "output": 90 * 15e-6}
    )
    assert sum(by_type.values()) == pytest.approx(support_llm.ANTHROPIC_COST)
    # reasoning is priced apart only when the table says so; else it is output
    assert call_cost(Usage(output=100, reasoning=40), Price(input=1, output=2)) == {"output": 200e-6}
    split = call_cost(Usage(output=100, reasoning=40), Price(input=1, output=2, reasoning=5))
    assert split == pytest.approx({"output": 120e-6, "reasoning": 200e-6})


def test_an_unknown_model_is_unpriced_and_a_dated_snapshot_matches_its_model():
    table = PriceTable.build("USD", {}, defaults=True)
    assert table.price("gpt-4o-mini-2024-07-18") is DEFAULT_PRICES["gpt-4o-mini"]
    assert table.price("claude-sonnet-4-5-20250929") is DEFAULT_PRICES["claude-sonnet-4-5"]
    assert table.price("gpt-4o-mini-extra") is None  # never guessed from the gpt-4o-mini (or gpt-4o) price
    assert table.price("my-local-llama") is None
    assert call_cost(Usage(input=5), None) is None
    assert all(p.taken for p in DEFAULT_PRICES.values()), "every shipped price carries the date it was taken"


def test_the_project_extends_and_overrides_and_other_currencies_drop_the_usd_defaults():
    mine = parse_prices({"my-llama": {"input": 0.1, "output": 0.2}, "gpt-4o-mini": {"input": 1, "output": 2}})
    table = PriceTable.build("USD", mine, defaults=True)
    assert table.price("my-llama") == Price(input=0.1, output=0.2)
    assert table.price("gpt-4o-mini").input == 1.0
    assert table.price("gpt-4o") is DEFAULT_PRICES["gpt-4o"]
    euros = PriceTable.build("EUR", mine, defaults=True)
    assert euros.price("gpt-4o") is None and euros.currency == "EUR"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"LLM_CURRENCY": "dollars"}, 'LLM_CURRENCY"] must be an ISO 4217 currency code'),
        ({"LLM_PRICES": {"m": {"input": 1}}}, 'needs "output"'),
        ({"LLM_PRICES": {"m": {"input": 1, "output": -2}}}, "must be a non-negative number"),
        ({"LLM_PRICES": {"m": {"input": 1, "output": 2, "cached": 1}}}, "accepted: input, output, cache_read"),
        ({"LLM_DAILY_BUDGET": "lots"}, "LLM_DAILY_BUDGET"),
    ],
)
def test_bad_llm_settings_name_the_setting(options, message):
    with pytest.raises(ImproperlyConfigured) as excinfo:
        load_config(type("S", (), {"DJANGO_OBSERVE": options})(), environ={})
    assert message in str(excinfo.value)


# --- the SDK hooks


@pytest.fixture
def server():
    with support_llm.FakeLLM() as fake:
        yield fake


def test_openai_sdk_calls_are_measured_without_llm_call(server):
    openai = support.require_module("openai")
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-not-secret", max_retries=0)
    before = snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    take_request_totals()
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    got = delta(before, snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"))
    assert got["tokens"] == {"input": 57, "output": 116, "cache_read": 32, "cache_write": 0, "reasoning": 20}
    assert got["cost"] == pytest.approx(support_llm.OPENAI_COST)
    totals = take_request_totals()
    assert totals.fields() == {
        "llm_calls": 1,
        "tokens_used": 173,
        "llm_cost": round(support_llm.OPENAI_COST, 8),
        "llm_currency": "USD",
    }


def test_an_openai_stream_reports_its_first_chunk_and_the_usage_at_its_end(server):
    openai = support.require_module("openai")
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-not-secret", max_retries=0)
    labels = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "openai",
        "gen_ai_request_model": "gpt-4o-mini",
        "gen_ai_response_model": "gpt-4o-mini-2024-07-18",
    }
    ttfc = "gen_ai_client_operation_time_to_first_chunk_seconds_count"
    first = sample(ttfc, **labels)
    before = snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18") == before, "nothing before the end"
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip() == "Here is what I found."
    got = delta(before, snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"))
    assert got["tokens"]["input"] == 57 and got["tokens"]["output"] == 116 and got["tokens"]["cache_read"] == 32
    assert got["cost"] == pytest.approx(support_llm.OPENAI_COST)
    assert sample(ttfc, **labels) - first == 1


def test_async_openai_calls_are_measured(server):
    openai = support.require_module("openai")

    async def run():
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test-not-secret", max_retries=0)
        await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "a"}])
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "b"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for _ in stream:
            pass

    before = snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    asyncio.run(run())
    got = delta(before, snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"))
    assert got["tokens"]["input"] == 2 * 57 and got["tokens"]["reasoning"] == 2 * 20
    assert got["cost"] == pytest.approx(2 * support_llm.OPENAI_COST)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_calls_are_measured_with_cache_reads_and_writes(server, stream):
    anthropic = support.require_module("anthropic")
    client = anthropic.Anthropic(base_url=server.anthropic_url, api_key="sk-ant-test-not-secret", max_retries=0)
    model, response_model = "claude-sonnet-4-5", support_llm.ANTHROPIC_MODEL
    before = snapshot("anthropic", model, response_model)
    result = client.messages.create(
        model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}], stream=stream
    )
    if stream:
        assert [e.type for e in result][-1] == "message_stop"
    got = delta(before, snapshot("anthropic", model, response_model))
    assert got["tokens"] == {"input": 290, "output": 90, "cache_read": 200, "cache_write": 50, "reasoning": 0}
    assert got["cost"] == pytest.approx(support_llm.ANTHROPIC_COST)


def test_inside_llm_call_the_sdk_call_fills_the_block_and_is_counted_once(server):
    openai = support.require_module("openai")
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-not-secret", max_retries=0)
    before = snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    with llm_call(model="gpt-4o-mini", provider="openai") as call:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert call.input_tokens == 57 and call.cache_read_tokens == 32 and call.reasoning_tokens == 20
    assert call.cost == pytest.approx(support_llm.OPENAI_COST)
    got = delta(before, snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"))
    assert got["tokens"]["input"] == 57 and got["cost"] == pytest.approx(support_llm.OPENAI_COST)


def test_an_unpriced_model_is_counted_apart(server):
    openai = support.require_module("openai")
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-not-secret", max_retries=0)
    labels = {"gen_ai_provider_name": "openai", "gen_ai_request_model": "house-model"}
    before = sample("gen_ai_client_unpriced_calls_total", **labels)
    take_request_totals()
    client.chat.completions.create(model="house-model", messages=[{"role": "user", "content": "hi"}])
    assert sample("gen_ai_client_unpriced_calls_total", **labels) - before == 1
    assert cost("openai", "house-model", "input") == 0
    assert take_request_totals().fields() == {"llm_calls": 1, "tokens_used": 173, "llm_unpriced": 1}


@pytest.mark.django_db
def test_the_chat_agent_request_log_line_carries_its_calls_cost(server, client, caplog, monkeypatch):
    """The test project's chat view: an agent making two model calls (tool call, then answer) and one tool call."""
    support.require_module("openai")
    from django.contrib.auth import get_user_model

    from testproject.demo.models import ApiToken

    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    token = ApiToken.objects.create(user=get_user_model().objects.create(username="llm-cost"))
    tool_labels = {"gen_ai_tool_name": "lookup_plan", "error_type": ""}
    tools_before = sample("gen_ai_execute_tool_duration_seconds_count", **tool_labels)
    agents_before = sample("gen_ai_invoke_agent_duration_seconds_count", gen_ai_agent_name="assistant", error_type="")
    retrievals_before = sample(
        "gen_ai_retrieval_duration_seconds_count", gen_ai_data_source_id="pgvector", error_type=""
    )
    take_request_totals()
    with caplog.at_level(logging.INFO, logger="django_observe.request"):
        response = client.post(
            "/api/chat",
            data=json.dumps({"message": "Which plan suits me?"}),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token.key}"},
        )
    assert response.status_code == 200, response.content
    assert response.json()["usage"] == {"input_tokens": 2 * 57, "output_tokens": 2 * 116}
    lines = [r for r in caplog.records if r.name == "django_observe.request" and "/api/chat" in r.getMessage()]
    fields = {k: getattr(lines[-1], k, None) for k in ("llm_calls", "tokens_used", "llm_cost", "llm_currency")}
    assert fields == {
        "llm_calls": 2,
        "tokens_used": 2 * 173,
        "llm_cost": round(2 * support_llm.OPENAI_COST, 8),
        "llm_currency": "USD",
    }
    assert sample("gen_ai_execute_tool_duration_seconds_count", **tool_labels) - tools_before == 1
    agents = sample("gen_ai_invoke_agent_duration_seconds_count", gen_ai_agent_name="assistant", error_type="")
    assert agents - agents_before == 1
    retrievals = sample("gen_ai_retrieval_duration_seconds_count", gen_ai_data_source_id="pgvector", error_type="")
    assert retrievals - retrievals_before == 1


def test_a_stream_read_after_its_llm_call_block_is_counted_once_when_it_ends(server):
    openai = support.require_module("openai")
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-test-not-secret", max_retries=0)
    before = snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    with llm_call(model="gpt-4o-mini", provider="openai") as call:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    assert snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18") == before, "not before the stream ends"
    for _ in stream:
        pass
    got = delta(before, snapshot("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"))
    assert got["tokens"]["input"] == 57 and got["cost"] == pytest.approx(support_llm.OPENAI_COST)
    assert call.time_to_first_chunk is not None and call.cost == pytest.approx(support_llm.OPENAI_COST)
