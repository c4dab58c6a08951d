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
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, get_script_prefix, reverse

from .correlation import bind_correlation_id, reset_correlation_id
from .health import views as health_views
from .logging.request_line import RequestLine
from .queries import QueryCounter, QueryStats, log_repeated
from .requestinfo import EXCEPTION_ATTR, route, user_id
from .runtime import get_runtime
from .sqlcomment import SqlComments

__all__ = ["ObserveMiddleware"]

PROBE_VIEWS: dict[str, Callable[..., Any]] = {
    "django_observe:healthz": health_views.healthz,
    "django_observe:readyz": health_views.readyz,
}


def probe_routes() -> dict[str, Callable[..., Any]]:
    """``path_info`` -> view for the probe endpoints, wherever the project mounted them."""
    prefix = get_script_prefix()
    routes = {}
    for name, view in PROBE_VIEWS.items():
        try:
            url = reverse(name)
        except NoReverseMatch:
            continue
        if url.startswith(prefix):
            url = "/" + url[len(prefix) :]
        routes[url] = view
    return routes


def _release(token: Any) -> None:
    try:
        reset_correlation_id(token)
    except ValueError:  # closed from another context: just clear it
        bind_correlation_id(None)


class ObserveMiddleware:
    """Probes, correlation ID, request metrics, request span and request line (see the module docstring).

    Its collaborators come from the runtime current when Django builds the middleware chain.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        runtime = get_runtime()
        config = runtime.config
        self.bypass = config.health_probe_bypass
        self._probes: dict[str, Callable[..., Any]] | None = None
        self.policy = runtime.correlation
        self.meta_keys = tuple("HTTP_" + name.upper().replace("-", "_") for name in config.correlation_headers)
        self.response_header = config.correlation_headers[0]
        self.request_line = RequestLine.from_config(config)
        self.recorder = runtime.metrics.recorder if runtime.metrics is not None else None
        self.spans = runtime.tracing.spans if runtime.tracing is not None else None
        self.queries = runtime.queries if runtime.queries is not None else QueryCounter(enabled=False)
        self.sql_comments = runtime.sql_comments

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
        stats: QueryStats | None = QueryCounter.end(query_token)
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
            log_repeated(stats, method=request.method, route=route(request))
        if self.request_line is not None:
            self.request_line.write(request, response, start, stats)

    def _end_span(
        self, request: HttpRequest, span: Any, response: HttpResponse | None, exc: BaseException | None = None
    ) -> None:
        exception = exc if exc is not None else request.__dict__.get(EXCEPTION_ATTR)
        assert self.spans is not None  # only called when a span was started
        status = response.status_code if response is not None else None
        self.spans.finish(request, span, status, request.correlation_id, user_id(request), exception, response)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        setattr(request, EXCEPTION_ATTR, exception)  # logged with the request line; Django still handles it
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
        query_token = self.queries.begin()
        comment_token = self.sql_comments.begin(request) if self.sql_comments is not None else None
        try:
            response = self.get_response(request)
            self._finish(request, response, start, metrics_token, query_token)
        except BaseException as exc:
            QueryCounter.end(query_token)
            if comment_token is not None:
                SqlComments.end(comment_token)
            if span is not None:
                self._end_span(request, span, None, exc)
            reset_correlation_id(token)
            raise
        if comment_token is not None:
            SqlComments.end(comment_token)
        if span is not None:
            self._end_span(request, span, response)
        # Keep the ID bound until the server closes the response (after Django's own django.request
        # line and any streaming), then reset it: WSGI threads serve one request after another.
        # _resource_closers is private, but it is the only per-response hook HttpResponse.close() runs
        # (request_finished has no response); tests/unit/test_private_apis.py fails if Django changes it.
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
        query_token = self.queries.begin()
        if self.sql_comments is not None:
            self.sql_comments.begin(request)  # the request's own asyncio task: its context ends with it
        try:
            response = await self.get_response(request)
            self._finish(request, response, start, metrics_token, query_token)
        except BaseException as exc:
            if span is not None:
                self._end_span(request, span, None, exc)
            raise
        if span is not None:
            self._end_span(request, span, response)
        return response
