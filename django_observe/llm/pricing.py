"""The price table and the cost of one call.

Prices are per million tokens, in the currency ``LLM_CURRENCY`` names, for each token type a provider bills:

- ``input``: input tokens not served from or written to the cache;
- ``cache_read``: input tokens read from the provider's cache (default: the ``input`` price);
- ``cache_write``: input tokens written to it (default: the ``input`` price);
- ``output``: output tokens (reasoning included);
- ``reasoning``: reasoning tokens, when a provider bills them apart (default: the ``output`` price).

The cost of a call is split the same way, so the cost types add up to the call's cost with nothing counted
twice: ``input`` + ``cache_read`` + ``cache_write`` is the whole input, ``output`` + ``reasoning`` the whole
output. A model with no price is *unpriced*: it costs nothing here and is counted apart, never guessed.

A model matches a table entry by its exact name, or by an entry that is the name without a date or ``-latest``
suffix (``gpt-4o-mini-2024-07-18`` and ``claude-sonnet-4-5-20250929`` match ``gpt-4o-mini`` and
``claude-sonnet-4-5``); ``gpt-4o-mini`` never falls back to ``gpt-4o``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

from .usage import Usage

__all__ = [
    "COST_TYPES",
    "DEFAULT_PRICES",
    "Price",
    "PriceTable",
    "call_cost",
    "parse_currency",
    "parse_prices",
]

COST_TYPES = ("input", "cache_read", "cache_write", "output", "reasoning")
_PER = 1_000_000
_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")
_CURRENCY = re.compile(r"[A-Z]{3}")


@dataclasses.dataclass(frozen=True)
class Price:
    """One model's prices per million tokens (None: the type falls back as the module docstring says)."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None
    taken: str = ""  # the date the price was read from the provider's price page (shipped defaults)


# USD per million tokens, standard tier, read from the providers' public price pages on the date given.
# Prices change: set LLM_PRICES to correct or extend them, LLM_DEFAULT_PRICES=False to drop these.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(input=0.15, cache_read=0.075, output=0.60, taken="2026-06-20"),
    "gpt-4o": Price(input=2.50, cache_read=1.25, output=10.00, taken="2026-06-20"),
    "gpt-4.1": Price(input=2.00, cache_read=0.50, output=8.00, taken="2026-06-20"),
    "gpt-4.1-mini": Price(input=0.40, cache_read=0.10, output=1.60, taken="2026-06-20"),
    "claude-sonnet-4-6": Price(input=3.00, cache_read=0.30, cache_write=3.75, output=15.00, taken="2026-04-27"),
    "claude-sonnet-4-5": Price(input=3.00, cache_read=0.30, cache_write=3.75, output=15.00, taken="2026-04-27"),
    "claude-sonnet-4": Price(input=3.00, cache_read=0.30, cache_write=3.75, output=15.00, taken="2026-04-27"),
    "claude-3-5-haiku": Price(input=0.80, cache_read=0.08, cache_write=1.00, output=4.00, taken="2026-04-27"),
}
DEFAULT_CURRENCY = "USD"


@dataclasses.dataclass(frozen=True)
class PriceTable:
    """Prices by model, in ``currency``."""

    currency: str = DEFAULT_CURRENCY
    prices: Mapping[str, Price] = dataclasses.field(default_factory=dict)

    def price(self, *models: str | None) -> Price | None:
        """The price of the first of ``models`` the table knows (response model first, then requested)."""
        for model in models:
            if not model:
                continue
            found = self.prices.get(model)
            if found is None:
                stripped = _SUFFIX.sub("", model)
                found = self.prices.get(stripped) if stripped != model else None
            if found is not None:
                return found
        return None

    @classmethod
    def build(cls, currency: str, prices: Mapping[str, Price], defaults: bool) -> PriceTable:
        """The project's ``prices`` over the shipped defaults (only when ``defaults`` and the currency is USD)."""
        table: dict[str, Price] = dict(DEFAULT_PRICES) if defaults and currency == DEFAULT_CURRENCY else {}
        table.update(prices)
        return cls(currency, table)


def call_cost(usage: Usage, price: Price | None) -> dict[str, float] | None:
    """The call's cost by cost type (:data:`COST_TYPES`, zero types left out); None when unpriced."""
    if price is None:
        return None
    cache_read, cache_write = usage.cache_read or 0, usage.cache_write or 0
    plain_input = max((usage.input or 0) - cache_read - cache_write, 0)
    reasoning = min(usage.reasoning or 0, usage.output or 0) if price.reasoning is not None else 0
    counts = {
        "input": (plain_input, price.input),
        "cache_read": (cache_read, price.input if price.cache_read is None else price.cache_read),
        "cache_write": (cache_write, price.input if price.cache_write is None else price.cache_write),
        "output": ((usage.output or 0) - reasoning, price.output),
        "reasoning": (reasoning, price.reasoning or 0.0),
    }
    return {kind: n * per / _PER for kind, (n, per) in counts.items() if n}


def parse_currency(raw: Any) -> str:
    """An ISO 4217 code, three capital letters (``USD``, ``EUR``)."""
    if isinstance(raw, str) and _CURRENCY.fullmatch(raw.strip()):
        return raw.strip()
    raise ValueError('must be an ISO 4217 currency code of three capital letters, e.g. "USD" or "EUR"')


_PRICE_KEYS = ("input", "output", "cache_read", "cache_write", "reasoning")


def parse_prices(raw: Any) -> dict[str, Price]:
    """``{"model": {"input": 0.15, "output": 0.6, "cache_read": 0.075, ...}}`` per million tokens; from the
    environment, a JSON object. ``input`` and ``output`` are required, the others optional."""
    if isinstance(raw, str):
        import json

        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            raise ValueError("must be a JSON object of model -> prices") from None
    if not isinstance(raw, Mapping):
        raise ValueError('must be a dict of model -> {"input": ..., "output": ...} (prices per million tokens)')
    table: dict[str, Price] = {}
    for model, entry in raw.items():
        if not isinstance(model, str) or not model:
            raise ValueError(f"has a model name that is not a non-empty string: {model!r}")
        if not isinstance(entry, Mapping):
            raise ValueError(f'[{model!r}] must be a dict like {{"input": 0.15, "output": 0.6}}, got {entry!r}')
        unknown = set(entry) - set(_PRICE_KEYS)
        if unknown:
            raise ValueError(f"[{model!r}] has unknown keys {sorted(unknown)}; accepted: {', '.join(_PRICE_KEYS)}")
        values: dict[str, float] = {}
        for key in _PRICE_KEYS:
            if key not in entry or entry[key] is None:
                if key in ("input", "output"):
                    raise ValueError(f'[{model!r}] needs "{key}" (price per million tokens)')
                continue
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"[{model!r}][{key!r}] must be a non-negative number, got {value!r}")
            values[key] = float(value)
        table[model] = Price(**values)  # type: ignore[arg-type]  # only float fields
    return table
