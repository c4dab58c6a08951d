"""opentelemetry-instrumentation-django, when a project or ``opentelemetry-instrument`` switched it on.

``DjangoInstrumentor().instrument()`` inserts its own middleware, which would make a second SERVER span per
request (and costs more than the rest of django_observe). With ``OTEL_ENABLED`` on, django_observe
uninstruments it at start-up (before Django builds the middleware chain) and makes the request spans
itself, keeping what was given to ``instrument()``: the request and response hooks, and the
``excluded_urls`` argument. Nothing of the contrib is imported unless the project imported it already.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["DjangoInstrumentation", "instrumentation", "uninstrument_django"]

_PACKAGE = "opentelemetry.instrumentation.django"
_MIDDLEWARE_MODULE = "opentelemetry.instrumentation.django.middleware.otel_middleware"


@dataclasses.dataclass(frozen=True)
class DjangoInstrumentation:
    """What ``DjangoInstrumentor().instrument(...)`` was given in this process.

    Attributes:
        request_hook: ``request_hook=``, called as ``hook(span, request)``.
        response_hook: ``response_hook=``, called as ``hook(span, request, response)``.
        excluded_urls: the regular expressions of ``excluded_urls=`` (or of its environment variables).
        url_disabled: the contrib's test of a full URL against them.
    """

    request_hook: Callable[[Any, Any], None] | None
    response_hook: Callable[[Any, Any, Any], None] | None
    excluded_urls: tuple[str, ...]
    url_disabled: Callable[[str], bool] | None


def instrumentation() -> DjangoInstrumentation | None:
    """The arguments of the contrib's ``instrument()`` if it ran in this process (uninstrumented or not)."""
    module = sys.modules.get(_MIDDLEWARE_MODULE)
    if module is None:
        return None
    # instrument() stores its arguments on the middleware class; uninstrument() leaves them there.
    middleware = module._DjangoMiddleware
    if getattr(middleware, "_tracer", None) is None:
        return None
    excluded = getattr(middleware, "_excluded_urls", None)
    patterns = tuple(getattr(excluded, "_excluded_urls", None) or ())
    return DjangoInstrumentation(
        request_hook=getattr(middleware, "_otel_request_hook", None),
        response_hook=getattr(middleware, "_otel_response_hook", None),
        excluded_urls=patterns,
        url_disabled=excluded.url_disabled if patterns and excluded is not None else None,
    )


def uninstrument_django() -> bool:
    """Uninstrument ``DjangoInstrumentor`` if it is instrumented (its middleware leaves ``MIDDLEWARE``).

    Returns:
        True when it was instrumented.
    """
    if _PACKAGE not in sys.modules:
        return False
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    instrumentor = DjangoInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        return False
    instrumentor.uninstrument()
    return True
