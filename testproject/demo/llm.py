"""The chat view's language model: an agent over the real openai SDK against ``OPENAI_BASE_URL`` (loopback only
in this demo: the tests point it at a local OpenAI-compatible server).

The agent (``invoke_agent``) calls the model with one tool offered; when the model asks for the tool, it runs
it (``execute_tool``) and calls the model again with the result. ``llm_call`` records each call's tokens and
cost; the GenAI instrumentation of the openai SDK, when tracing is on, makes the calls' spans."""

from __future__ import annotations

import functools
import json
import os
from typing import Any
from urllib.parse import urlsplit

from django_observe import execute_tool, invoke_agent, llm_call

from .outbound import loopback_url

MAX_STEPS = 4
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup_plan",
            "description": "The details of a subscription plan.",
            "parameters": {"type": "object", "properties": {"plan": {"type": "string"}}, "required": ["plan"]},
        },
    }
]
PLANS = {"blue": "Blue plan: 10 agents, 5,000 messages a month.", "red": "Red plan: unlimited agents."}


def base_url() -> str | None:
    """The configured OpenAI-compatible endpoint, or None (then the reply is written by a Celery task)."""
    return loopback_url(os.environ.get("OPENAI_BASE_URL"))


@functools.cache
def _client(url: str) -> Any:
    import openai

    return openai.OpenAI(
        base_url=url, api_key=os.environ.get("OPENAI_API_KEY", "not-needed"), max_retries=0, timeout=10
    )


def anthropic_base_url() -> str | None:
    """The configured Anthropic-compatible endpoint (``ANTHROPIC_BASE_URL``, loopback only), or None."""
    return loopback_url(os.environ.get("ANTHROPIC_BASE_URL"))


@functools.cache
def _anthropic(url: str) -> Any:
    import anthropic

    return anthropic.Anthropic(base_url=url, api_key="not-needed", max_retries=0, timeout=10)


def direct_call(provider: str, stream: bool) -> str:
    """One call through the SDK itself, as a customer writes it: no ``llm_call``, nothing of django_observe."""
    question = [{"role": "user", "content": "Which plan suits a team of ten?"}]
    if provider == "anthropic":
        url = anthropic_base_url()
        if url is None:
            raise ValueError("ANTHROPIC_BASE_URL is not a loopback URL")
        arguments = {"model": "claude-sonnet-4-5", "max_tokens": 256, "messages": question}
        if stream:
            events = _anthropic(url).messages.create(**arguments, stream=True)
            return "".join(e.delta.text for e in events if e.type == "content_block_delta")
        return _anthropic(url).messages.create(**arguments).content[0].text
    url = base_url()
    if url is None:
        raise ValueError("OPENAI_BASE_URL is not a loopback URL")
    arguments = {"model": "gpt-4o-mini", "messages": question}
    if stream:
        chunks = _client(url).chat.completions.create(**arguments, stream=True, stream_options={"include_usage": True})
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return _client(url).chat.completions.create(**arguments).choices[0].message.content or ""


def ask(prompt: str) -> str:
    """One model call with ``prompt`` inside an ``llm_call`` block (the hostile corpus: the local server answers
    400 quoting the prompt, as OpenAI's policy errors do, and the SDK raises with it in the message)."""
    url = base_url()
    if url is None:
        raise ValueError("OPENAI_BASE_URL is not a loopback URL")
    with llm_call("gpt-4o-mini", "openai"):
        response = _client(url).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}]
        )
    return response.choices[0].message.content or ""


def lookup_plan(plan: str) -> str:
    return PLANS.get(str(plan).lower(), "No such plan.")


def run_agent(url: str, agent: Any, messages: list[dict[str, Any]]) -> tuple[str, int, int]:
    """The agent's reply and the (input, output) tokens of all its model calls."""
    parts = urlsplit(url)
    client = _client(url)
    input_tokens = output_tokens = 0
    with invoke_agent(agent.name, agent_id=str(agent.pk), provider="openai") as run:
        for _ in range(MAX_STEPS):
            run.step()
            with llm_call(agent.model, "openai", server_address=parts.hostname, server_port=parts.port) as call:
                response = client.chat.completions.create(model=agent.model, messages=messages, tools=TOOLS)
            input_tokens += call.input_tokens or 0
            output_tokens += call.output_tokens or 0
            message = response.choices[0].message
            if not message.tool_calls:
                return message.content or "", input_tokens, output_tokens
            messages.append(message.model_dump(exclude_none=True))
            for tool_call in message.tool_calls:
                with execute_tool(tool_call.function.name, call_id=tool_call.id) as tool:
                    arguments = json.loads(tool_call.function.arguments or "{}")
                    result = lookup_plan(**arguments) if tool_call.function.name == "lookup_plan" else "unknown tool"
                    tool.record(arguments=arguments, result=result)
                messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": result})
    return "", input_tokens, output_tokens
