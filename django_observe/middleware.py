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

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, get_script_prefix, reverse

from .conf import loaded
from .correlation import correlation_id_var
from .health import views as health_views
from .integrations.sqlcomment import SqlComments
from .logging.quiet import PROBE_ATTR
from .logging.request_line import RequestLine
from .queries import QueryStats, log_repeated
from .requestinfo import EXCEPTION_ATTR, RequestState, request_state, route, user_id
from .runtime import get_runtime

__all__ = ["ObserveMiddleware"]

# URL name -> (the view a sync worker calls, the view an async one awaits or calls).
PROBE_VIEWS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "django_observe:healthz": (health_views.healthz, health_views.healthz),
    "django_observe:readyz": (health_views.readyz_sync, health_views.readyz),
}


def probe_routes(is_async: bool = False) -> dict[str, Callable[..., Any]]:
    """``path_info`` -> view for the probe endpoints, wherever the project mounted them, in the worker's mode."""
    prefix = get_script_prefix()
    routes = {}
    for name, views in PROBE_VIEWS.items():
        view = views[1] if is_async else views[0]
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
        correlation_id_var.reset(token)
    except ValueError:  # closed from another context: just clear it
        correlation_id_var.set(None)


_EXPOSE = "access-control-expose-headers"
_clock = time.perf_counter_ns


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
        # None: the probe routes, resolved on the first request (the URLconf is loaded by then); {}: no bypass.
        self._probes: dict[str, Callable[..., Any]] | None = None if config.health_probe_bypass else {}
        self.accept = runtime.correlation.accept
        self.new_id = runtime.correlation.new
        self.meta_keys = tuple("HTTP_" + name.upper().replace("-", "_") for name in config.correlation_headers)
        self.response_header = config.correlation_headers[0]
        self._header_key = self.response_header.lower()
        self.request_line = RequestLine.from_config(loaded(config))
        self.recorder = runtime.metrics.recorder if runtime.metrics is not None else None
        self.spans = runtime.tracing.spans if runtime.tracing is not None else None
        # What the request gathers (authorization, the statements it runs) is one object in one context
        # variable: statement counts when they are on, else a plain state when the metrics want it.
        self.counting = runtime.queries is not None and runtime.queries.enabled
        self.new_state: Callable[[], RequestState] | None = (
            runtime.queries.new if self.counting else RequestState if self.recorder is not None else None  # type: ignore[union-attr]
        )
        self.sql_comments = runtime.sql_comments
        self.console = runtime.console

    # --- the three jobs

    def _probe(self, request: HttpRequest) -> Callable[..., Any] | None:
        probes = self._probes
        if probes is None:
            probes = self._probes = probe_routes(self.is_async)
        return probes.get(request.path_info) if probes else None

    def _correlation_id(self, request: HttpRequest) -> str:
        meta = request.META
        for key in self.meta_keys:
            value = meta.get(key)
            if value is not None:
                # The first header present decides; an invalid value is replaced, never echoed or logged.
                return self.accept(value) or self.new_id()
        return self.new_id()

    def _finish(
        self,
        request: HttpRequest,
        response: HttpResponse,
        start: int,
        correlation_id: str,
        state: RequestState | None,
    ) -> None:
        stats: QueryStats | None = state if self.counting else None  # type: ignore[assignment]
        end = _clock()
        elapsed = end - start
        if self.recorder is not None:
            self.recorder.end(request, response.status_code, elapsed / 1e9, state, stats)
        if self.console is not None:
            self.console.end_request(request, response.status_code, elapsed, correlation_id)
        # The correlation ID header. ResponseHeaders.__setitem__ checks the name's and the value's charset and
        # line breaks; the name is checked at start-up and no ID the policy accepts or makes has a space or a
        # control character, so an ASCII one is printable and the pair goes straight to the store
        # (tests/unit/test_private_apis.py fails if Django changes it).
        header = self.response_header
        store = response.headers._store
        if correlation_id.isascii():
            store[self._header_key] = (header, correlation_id)
        else:
            response[header] = correlation_id
        # Browsers read Access-Control-Expose-Headers only on cross-origin requests, which send Origin.
        if "HTTP_ORIGIN" in request.META:
            exposed = store.get(_EXPOSE)
            if exposed is None:
                store[_EXPOSE] = ("Access-Control-Expose-Headers", header)
            elif header.lower() not in (h.strip().lower() for h in exposed[1].split(",")):
                response["Access-Control-Expose-Headers"] = f"{exposed[1]}, {header}"
        if stats is not None and stats.repeated:
            log_repeated(stats, method=request.method, route=route(request))
        if self.request_line is not None:
            self.request_line.write(request, response, elapsed, stats, correlation_id, end)

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
        probes = self._probes
        if probes is None:
            probes = self._probes = probe_routes(False)
        if probes:
            view = probes.get(request.path_info)
            if view is not None:
                setattr(request, PROBE_ATTR, True)  # Django's own line of a failing probe is a duplicate
                return view(request)
        start = _clock()
        correlation_id = request.correlation_id = self._correlation_id(request)
        token = correlation_id_var.set(correlation_id)
        span = self.spans.start(request) if self.spans is not None else None
        state = state_token = None
        if self.new_state is not None:
            state = self.new_state()
            state_token = request_state.set(state)
        if self.recorder is not None:
            self.recorder.begin()
        if self.console is not None:
            self.console.begin()
        comment_token = self.sql_comments.begin(request) if self.sql_comments is not None else None
        response = None
        try:
            response = self.get_response(request)
            if state_token is not None:
                request_state.reset(state_token)
                state_token = None
            self._finish(request, response, start, correlation_id, state)
        except BaseException as exc:
            if response is None and self.recorder is not None:
                self.recorder.abandon()  # once there is a response, _finish has ended it
            if response is None and self.console is not None:
                self.console.abandon()
            if state_token is not None:
                request_state.reset(state_token)
            if comment_token is not None:
                SqlComments.end(comment_token)
            if span is not None:
                self._end_span(request, span, None, exc)
            correlation_id_var.reset(token)
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
        if self._probes != {}:
            view = self._probe(request)
            if view is not None:
                setattr(request, PROBE_ATTR, True)
                return await view(request) if iscoroutinefunction(view) else view(request)
        start = _clock()
        correlation_id = request.correlation_id = self._correlation_id(request)
        # Under ASGI each request runs in its own asyncio task, whose context ends with it: the ID
        # cannot leak into another request, and Django's own django.request line still carries it.
        correlation_id_var.set(correlation_id)
        span = self.spans.start(request) if self.spans is not None else None
        state = None
        if self.new_state is not None:
            state = self.new_state()
            request_state.set(state)  # the request's own asyncio task, as the correlation ID
        if self.recorder is not None:
            self.recorder.begin()
        if self.console is not None:
            self.console.begin()
        if self.sql_comments is not None:
            self.sql_comments.begin(request)  # the request's own asyncio task: its context ends with it
        response = None
        try:
            response = await self.get_response(request)
            self._finish(request, response, start, correlation_id, state)
        except BaseException as exc:
            if response is None and self.recorder is not None:
                self.recorder.abandon()  # a cancelled request (its client went away) included
            if response is None and self.console is not None:
                self.console.abandon()
            if span is not None:
                self._end_span(request, span, None, exc)
            raise
        if span is not None:
            self._end_span(request, span, response)
        return response
