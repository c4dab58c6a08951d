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

The documented options of opentelemetry-instrumentation-django (excluded URLs searched in the full URL,
traced request attributes, captured request/response headers with sanitising, request/response hooks)
behave as the contrib documents them. Each is compiled here once; an option left unset costs a request
nothing (``_on_start``/``_on_finish`` stay None).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from ..redaction import REDACTED, Redactor, get_redactor
from ..requestinfo import SPAN_CONTEXT_ATTR, STANDARD_METHODS

__all__ = ["ServerSpans", "request_header_attribute", "response_header_attribute"]

logger = logging.getLogger("django_observe.tracing")

RequestHook = Callable[[Any, Any], None]
ResponseHook = Callable[[Any, Any, Any], None]


def request_header_attribute(header: str) -> str:
    """``X-Forwarded-For`` -> ``http.request.header.x_forwarded_for``, as opentelemetry-util-http names it."""
    return "http.request.header." + header.lower().replace("-", "_")


def response_header_attribute(header: str) -> str:
    """``Cache-Control`` -> ``http.response.header.cache_control``, as opentelemetry-util-http names it."""
    return "http.response.header." + header.lower().replace("-", "_")


def _any_of(patterns: Sequence[str], flags: int = 0) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns), flags) if patterns else None


class _HeaderCapture:
    """Captured headers as span attributes, as ``opentelemetry.util.http.SanitizeValue`` records them:
    names matched whole and in any case, values as one-item lists, ``[REDACTED]`` for sanitised names.
    Names our redaction calls secret (Authorization, Cookie, Set-Cookie, X-Api-Key...) are always sanitised."""

    __slots__ = ("names", "redactor", "sanitize")

    def __init__(self, names: Sequence[str], sanitize: Sequence[str], redactor: Redactor):
        self.names = _any_of(names, re.IGNORECASE)
        self.sanitize = _any_of(sanitize, re.IGNORECASE)
        self.redactor = redactor

    def value(self, header: str, value: str) -> list[str]:
        if (self.sanitize is not None and self.sanitize.search(header)) or self.redactor.is_secret_key(header):
            return [REDACTED]
        return [value]

    def request(self, meta: dict) -> dict[str, list[str]]:
        names, out = self.names, dict[str, list[str]]()
        assert names is not None
        for key, value in meta.items():
            if key.startswith("HTTP_"):
                header = key[5:].replace("_", "-")
                if names.fullmatch(header):
                    out[request_header_attribute(header)] = self.value(header, value)
        return out

    def response(self, response: Any) -> dict[str, list[str]]:
        names, joined = self.names, dict[str, str]()
        assert names is not None
        for key, value in response.items():
            key = key.lower()
            joined[key] = joined[key] + "," + value if key in joined else value
        return {
            response_header_attribute(header): self.value(header, value)
            for header, value in joined.items()
            if names.fullmatch(header)
        }


