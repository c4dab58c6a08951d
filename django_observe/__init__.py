"""django-observe: health, correlation, structured logs, metrics and tracing for Django.

The public API is what this module lists in ``__all__`` (re-exported lazily, so that listing
``"django_observe"`` in ``INSTALLED_APPS`` imports nothing from Django), plus:

- ``django_observe.health``: the ``Database``, ``Cache``, ``Redis``, ``CeleryBroker``, ``CeleryWorkers``,
  ``Migrations``, ``Disk`` and ``Memory`` checks, and ``Observation`` for a check's measurement.
- ``django_observe.logging``: ``JSONFormatter`` and ``TextFormatter`` for your own ``LOGGING``.
- ``django_observe.tracing``: ``get_tracer``; ``django_observe.integrations.genai``: ``LLMCall`` and
  ``current_llm_call()`` for ``llm_call`` blocks; ``django_observe.tracing.agents``: ``AgentRun``, ``ToolCall``,
  ``Retrieval`` and ``current_agent_run()``.
- ``django_observe.llm.pricing``: ``DEFAULT_PRICES`` (the shipped, dated price table) and ``Price``.
- ``django_observe.queries.current()``: statements, time and repeated shapes of the current request or task.
- ``django_observe.gunicorn``: a gunicorn configuration (``-c python:django_observe.gunicorn``).
- ``{% load observe %}{% correlation_id %}`` and ``django_observe.context_processors.correlation``.
- Management commands: ``observe_health``, ``observe_config``, ``observe_rules``.
- ``django_observe.console``: the built-in console app (``INSTALLED_APPS``, ``migrate``; pages at ``observe/``,
  docs/console.md).

Every other module is internal: its names may change between releases.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "authorization": "django_observe.metrics",
    "correlation_context": "django_observe.correlation",
    "counter": "django_observe.metrics",
    "execute_tool": "django_observe.tracing.agents",
    "gauge": "django_observe.metrics",
    "get_config": "django_observe.runtime",
    "get_correlation_id": "django_observe.correlation",
    "get_tracer": "django_observe.tracing",
    "histogram": "django_observe.metrics",
    "invoke_agent": "django_observe.tracing.agents",
    "is_draining": "django_observe.health",
    "llm_call": "django_observe.integrations.genai",
    "outbound_headers": "django_observe.propagation",
    "retrieval": "django_observe.tracing.agents",
    "start_draining": "django_observe.health",
    "timed": "django_observe.metrics",
    "wrap_with_context": "django_observe.correlation",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'django_observe' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
