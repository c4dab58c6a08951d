"""The SERVER span of each request, started and ended by ``ObserveMiddleware``.

This replaces OpenTelemetry's contrib Django middleware, which costs more than the rest of django_observe
together (it builds the absolute URL several times, resolves the path a second time and collects a dozen
attributes per request). Here a request costs one context extraction (W3C ``traceparent``/``baggage`` by
default, whatever ``OTEL_PROPAGATORS`` configures), one span with the stable HTTP semantic-convention
attributes, and no URL building:

- name ``{method} {route}`` (``{method}`` when no URL pattern matched), kind SERVER, parent from the
  incoming headers;
- ``http.request.method``, ``url.scheme``, ``url.path`` (never the query string: tokens, reset links),
  ``http.route``, ``http.response.status_code``, ``correlation_id``, ``enduser.id`` when authenticated;
- status ERROR for 5xx and unhandled exceptions (recorded as an event); 4xx is the client's error, not ours.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..requestinfo import SPAN_CONTEXT_ATTR, STANDARD_METHODS

__all__ = ["ServerSpans"]


class _MetaGetter:
    """Reads propagation headers from ``request.META`` (``traceparent`` -> ``HTTP_TRACEPARENT``)."""

    def get(self, carrier: dict, key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if value is not None else None

    def keys(self, carrier: dict) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


class ServerSpans:
    """Start/end of request spans.

    Args:
        excluded: regular expressions searched in the request path; matching requests are not traced.
    """

    def __init__(self, excluded: Sequence[str] = ()):
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._excluded = re.compile("|".join(f"(?:{p})" for p in excluded)) if excluded else None
        self._tracer = trace.get_tracer("django_observe")
        self._extract = propagate.extract
        self._attach, self._detach = context.attach, context.detach
        self._in_context = trace.set_span_in_context
        self._getter = _MetaGetter()
        self._server = SpanKind.SERVER
        self._error = Status(StatusCode.ERROR)
        self._status, self._code = Status, StatusCode

    def start(self, request: Any) -> tuple[Any, Any] | None:
        """Open the span and make it current; None when the path is excluded."""
        path = request.path
        if self._excluded is not None and self._excluded.search(path):
            return None
        method = request.method if request.method in STANDARD_METHODS else "_OTHER"
        # _MetaGetter has the two methods of OpenTelemetry's Getter; subclassing it would import the API here.
        parent = self._extract(request.META, getter=self._getter)  # type: ignore[arg-type]
        span = self._tracer.start_span(
            method,
            context=parent,
            kind=self._server,
            attributes={"http.request.method": method, "url.scheme": request.scheme, "url.path": path},
        )
        token = self._attach(self._in_context(span, parent))
        setattr(request, SPAN_CONTEXT_ATTR, span.get_span_context())
        return span, token

    def finish(
        self,
        request: Any,
        started: tuple[Any, Any],
        status: int | None,
        correlation_id: str | None,
        user_id: str | None,
        exception: BaseException | None = None,
    ) -> None:
        """Name the span after the matched route, set the outcome, end it and restore the context."""
        span, token = started
        try:
            if span.is_recording():
                match = request.resolver_match
                if match is not None and match.route:
                    span.update_name(f"{span.name} {match.route}")
                    span.set_attribute("http.route", match.route)
                if status is not None:
                    span.set_attribute("http.response.status_code", status)
                if correlation_id:
                    span.set_attribute("correlation_id", correlation_id)
                if user_id is not None:
                    span.set_attribute("enduser.id", user_id)
                if exception is not None and (status is None or status >= 500):
                    # Http404, PermissionDenied, ... become 4xx responses: the client's error, not ours.
                    span.record_exception(exception)
                    span.set_status(self._status(self._code.ERROR, type(exception).__name__))
                elif status is not None and status >= 500:
                    span.set_status(self._error)
            span.end()
        finally:
            self._detach(token)
