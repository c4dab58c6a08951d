"""The cost of an LLM call on its GenAI span, whoever made the span.

:class:`CostHook` is given to the GenAI instrumentations (``opentelemetry-instrumentation-genai-openai`` and
``-anthropic``) as their completion hook when ``tracing.setup`` switches them on: they call it with their span
just before it ends, after setting the usage attributes; it reads those, prices them with the table
``integrations.genai`` binds for the runtime (:func:`bind`), and adds :func:`cost_attributes`.

The usage attribute names are the GenAI semantic conventions' as ``opentelemetry-util-genai`` 1.3b0 writes them
(open-telemetry/semantic-conventions-genai). The conventions have no cost attribute: these are ours.
"""

from __future__ import annotations

from typing import Any

from ..llm.pricing import PriceTable, call_cost
from ..llm.usage import Usage

__all__ = ["CostHook", "bind", "cost_attributes"]

REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_write.input_tokens"
# What opentelemetry-util-genai before 1.3b0 (and semantic-conventions 0.66b1) call cache_write.
CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
COST = "django_observe.llm.cost"
CURRENCY = "django_observe.llm.currency"
UNPRICED = "django_observe.llm.unpriced"

_DEFAULT = PriceTable.build("USD", {}, defaults=True)
_prices: PriceTable = _DEFAULT


def bind(prices: PriceTable | None) -> None:
    """The price table of the installed runtime (None: the shipped defaults)."""
    global _prices
    _prices = prices if prices is not None else _DEFAULT


def cost_attributes(cost: dict[str, float] | None, currency: str) -> dict[str, Any]:
    """The span attributes of a call's cost: the total and its currency, or ``unpriced``."""
    if cost is None:
        return {UNPRICED: True}
    return {COST: round(sum(cost.values()), 10), CURRENCY: currency}


class CostHook:
    """A completion hook for the GenAI instrumentations (``opentelemetry-util-genai``'s ``CompletionHook``):
    puts the call's cost on their span, read from the usage attributes they set, just before it ends.

    Args:
        inner: the hook the instrumentation would have used (``OTEL_INSTRUMENTATION_GENAI_COMPLETION_HOOK``),
            called first.
    """

    def __init__(self, inner: Any = None):
        self.inner = inner

    def on_completion(self, *, span: Any = None, **kwargs: Any) -> None:
        if self.inner is not None:
            self.inner.on_completion(span=span, **kwargs)
        attributes = getattr(span, "attributes", None)
        if span is None or not attributes or not span.is_recording():
            return
        usage = Usage(
            input=attributes.get(INPUT_TOKENS),
            output=attributes.get(OUTPUT_TOKENS),
            cache_read=attributes.get(CACHE_READ_TOKENS),
            cache_write=attributes.get(CACHE_WRITE_TOKENS, attributes.get(CACHE_CREATION_TOKENS)),
            reasoning=attributes.get(REASONING_TOKENS),
        )
        if usage.empty:
            return
        table = _prices
        price = table.price(attributes.get(RESPONSE_MODEL), attributes.get(REQUEST_MODEL))
        span.set_attributes(cost_attributes(call_cost(usage, price), table.currency))
