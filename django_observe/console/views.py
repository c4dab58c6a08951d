"""The console's pages: the overview, a kept request, an exception group (and the one stylesheet).

Every page: only for users the permission rule allows (others are sent to the login page, or refused with 403
when logged in), ``Content-Security-Policy: default-src 'self'`` (no script at all, no inline style),
``X-Frame-Options: DENY``, not cached. The pages only read (GET/HEAD).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.db.models import Max
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseNotAllowed,
    HttpResponseNotFound,
)
from django.shortcuts import render
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_protect

from . import store
from .charts import line_chart
from .models import ExceptionOccurrence, FailedJob, KeptRequest
from .recorder import PERIODS, ConsoleRecorder, active, key_hash, quiet

__all__ = ["asset", "default_rule", "exception_group", "overview", "request_detail", "trace_link"]

CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
ASSETS = {"console.css": "text/css; charset=utf-8"}
PERMISSION = "observe_console.view_console"


def trace_link(template: str | None, trace_id: str) -> str | None:
    """The trace's URL from ``CONSOLE_TRACE_URL`` (``{trace_id}`` replaced), None without a template or a trace."""
    if not template or not trace_id or not trace_id.isalnum():
        return None
    return template.replace("{trace_id}", trace_id)


def default_rule(request: HttpRequest) -> bool:
    """Superusers; staff users with the ``observe_console.view_console`` permission."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return bool(user.is_superuser or (user.is_staff and user.has_perm(PERMISSION)))


def _rule(recorder: ConsoleRecorder) -> Callable[[HttpRequest], bool]:
    rule = recorder.options.permission
    if rule is None:
        return default_rule
    return import_string(rule) if isinstance(rule, str) else rule


def _secure(response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = CSP
    response["X-Frame-Options"] = "DENY"
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "same-origin"
    response["Cache-Control"] = "no-store, private"
    return response


def console_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The console's guard: not recorded, allowed users only, security headers on every answer."""

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        request._observe_console = True  # the console does not record itself
        if request.method not in ("GET", "HEAD"):
            # The pages only read: every unsafe method is refused here, before anything is read, so there is
            # nothing to forge (CSRF) and the refusal carries the console's headers too.
            return _secure(HttpResponseNotAllowed(["GET", "HEAD"]))
        return checked(request, *args, **kwargs)

    @csrf_protect
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        recorder = active()
        if recorder is None:
            return _secure(
                HttpResponseNotFound("The console does not record in this process.", content_type="text/plain")
            )
        if not _rule(recorder)(request):
            user = getattr(request, "user", None)
            if user is None or not user.is_authenticated:
                return _secure(redirect_to_login(request.get_full_path()))
            return _secure(HttpResponseForbidden("You may not view the console.", content_type="text/plain"))
        if request.resolver_match is not None:
            request.current_app = request.resolver_match.namespace  # links stay under the prefix used
        token = quiet.set(True)  # the page's own statements are not the application's
        try:
            return _secure(view(request, recorder, *args, **kwargs))
        except Http404 as exc:  # with the console's headers too
            return _secure(HttpResponseNotFound(str(exc), content_type="text/plain"))
        finally:
            quiet.reset(token)

    guarded.csrf_exempt = True  # type: ignore[attr-defined]  # unsafe methods never reach a page (above)
    return guarded


def asset(request: HttpRequest, name: str) -> HttpResponse:
    """The console's stylesheet, served from the package (no collectstatic, no CDN)."""
    request._observe_console = True
    if name not in ASSETS:
        raise Http404(name)
    body = resources.files("django_observe.console").joinpath("static/django_observe/console", name).read_bytes()
    response = HttpResponse(body, content_type=ASSETS[name])
    response["Cache-Control"] = "public, max-age=3600"
    return _secure(response)


