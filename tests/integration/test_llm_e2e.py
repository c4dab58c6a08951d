"""Every LLM call measured, end to end: the real openai and anthropic SDKs called directly (no llm_call), streaming
and not, from gunicorn (2 workers) and a Celery prefork worker (2 children), against the local fake server. The
OTLP receiver gets the GenAI instrumentations' spans with our cost on them; token and cost sums are exact on the
metrics port (the web group) and over OTLP (both groups)."""

import pytest
import requests

from tests import support, support_llm, support_metrics, support_otlp

pytestmark = pytest.mark.integration

# (provider, stream) of each call: 8 from web requests, 4 from Celery tasks
WEB = [("openai", False), ("openai", True), ("anthropic", False), ("anthropic", True)] * 2
TASKS = [("openai", False), ("anthropic", True)] * 2
PER_CALL = {
    "openai": {
        "tokens": {"input": 57, "output": 116, "cache_read": 32, "reasoning": 20},
        "cost": support_llm.OPENAI_COST,
        "model": "gpt-4o-mini",
    },
    "anthropic": {
        "tokens": {"input": 290, "output": 90, "cache_read": 200, "cache_write": 50},
        "cost": support_llm.ANTHROPIC_COST,
        "model": "claude-sonnet-4-5",
    },
}
SCOPES = {
    "openai": "opentelemetry.instrumentation.genai.openai",
    "anthropic": "opentelemetry.instrumentation.genai.anthropic",
}


def calls(provider, workload):
    return sum(1 for p, _ in workload if p == provider)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    support.require_module("openai")
    support.require_module("anthropic")
    tmp = tmp_path_factory.mktemp("llm")
    metrics_port = support.free_port()
    with support_otlp.HttpReceiver() as receiver, support_llm.FakeLLM() as llm:
        env = support.sqlite_env(
            tmp,
            **support.tracing_to(receiver.endpoint),
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_METRIC_EXPORT_INTERVAL="500",
            OPENAI_BASE_URL=llm.base_url,
            ANTHROPIC_BASE_URL=llm.anthropic_url,
            METRICS_PORT=str(metrics_port),
            LOG_FORMAT="json",
        )
        with support.gunicorn(env, tmp / "web.log", workers=2) as web:
            support.wait_for_port("127.0.0.1", metrics_port, proc=web.proc)
            with support.running_worker(env, tmp / "worker.log") as worker, requests.Session() as http:
                for provider, stream in WEB:
                    params = {"provider": provider, "stream": "1" if stream else "0"}
                    response = http.get(f"{web.url}/api/llm/direct", params=params, timeout=15)
                    assert response.status_code == 200, web.output()[-3000:]
                    assert response.json()["reply"].strip() == "Here is what I found."
                for provider, stream in TASKS:
                    params = {"provider": provider, "stream": "1" if stream else "0", "task": "1"}
                    assert http.get(f"{web.url}/api/llm/direct", params=params, timeout=15).status_code == 202
                yield {"receiver": receiver, "metrics_port": metrics_port, "web": web, "worker": worker}


def otlp_sum(receiver, metric, **attributes):
    """The metric's total over both process groups: each group's newest export that has it (cumulative)."""
    with receiver.lock:
        exports = list(receiver.metric_exports)
    newest = {}
    for points in exports:
        found = [p for p in points if p.metric == metric]
        if found:
            newest[found[0].resource["service.instance.id"]] = found
    return sum(
        p.value
        for points in newest.values()
        for p in points
        if all(p.attributes.get(k) == v for k, v in attributes.items())
    )


