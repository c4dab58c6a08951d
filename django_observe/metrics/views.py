"""The optional ``/metrics`` view (``METRICS_VIEW_ENABLED``), protected like the metrics port."""

from __future__ import annotations

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
    access = exporter.Access.build(config.metrics_token, config.metrics_allowed_ips)
    refused = access.refusal(request.META.get("REMOTE_ADDR", ""), request.headers.get("Authorization", ""))
    if refused == 403:
        return HttpResponse("forbidden\n", status=403, content_type="text/plain")
    if refused == 401:
        response = HttpResponse("unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = "Bearer"
        return response
    body, content_type = exporter.render(state.multiprocess_path, state.collectors, request.headers.get("Accept", ""))
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
