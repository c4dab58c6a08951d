"""PromQL text helpers shared by the rule builders."""

from __future__ import annotations

import json

__all__ = ["format_number", "metric", "promql_string"]


def metric(namespace: str, name: str) -> str:
    """A catalogue metric's exposed name under ``METRICS_NAMESPACE``."""
    return f"{namespace}_{name}" if namespace else name


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal."""
    return json.dumps(value, ensure_ascii=False)


def format_number(value: float) -> str:
    return f"{value:.10g}"
