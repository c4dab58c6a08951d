"""The optional ``/metrics`` view (``METRICS_VIEW_ENABLED``), protected like the metrics port."""

from __future__ import annotations

import ipaddress

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..health.views import login_not_required
from ..runtime import get_runtime
from . import exporter

__all__ = ["metrics"]


@csrf_exempt
@login_not_required
def metrics(request: HttpRequest) -> HttpResponse:
    runtime = get_runtime()
    config, state = runtime.config, runtime.metrics
    if not config.metrics_view_enabled or state is None:
        raise Http404("metrics view is disabled")
    if request.method not in ("GET", "HEAD"):
        response = HttpResponse("method not allowed\n", status=405, content_type="text/plain")
        response["Allow"] = "GET, HEAD"
        return response
    networks = tuple(ipaddress.ip_network(n, strict=False) for n in config.metrics_allowed_ips)
    if not exporter._client_allowed(request.META.get("REMOTE_ADDR", ""), networks):
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    if not exporter._token_ok(request.headers.get("Authorization", ""), config.metrics_token):
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = "Bearer"
        return response
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    registry = exporter.make_registry(state.multiprocess_path, state.collectors)
    response = HttpResponse(encoder(registry), content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
