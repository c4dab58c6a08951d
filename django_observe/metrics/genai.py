"""LLM metrics: tokens by type, cost, duration, time to first chunk; agent, tool and retrieval durations.

:class:`LLMMetrics` is the recorder ``django_observe.integrations.genai`` is handed (with metrics on): told about
every finished LLM call (``llm_call`` blocks and the openai/anthropic SDK calls, already priced) and every
agent run, tool call and retrieval. Each metric's label combinations (series) go through its series guard,
shared by the processes of the service (``Catalogue.series``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ..llm.usage import Usage

if TYPE_CHECKING:
    from .catalogue import Catalogue

__all__ = ["CallFacts", "LLMMetrics", "record_llm_call"]

TOKEN_METRIC = "gen_ai_client_token_usage"  # noqa: S105 - a metric name
DURATION_METRIC = "gen_ai_client_operation_duration_seconds"
TTFC_METRIC = "gen_ai_client_operation_time_to_first_chunk_seconds"
COST_METRIC = "gen_ai_client_cost"
UNPRICED_METRIC = "gen_ai_client_unpriced_calls"
GENAI_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model")
DURATION_LABELS = (*GENAI_LABELS, "error_type")
TOKEN_LABELS = (*GENAI_LABELS, "gen_ai_token_type")
COST_LABELS = ("gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type", "currency")
UNPRICED_LABELS = ("gen_ai_provider_name", "gen_ai_request_model")


@dataclasses.dataclass(frozen=True)
class CallFacts:
    """What one LLM call did."""

    operation: str
    provider: str
    request_model: str
    response_model: str = ""
    seconds: float = 0.0
    usage: Usage = Usage()
    error_type: str | None = None
    time_to_first_chunk: float | None = None


def _facts_labels(facts: CallFacts) -> tuple[str, str, str, str]:
    return (facts.operation, facts.provider, facts.request_model, facts.response_model)


def record_llm_call(catalogue: Catalogue, facts: CallFacts, cost: dict[str, float] | None, currency: str) -> None:
    """One observation of the duration (and of the time to first chunk for a stream), one per token type the
    call reported, the cost by type, or one unpriced call when it reported tokens but has no price.

    Each metric's label combinations go through its series guard (``Catalogue.series``): past the limit the
    free labels (operation, provider, models, error type) are folded into ``__other__``; the token and cost
    types and the currency are kept."""
    labels = _facts_labels(facts)
    duration = catalogue.series(DURATION_METRIC, DURATION_LABELS)((*labels, facts.error_type or ""))
    catalogue.genai_operation_duration.labels(*duration).observe(max(facts.seconds, 0.0))
    if facts.time_to_first_chunk is not None:
        ttfc = catalogue.series(TTFC_METRIC, GENAI_LABELS)(labels)
        catalogue.genai_time_to_first_chunk.labels(*ttfc).observe(max(facts.time_to_first_chunk, 0.0))
    counts = facts.usage.by_type()
    if not counts:
        return
    tokens = catalogue.series(TOKEN_METRIC, TOKEN_LABELS, keep=(4,))
    for token_type, count in counts.items():
        catalogue.genai_token_usage.labels(*tokens((*labels, token_type))).observe(count)
    if cost is None:
        unpriced = catalogue.series(UNPRICED_METRIC, UNPRICED_LABELS)((facts.provider, facts.request_model))
        catalogue.genai_unpriced.labels(*unpriced).inc()
        return
    costs = catalogue.series(COST_METRIC, COST_LABELS, keep=(2, 3))
    for cost_type, amount in cost.items():
        catalogue.genai_cost.labels(*costs((facts.provider, facts.request_model, cost_type, currency))).inc(amount)


class LLMMetrics:
    """The LLM recorder of a metrics state (``django_observe.integrations.genai`` is handed it)."""

    __slots__ = ("catalogue",)

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    def llm_call(self, call: Any, seconds: float) -> None:
        """Record one finished LLM call (an ``integrations.genai.LLMCall``, priced)."""
        facts = CallFacts(
            operation=call.operation,
            provider=call.provider,
            request_model=call.request_model,
            response_model=call.response_model or "",
            seconds=seconds,
            usage=call.usage,
            error_type=call.error_type,
            time_to_first_chunk=call.time_to_first_chunk,
        )
        record_llm_call(self.catalogue, facts, call.cost_by_type, call.currency or "")

    def _duration(self, metric_attr: str, metric: str, label: str, value: str, seconds: float, error: str | None):
        catalogue = self.catalogue
        labels = catalogue.series(metric, (label, "error_type"))((value, error or ""))
        getattr(catalogue, metric_attr).labels(*labels).observe(max(seconds, 0.0))

    def agent(self, name: str, seconds: float, error_type: str | None) -> None:
        metric = "gen_ai_invoke_agent_duration_seconds"
        self._duration("genai_agent_duration", metric, "gen_ai_agent_name", name, seconds, error_type)

    def tool(self, name: str, seconds: float, error_type: str | None) -> None:
        self._duration(
            "genai_tool_duration", "gen_ai_execute_tool_duration_seconds", "gen_ai_tool_name", name, seconds, error_type
        )

    def retrieval(self, data_source: str, seconds: float, error_type: str | None) -> None:
        self._duration(
            "genai_retrieval_duration",
            "gen_ai_retrieval_duration_seconds",
            "gen_ai_data_source_id",
            data_source,
            seconds,
            error_type,
        )