def test_tokens_and_cost_are_exact_on_the_metrics_port_and_over_otlp(stack):
    receiver = stack["receiver"]
    everything = WEB + TASKS

    def otlp_missing():
        """What OTLP does not have yet. A call records its token types one by one (a stream's output tokens come
        with its last event), so a periodic export can fall between them: wait for every figure asserted below."""
        missing = []
        for p, expected in PER_CALL.items():
            for token_type, count in expected["tokens"].items():
                got = otlp_sum(
                    receiver, "gen_ai_client_token_usage", gen_ai_provider_name=p, gen_ai_token_type=token_type
                )
                if got != calls(p, everything) * count:
                    missing.append((p, token_type, got))
            cost = otlp_sum(receiver, "gen_ai_client_cost", gen_ai_request_model=expected["model"], currency="USD")
            if cost != pytest.approx(calls(p, everything) * expected["cost"], rel=1e-9):
                missing.append((p, "cost", cost))
        return missing

    support.wait_until(
        lambda: not otlp_missing(), timeout=60, message=lambda: f"every call over OTLP: {otlp_missing()}", interval=0.5
    )
    samples = support_metrics.scrape(stack["metrics_port"])
    for provider, expected in PER_CALL.items():
        model = expected["model"]
        for token_type, count in expected["tokens"].items():
            port = sum(
                v
                for (name, labels), v in samples.items()
                if name == "gen_ai_client_token_usage_sum"
                and dict(labels).get("gen_ai_provider_name") == provider
                and dict(labels).get("gen_ai_token_type") == token_type
            )
            assert port == calls(provider, WEB) * count, (provider, token_type, "metrics port")
            otlp = otlp_sum(
                receiver, "gen_ai_client_token_usage", gen_ai_provider_name=provider, gen_ai_token_type=token_type
            )
            assert otlp == calls(provider, everything) * count, (provider, token_type, "OTLP")
        port_cost = sum(
            v
            for (name, labels), v in samples.items()
            if name == "gen_ai_client_cost_total"
            and dict(labels).get("gen_ai_request_model") == model
            and dict(labels).get("currency") == "USD"
        )
        assert port_cost == pytest.approx(calls(provider, WEB) * expected["cost"], rel=1e-9)
        otlp_cost = otlp_sum(receiver, "gen_ai_client_cost", gen_ai_request_model=model, currency="USD")
        assert otlp_cost == pytest.approx(calls(provider, everything) * expected["cost"], rel=1e-9)
        streamed = sum(1 for p, s in WEB if p == provider and s)
        ttfc = sum(
            v
            for (name, labels), v in samples.items()
            if name == "gen_ai_client_operation_time_to_first_chunk_seconds_count"
            and dict(labels).get("gen_ai_provider_name") == provider
        )
        assert ttfc == streamed, (provider, "time to first chunk")


def test_the_genai_instrumentations_spans_carry_tokens_by_type_and_cost(stack):
    receiver = stack["receiver"]
    everything = WEB + TASKS

    def genai(provider):
        return [s for s in receiver.spans if s.instrumentation_scope == SCOPES[provider]]

    support.wait_until(
        lambda: all(len(genai(p)) >= calls(p, everything) for p in PER_CALL), timeout=30, message="GenAI spans"
    )
    for provider, expected in PER_CALL.items():
        spans = genai(provider)
        assert len(spans) == calls(provider, everything)
        assert {s.name for s in spans} == {f"chat {expected['model']}"}
        for span in spans:
            attributes = span.attributes
            assert attributes["gen_ai.provider.name"] == provider
            assert attributes["gen_ai.usage.input_tokens"] == expected["tokens"]["input"]  # cached ones included
            assert attributes["gen_ai.usage.output_tokens"] == expected["tokens"]["output"]
            assert attributes["gen_ai.usage.cache_read.input_tokens"] == expected["tokens"]["cache_read"]
            assert attributes["django_observe.llm.cost"] == pytest.approx(expected["cost"], rel=1e-9)
            assert attributes["django_observe.llm.currency"] == "USD"
        if provider == "anthropic":
            assert {s.attributes["gen_ai.usage.cache_write.input_tokens"] for s in spans} == {50}
        streamed = [s for s in spans if s.attributes.get("gen_ai.request.stream")]
        assert len(streamed) == sum(1 for p, s in everything if p == provider and s)
        assert all(s.attributes["gen_ai.response.time_to_first_chunk"] > 0 for s in streamed)
    # the worker's calls are children of their task's span
    task_spans = {s.span_id: s for s in receiver.spans if "llm_direct" in s.name}
    in_tasks = [s for p in PER_CALL for s in genai(p) if s.parent_span_id in task_spans]
    assert len(in_tasks) == len(TASKS)


