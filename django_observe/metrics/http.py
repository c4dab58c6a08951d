"""Request metrics, recorded by ``ObserveMiddleware``: one histogram observation per request."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any

from ..middleware import user_id

if TYPE_CHECKING:
    from .catalogue import Catalogue

__all__ = ["RequestRecorder", "request_state"]

STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
UNMATCHED = "__unmatched__"


class RequestState:
    """Per-request facts gathered on the way (e.g. that authorization allowed the request)."""

    __slots__ = ("authorized",)

    def __init__(self) -> None:
        self.authorized = False


request_state: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar(
    "django_observe_request_state", default=None
)


class RequestRecorder:
    """Observes ``http_server_request_duration_seconds`` (and the authorized twin) with cached children.

    Args:
        catalogue: the metrics.
        excluded_apps: URL app names whose requests are not recorded (health, metrics).
    """

    def __init__(self, catalogue: Catalogue, excluded_apps: frozenset[str], exemplars: bool = False):
        self.catalogue = catalogue
        # prometheus_client keeps exemplars only in single-process mode (not in multiprocess files).
        self.exemplars = exemplars
        self.excluded_apps = excluded_apps
        self._route = catalogue.guard("http_server_request_duration_seconds", "route")
        self._children: dict[tuple[str, str, str], Any] = {}
        self._authorized_children: dict[tuple[str, str, str], Any] = {}
        self._exception_children: dict[tuple[str, str], Any] = {}
        self.active = catalogue.active_requests
        # infra.ActiveUsers when METRICS_ACTIVE_USERS is on (set by setup).
        self.active_users: Any = None

    def begin(self) -> contextvars.Token:
        self.active.inc()
        return request_state.set(RequestState())

    def end(self, request: Any, status: int, seconds: float, token: contextvars.Token) -> None:
        self.active.dec()
        state = request_state.get()
        request_state.reset(token)
        if self.active_users is not None:
            user = user_id(request)
            if user is not None:
                self.active_users.seen(user)
        match = request.resolver_match
        if match is not None and self.excluded_apps.intersection(match.app_names):
            return
        method = request.method if request.method in STANDARD_METHODS else "_OTHER"
        route = self._route(match.route) if match is not None else UNMATCHED
        key = (method, route, str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.catalogue.request_duration.labels(*key)
        exemplar = None
        if self.exemplars:
            span_context = request.__dict__.get("_observe_span_context")
            if span_context is not None and span_context.is_valid and span_context.trace_flags.sampled:
                exemplar = {
                    "trace_id": format(span_context.trace_id, "032x"),
                    "span_id": format(span_context.span_id, "016x"),
                }
        child.observe(seconds, exemplar) if exemplar else child.observe(seconds)
        if state is not None and state.authorized:
            child = self._authorized_children.get(key)
            if child is None:
                child = self._authorized_children[key] = self.catalogue.authorized_invoke_duration.labels(*key)
            child.observe(seconds)

    def exception(self, request: Any, exception: BaseException) -> None:
        match = request.resolver_match
        route = self._route(match.route) if match is not None else UNMATCHED
        key = (route, type(exception).__name__)
        child = self._exception_children.get(key)
        if child is None:
            child = self._exception_children[key] = self.catalogue.exceptions.labels(*key)
        child.inc()
