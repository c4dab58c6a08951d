"""LLM call metrics: ``gen_ai_client_token_usage`` and ``gen_ai_client_operation_duration_seconds``.

Recorded by ``django_observe.llm_call`` once per call, whether tracing is on or off; the model and provider
labels go through the cardinality guard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .catalogue import Catalogue

__all__ = ["record_llm_call"]

TOKEN_METRIC = "gen_ai_client_token_usage"  # noqa: S105 - a metric name
DURATION_METRIC = "gen_ai_client_operation_duration_seconds"


def _labels(catalogue: Catalogue, metric: str, operation: str, provider: str, request_model: str, response_model: str):
    return (
        catalogue.guard(metric, "gen_ai_operation_name")(operation),
        catalogue.guard(metric, "gen_ai_provider_name")(provider),
        catalogue.guard(metric, "gen_ai_request_model")(request_model),
        catalogue.guard(metric, "gen_ai_response_model")(response_model),
    )


def record_llm_call(
    catalogue: Catalogue,
    *,
    operation: str,
    provider: str,
    request_model: str,
    response_model: str,
    seconds: float,
    input_tokens: int | None,
    output_tokens: int | None,
    error_type: str | None,
) -> None:
    """One observation of the duration, one per token type the call reported (none when it failed early)."""
    labels = _labels(catalogue, DURATION_METRIC, operation, provider, request_model, response_model)
    error = catalogue.guard(DURATION_METRIC, "error_type")(error_type or "")
    catalogue.genai_operation_duration.labels(*labels, error).observe(max(seconds, 0.0))
    if input_tokens is None and output_tokens is None:
        return
    labels = _labels(catalogue, TOKEN_METRIC, operation, provider, request_model, response_model)
    if input_tokens is not None:
        catalogue.genai_token_usage.labels(*labels, "input").observe(input_tokens)
    if output_tokens is not None:
        catalogue.genai_token_usage.labels(*labels, "output").observe(output_tokens)
