"""The chat view's language model: the real openai SDK against ``OPENAI_BASE_URL`` (loopback only in this demo:
the tests point it at a local OpenAI-compatible server)."""

from __future__ import annotations

import functools
import os
from typing import Any
from urllib.parse import urlsplit

from django_observe import llm_call

from .outbound import loopback_url


def base_url() -> str | None:
    """The configured OpenAI-compatible endpoint, or None (then the reply is written by a Celery task)."""
    return loopback_url(os.environ.get("OPENAI_BASE_URL"))


@functools.cache
def _client(url: str) -> Any:
    import openai

    return openai.OpenAI(
        base_url=url, api_key=os.environ.get("OPENAI_API_KEY", "not-needed"), max_retries=0, timeout=10
    )


def chat_completion(url: str, model: str, messages: list[dict[str, str]]) -> tuple[str, int, int]:
    """The reply and the (input, output) token counts. ``llm_call`` records the tokens as metrics and, unless
    the official OpenAI instrumentation already traces the call, opens the GenAI span itself."""
    parts = urlsplit(url)
    with llm_call(model=model, provider="openai", server_address=parts.hostname, server_port=parts.port) as call:
        response = _client(url).chat.completions.create(model=model, messages=messages)
        call.record_response(response)
    return response.choices[0].message.content or "", call.input_tokens or 0, call.output_tokens or 0