CUSTOMER_SETTINGS = """
SECRET_KEY = "customer"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django_observe"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
ROOT_URLCONF = "customer_urls"
USE_TZ = True
"""
CUSTOMER_URLS = """
import openai
from django.http import JsonResponse
from django.urls import path


def ask(request):
    client = openai.OpenAI(max_retries=0)  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment
    response = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return JsonResponse({"reply": response.choices[0].message.content})


urlpatterns = [path("ask", ask)]
"""
CUSTOMER_WSGI = """
from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
"""


def test_a_customer_project_calling_the_openai_sdk_gets_spans_and_metrics_with_no_further_step(tmp_path):
    """INSTALLED_APPS = ["django_observe"], OTEL_ENABLED, and a view calling the openai SDK: nothing else."""
    support.require_module("openai")
    project = tmp_path / "customer"
    project.mkdir()
    for name, text in (("customer_settings", CUSTOMER_SETTINGS), ("customer_urls", CUSTOMER_URLS)):
        (project / f"{name}.py").write_text(text)
    (project / "customer_wsgi.py").write_text(CUSTOMER_WSGI)
    metrics_port, port = support.free_port(), support.free_port()
    with support_otlp.HttpReceiver() as receiver, support_llm.FakeLLM() as llm:
        env = support.project_env(
            **support.tracing_to(receiver.endpoint),
            DJANGO_SETTINGS_MODULE="customer_settings",
            PYTHONPATH=str(project),
            OPENAI_BASE_URL=llm.base_url,
            OPENAI_API_KEY="sk-customer-not-secret",
            METRICS_PORT=str(metrics_port),
        )
        argv = [support.PYTHON, "-m", "gunicorn", "customer_wsgi:application", "--bind", f"127.0.0.1:{port}"]
        with support.Server(argv, env, port, tmp_path / "web.log") as web:
            for _ in range(2):
                response = requests.get(f"{web.url}/ask", timeout=15)
                assert response.status_code == 200, web.output()[-3000:]
            support.wait_until(
                lambda: len([s for s in receiver.spans if s.name == "chat gpt-4o-mini"]) == 2,
                timeout=30,
                message="the GenAI spans",
            )
            samples = support_metrics.scrape(metrics_port)
    genai = [s for s in receiver.spans if s.name == "chat gpt-4o-mini"]
    requests_traced = {s.trace_id for s in receiver.spans if s.kind == 2}  # SERVER: the requests' own spans
    assert all(s.trace_id in requests_traced for s in genai), "each call in its request's trace"
    assert {s.instrumentation_scope for s in genai} == {SCOPES["openai"]}
    assert [s.attributes["django_observe.llm.cost"] for s in genai] == pytest.approx([support_llm.OPENAI_COST] * 2)
    labels = {"gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt-4o-mini"}
    tokens = {
        t: support_metrics.value(samples, "gen_ai_client_token_usage_sum", **labels, gen_ai_token_type=t)
        for t in ("input", "output", "cache_read", "reasoning")
    }
    assert tokens == {"input": 2 * 57, "output": 2 * 116, "cache_read": 2 * 32, "reasoning": 2 * 20}
    cost = sum(v for (name, _), v in samples.items() if name == "gen_ai_client_cost_total")
    assert cost == pytest.approx(2 * support_llm.OPENAI_COST, rel=1e-9)
