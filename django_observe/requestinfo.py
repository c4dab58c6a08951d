"""Facts about the current request that every subsystem may use: route, method, user, trace ids.

Nothing here imports another part of django_observe, so metrics, tracing and logging can all read the same
facts without importing each other.
"""

from __future__ import annotations

import contextvars
from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject, empty

__all__ = [
    "OWN_APP",
    "STANDARD_METHODS",
    "UNMATCHED_ROUTE",
    "RequestState",
    "hex_ids",
    "method",
    "request_state",
    "route",
    "span_context",
    "user_id",
]

OWN_APP = "django_observe"
UNMATCHED_ROUTE = "__unmatched__"
# Anything else (WebDAV verbs, garbage) is reported as "_OTHER", as the HTTP semantic conventions say: a
# client must not be able to create label values or span names at will.
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})

# Attributes ObserveMiddleware sets on the request.
SPAN_CONTEXT_ATTR = "_observe_span_context"
EXCEPTION_ATTR = "_observe_exception"


def method(request: HttpRequest) -> str:
    """The request method, or ``_OTHER`` for a non-standard one."""
    return request.method if request.method in STANDARD_METHODS else "_OTHER"


def route(request: HttpRequest) -> str:
    """The matched URL pattern (``api/items/<int:pk>``), or ``__unmatched__``."""
    match = request.resolver_match
    return match.route if match is not None else UNMATCHED_ROUTE


def user_id(request: HttpRequest) -> str | None:
    """The authenticated user's pk, without loading the user if nothing else did."""
    user = request.__dict__.get("user")
    if user is None:
        return None
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:  # Django's documented lazy-object sentinel
        return None
    if getattr(user, "is_authenticated", False):
        return str(user.pk)
    return None


def span_context(request: HttpRequest) -> Any:
    """The OpenTelemetry span context of the request's SERVER span, or None (tracing off or excluded)."""
    context = request.__dict__.get(SPAN_CONTEXT_ATTR)
    return context if context is not None and context.is_valid else None


def hex_ids(context: Any) -> tuple[str, str]:
    """``(trace_id, span_id)`` of a span context as the 32- and 16-digit hex strings W3C and logs use."""
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


class RequestState:
    """Facts gathered while the request runs (that authorization allowed it), bound in ``request_state``
    by ``ObserveMiddleware``. With statement counting on, the request's state is a ``queries.QueryStats``,
    which is one of these: one object and one context variable per request.

    No ``__init__``: the class attribute is the default, so creating one per request runs no Python code.
    """

    authorized: bool = False


request_state: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar(
    "django_observe_request_state", default=None
)
