"""LLM usage and cost: pure pieces the GenAI integrations and metrics share.

- :mod:`.usage`: token counts by type read from the openai and anthropic responses and stream events, and the
  per-request totals the request's log line reports;
- :mod:`.pricing`: the price table (``LLM_PRICES``, ``LLM_CURRENCY``) and the cost of a call by token type.

Nothing here imports the rest of the package: conf parses the price table with :func:`.pricing.parse_prices`.
"""
