"""django-observe: health, correlation, structured logs, metrics and tracing for Django.

Public API (see docs/):

- ``django_observe.get_config()``: the validated configuration of this process.
- ``django_observe.get_correlation_id()``: the current request's or task's correlation ID.
- ``django_observe.correlation``: ``correlation_context()``, ``wrap_with_context()``.
- ``django_observe.propagation.outbound_headers()``: the correlation header for an HTTP client it does not patch.
- ``django_observe.logging``: ``JSONFormatter``, ``TextFormatter`` for your own ``LOGGING``.
- ``django_observe.metrics.authorization()``: time custom authentication/authorization code.
- ``django_observe.metrics``: ``counter()``, ``gauge()``, ``histogram()`` (business metrics declared once, summed
  across processes) and ``timed()`` (a decorator or context manager).
- ``django_observe.queries.current()``: statements, time and repeated shapes of the current request or task.
- ``{% load observe %}{% correlation_id %}`` and ``django_observe.context_processors.correlation``: the ID on
  error pages.
- ``django_observe.tracing.get_tracer()``: custom spans (a no-op tracer when tracing is off).
- ``django_observe.health``: ``Database``, ``Cache``, ``Redis``, ``CeleryBroker``, ``CeleryWorkers``,
  ``Migrations``, ``Disk``, ``Memory`` checks, ``start_draining()``, ``is_draining()``.
- Management commands: ``observe_health``, ``observe_config``, ``observe_rules``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "get_config", "get_correlation_id"]


def __getattr__(name: str):
    # Lazy, so that listing "django_observe" in INSTALLED_APPS imports nothing from Django.
    if name == "get_config":
        from .runtime import get_config

        return get_config
    if name == "get_correlation_id":
        from .correlation import get_correlation_id

        return get_correlation_id
    raise AttributeError(f"module 'django_observe' has no attribute {name!r}")
