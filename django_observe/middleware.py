"""``ObserveMiddleware``: inserted first in ``MIDDLEWARE`` by the app.

Per request it

1. answers the probe endpoints (``/healthz``, ``/readyz``) before any other middleware runs, so
   ``ALLOWED_HOSTS`` (kubelet probes by pod IP), HTTPS redirects and login middleware cannot turn a
   healthy pod into a failing probe;
2. binds the correlation ID (an accepted incoming ``X-Correlation-ID``/``X-Request-ID``, or a new one)
   for the request's whole life and returns it in the response header;
3. records the request metrics (one histogram observation) and logs one line at the end
   (``django_observe.request``), unless ``LOG_REQUESTS_SAMPLE`` drops a successful one.

Sync and async capable: under ASGI it adds no thread hop.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, get_script_prefix, reverse
from django.utils.functional import SimpleLazyObject, empty

from . import queries
from .conf import get_config
from .correlation import CorrelationPolicy, bind_correlation_id, reset_correlation_id
from .logging.sampling import RequestSampler

__all__ = ["ObserveMiddleware"]

PROBE_NAMES = ("django_observe:healthz", "django_observe:readyz")
OWN_APP = "django_observe"
UNMATCHED_ROUTE = "__unmatched__"

request_logger = logging.getLogger("django_observe.request")


def probe_routes() -> dict[str, Callable[..., Any]]:
    """``path_info`` -> view for the probe endpoints, wherever the project mounted them."""
    from .health import views

    views_by_name = {"django_observe:healthz": views.healthz, "django_observe:readyz": views.readyz}
    prefix = get_script_prefix()
    routes = {}
    for name in PROBE_NAMES:
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        if url.startswith(prefix):
            url = "/" + url[len(prefix) :]
        routes[url] = views_by_name[name]
    return routes


def user_id(request: HttpRequest) -> str | None:
    """The authenticated user's pk, without loading the user if nothing else did."""
    user = request.__dict__.get("user")
    if user is None:
        return None
    if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
        return None
    if getattr(user, "is_authenticated", False):
        return str(user.pk)
    return None


def _route(request: HttpRequest) -> str:
    match = request.resolver_match
    return match.route if match is not None else UNMATCHED_ROUTE


def _release(token: Any) -> None:
    try:
        reset_correlation_id(token)
    except ValueError:  # closed from another context: just clear it
        bind_correlation_id(None)


class ObserveMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        config = get_config()
        self.bypass = config.health_probe_bypass
        self._probes: dict[str, Callable[..., Any]] | None = None
        self.policy = CorrelationPolicy(config.correlation_id_pattern, config.correlation_id_prefix)
        self.meta_keys = tuple("HTTP_" + name.upper().replace("-", "_") for name in config.correlation_headers)
        self.response_header = config.correlation_headers[0]
        self.log_requests = config.log_requests
        self.sampler = RequestSampler.from_config(config.log_requests_sample, config.log_slow_request_ms)
        # The platform flavours have a place for these two; the default line stays as it was.
        self.flavor_fields = config.log_format == "json" and config.log_json_flavor != "default"
        from .metrics.setup import get_state

        metrics = get_state()
        self.recorder = metrics.recorder if metrics is not None else None
        from .tracing.setup import get_server_spans

        self.spans = get_server_spans()

    # --- the three jobs

    def _probe(self, request: HttpRequest) -> Callable[..., Any] | None:
        if not self.bypass:
            return None
        if self._probes is None:
            self._probes = probe_routes()
        return self._probes.get(request.path_info)

    def _correlation_id(self, request: HttpRequest) -> str:
        meta = request.META
        for key in self.meta_keys:
            value = meta.get(key)
            if value is not None:
                # The first header present decides; an invalid value is replaced, never echoed or logged.
                return self.policy.accept(value) or self.policy.new()
        return self.policy.new()

    def _finish(
        self, request: HttpRequest, response: HttpResponse, start: int, metrics_token: Any, query_token: Any
    ) -> None:
        stats = queries.end(query_token)
        if self.recorder is not None:
            seconds = (time.perf_counter_ns() - start) / 1e9
            self.recorder.end(request, response.status_code, seconds, metrics_token, stats)
        header = self.response_header
        response[header] = request.correlation_id
        exposed = response.get("Access-Control-Expose-Headers")
        if not exposed:
            response["Access-Control-Expose-Headers"] = header
        elif header.lower() not in (h.strip().lower() for h in exposed.split(",")):
            response["Access-Control-Expose-Headers"] = f"{exposed}, {header}"
        if stats is not None and stats.repeated:
            queries.log_repeated(stats, method=request.method, route=_route(request))
        if self.log_requests:
            self._log(request, response, start, stats)

    def _log(self, request: HttpRequest, response: HttpResponse, start: int, stats: Any) -> None:
        status = response.status_code
        match = request.resolver_match
        if match is not None and status < 400 and OWN_APP in match.app_names:
            return  # successful health and metrics calls are noise
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        if not request_logger.isEnabledFor(level):
            return
        route = _route(request)
        duration_ms = round((time.perf_counter_ns() - start) / 1e6, 2)
        if self.sampler is not None and not self.sampler.keep(request.path, route, status, duration_ms):
            return
        extra: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "route": route,
            "status": status,
            "duration_ms": duration_ms,
        }
        if stats is not None:
            extra["db_queries"] = stats.count
            extra["db_ms"] = stats.milliseconds
        uid = user_id(request)
        if uid is not None:
            extra["user_id"] = uid
        span_context = request.__dict__.get("_observe_span_context")
        if span_context is not None and span_context.is_valid:
            extra["trace_id"] = format(span_context.trace_id, "032x")
            extra["span_id"] = format(span_context.span_id, "016x")
            if self.flavor_fields:
                extra["trace_sampled"] = span_context.trace_flags.sampled
        if self.flavor_fields:
            agent = request.META.get("HTTP_USER_AGENT")
            if agent:
                extra["user_agent"] = agent[:512]
        exception = request.__dict__.get("_observe_exception")
        request_logger.log(
            level,
            f"{request.method} {request.path}",
            extra=extra,
            exc_info=(type(exception), exception, exception.__traceback__) if exception is not None else None,
        )

    def _end_span(self, request: HttpRequest, span: Any, status: int | None, exc: BaseException | None = None) -> None:
        exception = exc if exc is not None else request.__dict__.get("_observe_exception")
        self.spans.finish(request, span, status, request.correlation_id, user_id(request), exception)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        request._observe_exception = exception  # logged with the request line; Django still handles it
        if self.recorder is not None:
            self.recorder.exception(request, exception)

    # --- sync and async entry points

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        view = self._probe(request)
        if view is not None:
            return async_to_sync(view)(request) if iscoroutinefunction(view) else view(request)
        start = time.perf_counter_ns()
        request.correlation_id = self._correlation_id(request)
        token = bind_correlation_id(request.correlation_id)
        span = self.spans.start(request) if self.spans is not None else None
        metrics_token = self.recorder.begin() if self.recorder is not None else None
        query_token = queries.begin()
        try:
            response = self.get_response(request)
            self._finish(request, response, start, metrics_token, query_token)
        except BaseException as exc:
            queries.end(query_token)
            if span is not None:
                self._end_span(request, span, None, exc)
            reset_correlation_id(token)
            raise
        if span is not None:
            self._end_span(request, span, response.status_code)
        # Keep the ID bound until the server closes the response (after Django's own django.request
        # line and any streaming), then reset it: WSGI threads serve one request after another.
        response._resource_closers.append(functools.partial(_release, token))
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        view = self._probe(request)
        if view is not None:
            return await view(request) if iscoroutinefunction(view) else view(request)
        start = time.perf_counter_ns()
        request.correlation_id = self._correlation_id(request)
        # Under ASGI each request runs in its own asyncio task, whose context ends with it: the ID
        # cannot leak into another request, and Django's own django.request line still carries it.
        bind_correlation_id(request.correlation_id)
        span = self.spans.start(request) if self.spans is not None else None
        metrics_token = self.recorder.begin() if self.recorder is not None else None
        query_token = queries.begin()
        try:
            response = await self.get_response(request)
            self._finish(request, response, start, metrics_token, query_token)
        except BaseException as exc:
            if span is not None:
                self._end_span(request, span, None, exc)
            raise
        if span is not None:
            self._end_span(request, span, response.status_code)
        return response