def _period(request: HttpRequest) -> str:
    period = request.GET.get("period", "1h")
    return period if period in PERIODS else "1h"


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@console_view
def overview(request: HttpRequest, recorder: ConsoleRecorder) -> HttpResponse:
    alias = recorder.options.database
    period = _period(request)
    now = time.time()
    span, size = PERIODS[period]
    since = now - span
    everything = store.totals(alias, "all", period, now=now)
    series = store.series(alias, "all", period, hashed_key=key_hash("all", ""), now=now)
    buckets = [row["bucket"] for row in series]
    charts = [
        line_chart("Requests per minute", buckets, [("requests/min", [r["count"] * 60 / size for r in series])]),
        line_chart(
            "Error rate (5xx, %)",
            buckets,
            [("5xx %", [100 * r["errors"] / r["count"] if r["count"] else None for r in series])],
            unit="%",
        ),
        line_chart(
            "Latency (ms)",
            buckets,
            [(name, [_ms(r[name]) for r in series]) for name in ("p50", "p95", "p99")],
            unit=" ms",
        ),
    ]
    routes = sorted(
        store.top(alias, "request", period, order="-ms", limit=50, now=now), key=lambda r: -(r["p95"] or 0)
    )[:20]
    exceptions = store.top(alias, "exception", period, order="-n", limit=10, now=now)
    last_seen = dict(
        ExceptionOccurrence.objects.using(alias)
        .filter(group__in=[e["hash"] for e in exceptions])
        .values_list("group")
        .annotate(last=Max("at"))
    )
    for row in exceptions:
        row["last_seen"] = last_seen.get(row["hash"])
    waits = {r["key"]: r for r in store.top(alias, "job_wait", period, order="-n", limit=200, now=now)}
    jobs = store.top(alias, "job", period, order="-n", limit=10, now=now)
    for row in jobs:
        wait = waits.get(row["key"])
        row["wait"] = wait["avg"] if wait else None
    tokens = {r["key"]: r for r in store.top(alias, "llm_tokens", period, order="-n", limit=100, now=now)}
    llm = store.top(alias, "llm", period, order="-n", limit=10, now=now)
    for row in llm:
        used = tokens.get(row["key"])
        row["input_tokens"] = used["count"] if used else 0
        row["output_tokens"] = int(used["value"]) if used else 0
    health_history = {r["key"]: r for r in store.top(alias, "health", period, order="key", limit=100, now=now)}
    health = []
    for value in store.values(alias, "health"):
        history = health_history.get(value.key)
        health.append({"check": value.key, "now": value.data, "updated": value.updated, "history": history})
    fresh = now - max(3 * recorder.options.flush_seconds, 60)
    servers = [
        {**value.data, "updated": value.updated, "stale": value.updated.timestamp() < fresh}
        for value in store.values(alias, "server")
        if value.updated.timestamp() >= now - 3600
    ]
    context = {
        "period": period,
        "periods": list(PERIODS),
        "total": everything,
        "rate": everything["count"] / span,
        "error_rate": 100 * everything["errors"] / everything["count"] if everything["count"] else 0.0,
        "client_errors": int(everything["value"]),
        "charts": charts,
        "routes": routes,
        "slow_requests": store.entries(KeptRequest, alias, since).order_by("-duration_ms", "-at")[:15],
        "exceptions": exceptions,
        "queries": store.top(alias, "query", period, order="-ms", limit=10, now=now),
        "repeats": store.top(alias, "n_plus_one", period, order="-n", limit=10, now=now),
        "jobs": jobs,
        "failed_jobs": store.entries(FailedJob, alias, since).order_by("-at")[:10],
        "outbound": store.top(alias, "outbound", period, order="-max_ms", limit=10, now=now),
        "caches": store.top(alias, "cache", period, order="-n", limit=10, now=now),
        "llm": llm,
        "health": health,
        "servers": sorted(servers, key=lambda s: (s["host"], s["pid"])),
        "users": store.top(alias, "user", period, order="-n", limit=10, now=now),
        "overflow": store.overflow(alias, period, now=now),
    }
    return render(request, "django_observe/console/overview.html", context)


@console_view
def request_detail(request: HttpRequest, recorder: ConsoleRecorder, correlation_id: str) -> HttpResponse:
    alias = recorder.options.database
    kept = list(KeptRequest.objects.using(alias).filter(correlation_id=correlation_id).order_by("-at")[:10])
    if not kept:
        raise Http404("no kept request with this correlation ID")
    template = recorder.options.trace_url
    for entry in kept:
        total = max(entry.duration_ms, 0.001)
        entry.events = [
            {
                "kind": kind,
                "label": label,
                "offset": offset,
                "ms": ms,
                "x": round(min(offset / total, 1) * 300, 1),
                "w": round(max(min(ms / total, 1) * 300, 1), 1),
            }
            for kind, label, offset, ms in entry.timeline
        ]
        entry.trace_link = trace_link(template, entry.trace_id)
    occurrences = ExceptionOccurrence.objects.using(alias).filter(correlation_id=correlation_id).order_by("-at")[:5]
    jobs = FailedJob.objects.using(alias).filter(correlation_id=correlation_id).order_by("-at")[:10]
    context = {"correlation_id": correlation_id, "kept": kept, "occurrences": occurrences, "jobs": jobs}
    return render(request, "django_observe/console/request.html", context)


@console_view
def exception_group(request: HttpRequest, recorder: ConsoleRecorder, group: str) -> HttpResponse:
    alias = recorder.options.database
    period = _period(request)
    occurrences = list(ExceptionOccurrence.objects.using(alias).filter(group=group).order_by("-at")[:20])
    if not occurrences:
        raise Http404("no such exception group")
    series = store.series(alias, "exception", period, hashed_key=group)
    chart = line_chart("Occurrences", [r["bucket"] for r in series], [("occurrences", [r["count"] for r in series])])
    kept = set(
        KeptRequest.objects.using(alias)
        .filter(correlation_id__in=[o.correlation_id for o in occurrences])
        .values_list("correlation_id", flat=True)
    )
    context = {
        "group": group,
        "first": occurrences[0],
        "count": sum(r["count"] for r in series),
        "period": period,
        "periods": list(PERIODS),
        "chart": chart,
        "occurrences": occurrences,
        "kept": kept,
    }
    return render(request, "django_observe/console/exception.html", context)
