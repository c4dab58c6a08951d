"""Prompt text stays off spans when an LLM call fails (#34 finding 6), content capture off (the default).

gunicorn with tracing on runs the demo's chat flow (an agent calling the real openai SDK, with the GenAI
instrumentation, inside ``llm_call`` blocks) against a local OpenAI-compatible server that answers 400 with a
message quoting the prompt, as OpenAI's policy errors do. The exception leaves the SDK call (the GenAI span
writes it as its status), the ``llm_call`` block, the demo's own ``llm.chat_completion`` span, the agent span
and the request: each span that recorded it keeps the exception's type and frames; the prompt is in none of
the exported spans (names, status descriptions, attributes, events), in no line of stdout (Django's
``Internal Server Error`` record and our request line carry the exception) and in no OTLP log record."""

import json
import uuid

import pytest
import requests

from tests import support, support_llm, support_otlp

pytestmark = pytest.mark.integration

SERVER = 2  # OTLP SpanKind


def test_a_providers_400_quoting_the_prompt_reaches_no_span(tmp_path):
    support.require_module("openai")
    planted = f"PROMPTTEXT{uuid.uuid4().hex}"
    prompt = f"Which plan suits a team of ten? {planted}"
    with (
        support_otlp.HttpReceiver() as receiver,
        support_llm.FakeLLM(status=400, echo_prompt=True) as llm,
    ):
        env = support.sqlite_env(
            tmp_path,
            LOG_FORMAT="json",
            **support.tracing_to(receiver.endpoint),
            OTEL_LOGS_EXPORTER="otlp",
            OPENAI_BASE_URL=llm.base_url,
        )
        token = support.manage("demo_token", env=env).stdout.strip().splitlines()[-1]
        with support.gunicorn(env, tmp_path / "web.log", workers=1) as web:
            response = requests.post(
                web.url + "/api/chat",
                data=json.dumps({"message": prompt}),
                headers={"Authorization": f"Bearer {token}", "X-Correlation-ID": "req_llmfail"},
                timeout=15,
            )
            assert response.status_code == 500, web.output()[-3000:]

            def trace():
                spans = list(receiver.spans)
                server = [s for s in spans if s.kind == SERVER and s.attributes.get("correlation_id") == "req_llmfail"]
                if not server:
                    return None
                found = [s for s in spans if s.trace_id == server[0].trace_id]
                names = {s.name for s in found}
                return found if {"chat gpt-4o-mini", "llm.chat_completion", "invoke_agent assistant"} <= names else None

            spans = support.wait_until(trace, timeout=60, message="the failed chat request's spans")
        # Stopped: its exit flush has sent the last log records.
        otlp_logs = "\n".join(f"{log.body} {log.attributes}" for log in receiver.logs)
        stdout = web.output()
    assert llm.requests and planted in json.dumps(llm.requests[-1]), "the prompt was sent"
    by_name = {s.name: s for s in spans}
    chat = by_name["chat gpt-4o-mini"]
    assert chat.status_code == 2, "the GenAI span says the call failed"  # STATUS_CODE_ERROR
    server = next(s for s in spans if s.kind == SERVER)
    errors = [attrs for name, attrs in server.events if name == "exception"]
    assert errors and errors[0]["exception.type"].endswith("BadRequestError"), server.events
    assert "File " in errors[0]["exception.stacktrace"], "the frames are kept"
    leaks = [f"{s.name}: {text[:300]!r}" for s in spans for text in s.texts() if planted in text]
    assert not leaks, "\n".join(leaks)
    assert "BadRequestError" in stdout and "BadRequestError" in otlp_logs, "the failure was logged"
    assert planted not in stdout, [line[:300] for line in stdout.splitlines() if planted in line]
    assert planted not in otlp_logs
