"""Token usage of one LLM call, by type, read from whatever the provider returned.

Types (the GenAI conventions' ``gen_ai.usage.*`` attributes): ``input`` (every input token, cached ones included),
``output`` (every output token, reasoning included), and the breakdowns ``cache_read`` (input served from the
provider's cache), ``cache_write`` (input written to it) and ``reasoning`` (output spent thinking). Breakdowns are
subsets of the totals, never added to them.

Anthropic reports ``input_tokens`` *without* the cached ones (``cache_read_input_tokens`` and
``cache_creation_input_tokens`` come on top): :func:`usage_from` adds them back so ``input`` means the same for
every provider. OpenAI's ``prompt_tokens`` already includes ``prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = [
    "TOKEN_TYPES",
    "RequestTotals",
    "Usage",
    "add_to_request",
    "field",
    "take_request_totals",
    "usage_from",
]

# The gen_ai_token_type label values of the token metric, in the order they are reported.
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write", "reasoning")


def field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping, else ``obj.name`` (SDK objects), else None."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


@dataclasses.dataclass(frozen=True)
class Usage:
    """Token counts of one call; None where the provider reported nothing."""

    input: int | None = None
    output: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None

    def by_type(self) -> dict[str, int]:
        """The reported counts, keyed by token type (:data:`TOKEN_TYPES` order)."""
        return {t: v for t in TOKEN_TYPES if (v := getattr(self, t)) is not None}

    @property
    def empty(self) -> bool:
        return all(getattr(self, t) is None for t in TOKEN_TYPES)


def usage_from(usage: Any) -> Usage:
    """Read a ``usage`` object or dict of the OpenAI chat completions API (``prompt_tokens``,
    ``completion_tokens``, ``*_tokens_details``), the OpenAI Responses API (``input_tokens``, ``output_tokens``,
    ``input_tokens_details.cached_tokens``, ``output_tokens_details.reasoning_tokens``) or Anthropic
    (``input_tokens``, ``output_tokens``, ``cache_read_input_tokens``, ``cache_creation_input_tokens``)."""
    if usage is None:
        return Usage()
    prompt = _count(field(usage, "prompt_tokens"))
    if prompt is not None:  # OpenAI chat completions
        details = field(usage, "prompt_tokens_details")
        out_details = field(usage, "completion_tokens_details")
        return Usage(
            input=prompt,
            output=_count(field(usage, "completion_tokens")),
            cache_read=_count(field(details, "cached_tokens")),
            reasoning=_count(field(out_details, "reasoning_tokens")),
        )
    input_tokens = _count(field(usage, "input_tokens"))
    output_tokens = _count(field(usage, "output_tokens"))
    cache_read = _count(field(usage, "cache_read_input_tokens"))
    cache_write = _count(field(usage, "cache_creation_input_tokens"))
    if cache_read is not None or cache_write is not None or _is_anthropic(usage):
        total = None if input_tokens is None else input_tokens + (cache_read or 0) + (cache_write or 0)
        return Usage(input=total, output=output_tokens, cache_read=cache_read, cache_write=cache_write)
    details = field(usage, "input_tokens_details")  # OpenAI Responses API
    out_details = field(usage, "output_tokens_details")
    return Usage(
        input=input_tokens,
        output=output_tokens,
        cache_read=_count(field(details, "cached_tokens")),
        reasoning=_count(field(out_details, "reasoning_tokens")),
    )


def _is_anthropic(usage: Any) -> bool:
    module = type(usage).__module__
    return module.startswith("anthropic.")


@dataclasses.dataclass
class RequestTotals:
    """What the LLM calls of one request used and cost, for the request's log line."""

    calls: int = 0
    tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0
    currency: str = ""

    def fields(self) -> dict[str, Any]:
        """The log line's fields: ``llm_calls``, ``tokens_used`` (input + output), ``llm_cost`` and
        ``llm_currency`` (when a call was priced), ``llm_unpriced`` (calls with no price)."""
        out: dict[str, Any] = {"llm_calls": self.calls, "tokens_used": self.tokens}
        if self.calls > self.unpriced:
            out["llm_cost"], out["llm_currency"] = round(self.cost, 8), self.currency
        if self.unpriced:
            out["llm_unpriced"] = self.unpriced
        return out


_request_totals: contextvars.ContextVar[RequestTotals | None] = contextvars.ContextVar(
    "django_observe_llm_totals", default=None
)


def add_to_request(usage: Usage, cost: float | None, currency: str) -> None:
    """Count one call in the current context's totals (the request's, read by its log line)."""
    totals = _request_totals.get()
    if totals is None:
        totals = RequestTotals(currency=currency)
        _request_totals.set(totals)
    totals.calls += 1
    totals.tokens += (usage.input or 0) + (usage.output or 0)
    if cost is None:
        totals.unpriced += 1
    else:
        totals.cost += cost


def take_request_totals() -> RequestTotals | None:
    """The totals of the calls made since the last take (None when there were none), and reset them."""
    totals = _request_totals.get()
    if totals is not None:
        _request_totals.set(None)
    return totals