class _MetaGetter:
    """Reads propagation headers from ``request.META`` (``traceparent`` -> ``HTTP_TRACEPARENT``)."""

    def get(self, carrier: dict, key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if value is not None else None

    def keys(self, carrier: dict) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


def _full_url(request: Any) -> str:
    """The URL the contrib's excluded-URL patterns are searched in; the path when the host is not allowed."""
    from django.core.exceptions import DisallowedHost

    try:
        return request.build_absolute_uri("?")
    except DisallowedHost:
        return request.path


class ServerSpans:
    """Start/end of request spans.

    Args:
        excluded: regular expressions searched in the request path; matching requests are not traced.
        url_excluded: regular expressions searched in the full URL (``request.build_absolute_uri("?")``:
            scheme, host and path), as the contrib's ``OTEL_PYTHON_DJANGO_EXCLUDED_URLS``.
        url_excluded_check: another ``url -> bool`` test of the full URL (an adopted contrib ``ExcludeList``).
        traced_request_attrs: request attributes copied onto the span as strings.
        request_headers, response_headers: regular expressions of header names captured on the span.
        sanitize_headers: regular expressions of captured header names recorded as ``[REDACTED]``.
        secret_keys: extra secret key names (``LOG_REDACT_KEYS``); secret-named headers are always sanitised.
        request_hooks: called as ``hook(span, request)`` once the span is started and current.
        response_hooks: called as ``hook(span, request, response)`` before the span ends.
        tracer_provider: default: the global one.
    """

    def __init__(
        self,
        excluded: Sequence[str] = (),
        *,
        url_excluded: Sequence[str] = (),
        url_excluded_check: Callable[[str], bool] | None = None,
        traced_request_attrs: Sequence[str] = (),
        request_headers: Sequence[str] = (),
        response_headers: Sequence[str] = (),
        sanitize_headers: Sequence[str] = (),
        secret_keys: Sequence[str] = (),
        request_hooks: Sequence[RequestHook] = (),
        response_hooks: Sequence[ResponseHook] = (),
        tracer_provider: Any = None,
    ):
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._excluded = _any_of(excluded)
        url_pattern = _any_of(url_excluded)
        checks = [c for c in (url_pattern.search if url_pattern else None, url_excluded_check) if c is not None]
        self._url_excluded: Callable[[str], Any] | None = (
            None if not checks else checks[0] if len(checks) == 1 else (lambda url: any(c(url) for c in checks))
        )
        self._traced_attrs = tuple(traced_request_attrs)
        redactor = get_redactor(secret_keys)
        self._request_headers = _HeaderCapture(request_headers, sanitize_headers, redactor) if request_headers else None
        self._response_headers = (
            _HeaderCapture(response_headers, sanitize_headers, redactor) if response_headers else None
        )
        self._request_hooks = tuple(request_hooks)
        self._response_hooks = tuple(response_hooks)
        # Only the options that are set cost anything per request.
        self._on_start = self._start_options if (self._traced_attrs or self._request_headers or request_hooks) else None
        self._on_finish = self._finish_options if (self._response_headers or response_hooks) else None
        self._tracer = trace.get_tracer("django_observe", tracer_provider=tracer_provider)
        self._extract = propagate.extract
        # The headers the configured propagators read (traceparent, tracestate, baggage by default): a request
        # with none of them has no remote parent, and skips the extraction: it gets the empty context
        # extract() would return (a root span, whatever span is current).
        fields = propagate.get_global_textmap().fields
        self._carrier_keys = tuple("HTTP_" + f.upper().replace("-", "_") for f in fields) if fields else None
        self._no_parent = context.Context()
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
        if self._url_excluded is not None and self._url_excluded(_full_url(request)):
            return None
        method = request.method if request.method in STANDARD_METHODS else "_OTHER"
        # _MetaGetter has the two methods of OpenTelemetry's Getter; subclassing it would import the API here.
        meta = request.META
        keys = self._carrier_keys
        if keys is None or any(key in meta for key in keys):
            parent = self._extract(meta, getter=self._getter)  # type: ignore[arg-type]
        else:
            parent = self._no_parent
        span = self._tracer.start_span(
            method if method != "_OTHER" else "HTTP",
            context=parent,
            kind=self._server,
            attributes={"http.request.method": method, "url.scheme": request.scheme, "url.path": path},
        )
        token = self._attach(self._in_context(span, parent))
        setattr(request, SPAN_CONTEXT_ATTR, span.get_span_context())
        if self._on_start is not None:
            self._on_start(span, request)
        return span, token

    def _start_options(self, span: Any, request: Any) -> None:
        if span.is_recording():
            for name in self._traced_attrs:
                value = getattr(request, name, None)
                if value is not None:
                    span.set_attribute(name, str(value))
            if self._request_headers is not None:
                span.set_attributes(self._request_headers.request(request.META))
        for hook in self._request_hooks:
            try:
                hook(span, request)
            except Exception:
                logger.exception("tracing_request_hook_failed")

    def _finish_options(self, span: Any, request: Any, response: Any) -> None:
        if response is not None and self._response_headers is not None and span.is_recording():
            span.set_attributes(self._response_headers.response(response))
        for hook in self._response_hooks:
            try:
                hook(span, request, response)
            except Exception:
                logger.exception("tracing_response_hook_failed")

    def finish(
        self,
        request: Any,
        started: tuple[Any, Any],
        status: int | None,
        correlation_id: str | None,
        user_id: str | None,
        exception: BaseException | None = None,
        response: Any = None,
    ) -> None:
        """Name the span after the matched route, set the outcome, end it and restore the context.

        ``response`` is None when the view raised through every middleware.
        """
        span, token = started
        try:
            if span.is_recording():
                match = request.resolver_match
                if match is not None and match.route:
                    if span.name != "HTTP":  # a non-standard method keeps the bare name, as in the contrib
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
            if self._on_finish is not None:
                self._on_finish(span, request, response)
            span.end()
        finally:
            self._detach(token)
