"""``ObserveMiddleware``: inserted first in ``MIDDLEWARE`` by the app.

It answers the probe endpoints (``/healthz``, ``/readyz``) before any other
middleware runs, so ``ALLOWED_HOSTS`` (kubelet probes by pod IP), HTTPS
redirects and login middleware cannot turn a healthy pod into a failing probe.
Sync and async capable: under ASGI it adds no thread hop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, get_script_prefix, reverse

from .conf import get_config

__all__ = ["ObserveMiddleware"]

PROBE_NAMES = ("django_observe:healthz", "django_observe:readyz")


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


class ObserveMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
        self.bypass = get_config().health_probe_bypass
        self._probes: dict[str, Callable[..., Any]] | None = None

    def _probe(self, request: HttpRequest) -> Callable[..., Any] | None:
        if not self.bypass:
            return None
        if self._probes is None:
            self._probes = probe_routes()
        return self._probes.get(request.path_info)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        view = self._probe(request)
        if view is not None:
            return async_to_sync(view)(request) if iscoroutinefunction(view) else view(request)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        view = self._probe(request)
        if view is not None:
            return await view(request) if iscoroutinefunction(view) else view(request)
        return await self.get_response(request)
