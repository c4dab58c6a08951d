"""``/healthz`` (liveness), ``/readyz`` (readiness), ``/health`` and ``/health/<id>`` (details)."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from ..runtime import get_runtime
from ..security import bearer_token_matches
from . import drain, render
from .render import FULL, PUBLIC, STATUS
from .runner import CheckResult, HealthRunner, runner_of

try:  # Django 5.1+
    from django.contrib.auth.decorators import login_not_required
except ImportError:  # pragma: no cover - Django < 5.1 has no LoginRequiredMiddleware

    def login_not_required(view):
        return view


__all__ = ["health", "health_check_detail", "healthz", "readyz", "readyz_sync"]

ALLOWED = ("GET", "HEAD")


def _response(body: dict[str, Any], status: int = 200, content_type: str = "application/json") -> HttpResponse:
    response = HttpResponse(
        json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":")),
        status=status,
        content_type=content_type,
    )
    response["Cache-Control"] = "no-store"
    response["Vary"] = "Accept, Authorization, Cookie"
    return response


def _method_not_allowed() -> HttpResponse:
    response = _response({"status": "error", "error": "Method not allowed"}, 405)
    response["Allow"] = ", ".join(ALLOWED)
    return response


def _token_matches(request: HttpRequest) -> bool:
    config = get_runtime().config
    header = request.headers.get("Authorization", "")
    return bool(config.health_token and header and bearer_token_matches(header, config.health_token))


def _is_staff(user: Any) -> bool:
    return bool(getattr(user, "is_active", False) and getattr(user, "is_staff", False))


async def is_authorized(request: HttpRequest) -> bool:
    """A valid ``Authorization: Bearer <HEALTH_TOKEN>`` or an active staff session."""
    if _token_matches(request):
        return True
    auser = getattr(request, "auser", None)
    return auser is not None and _is_staff(await auser())


def _is_authorized_sync(request: HttpRequest) -> bool:
    """:func:`is_authorized` in a sync view (``request.user`` exists once Django's auth middleware ran)."""
    return _token_matches(request) or _is_staff(getattr(request, "user", None))


def _detail_level(authorized: bool) -> str:
    policy = get_runtime().config.health_details
    if policy == "never":
        return STATUS
    if authorized:
        return FULL
    return PUBLIC if policy == "always" else STATUS


def _runner(health: object) -> HealthRunner:
    runner = runner_of(health)
    if runner is None:  # the checks could not be built: manage.py check reports why
        raise RuntimeError("django_observe health checks are not configured (see manage.py check)")
    return runner


def _excluded(request: HttpRequest, authorized: bool) -> set[str]:
    """``?exclude=a,b``: honoured for authorized callers only (anyone else would steer readiness)."""
    if not authorized:
        return set()
    return {part.strip() for value in request.GET.getlist("exclude") for part in value.split(",") if part.strip()}


async def _report(request: HttpRequest, *, critical_only: bool) -> HttpResponse:
    runner = _runner(get_runtime().health)
    authorized = await is_authorized(request)
    # Readiness answers from the last results while one refresh runs: a hung dependency never holds the
    # pollers, so it never holds the workers liveness needs.
    selected = runner.select(critical_only=critical_only, exclude=_excluded(request, authorized))
    results = await runner.run(selected, serve_stale=critical_only)
    return _report_response(request, results, authorized)


def _report_sync(request: HttpRequest, *, critical_only: bool) -> HttpResponse:
    """:func:`_report` in a sync worker, without an event loop unless a check must be waited for."""
    runner = _runner(get_runtime().health)
    authorized = _is_authorized_sync(request)
    selected = runner.select(critical_only=critical_only, exclude=_excluded(request, authorized))
    results = runner.run_sync(selected, serve_stale=critical_only)
    return _report_response(request, results, authorized)


def _report_response(request: HttpRequest, results: list[CheckResult], authorized: bool) -> HttpResponse:
    level = _detail_level(authorized)
    config = get_runtime().config
    keys = config.log_redact_keys + config.secret_key_names + config.log_redact_paths
    status = render.overall_status(results)
    code = 503 if status == "unhealthy" else 200
    if render.wants_health_json(request.headers.get("Accept", "")):
        body = render.health_json_body(
            results, level=level, version=config.service_version, service_id=config.service_name, redact_keys=keys
        )
        return _response(body, code, render.HEALTH_JSON)
    return _response(
        render.component_body(results, level=level, version=config.service_version, redact_keys=keys), code
    )


@csrf_exempt
@login_not_required
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: 200 while the process serves. Touches no dependency."""
    if request.method not in ALLOWED:
        return _method_not_allowed()
    return _response({"status": "healthy"})


def _not_ready(request: HttpRequest) -> HttpResponse | None:
    if request.method not in ALLOWED:
        return _method_not_allowed()
    if drain.is_draining():
        return _response({"status": "unhealthy", "error": "Shutting down"}, 503)
    return None


@csrf_exempt
@login_not_required
async def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: the critical checks; 503 when one fails or the process is draining."""
    refused = _not_ready(request)
    return refused if refused is not None else await _report(request, critical_only=True)


@csrf_exempt
@login_not_required
def readyz_sync(request: HttpRequest) -> HttpResponse:
    """:func:`readyz` for a sync worker (the middleware answers ``/readyz`` with it under WSGI): the same
    answer without a thread and an event loop per probe."""
    refused = _not_ready(request)
    return refused if refused is not None else _report_sync(request, critical_only=True)


@csrf_exempt
@login_not_required
async def health(request: HttpRequest) -> HttpResponse:
    """Every check, as component statuses (or health+json); 503 when a critical check fails."""
    if request.method not in ALLOWED:
        return _method_not_allowed()
    return await _report(request, critical_only=False)


@csrf_exempt
@login_not_required
async def health_check_detail(request: HttpRequest, check_id: str) -> HttpResponse:
    """One check by id (``/health/database``); 503 when it fails, 404 for an unknown id."""
    if request.method not in ALLOWED:
        return _method_not_allowed()
    runtime = get_runtime()
    runner = _runner(runtime.health)
    authorized = await is_authorized(request)
    spec = runner.specs.get(check_id)
    if spec is None:
        body: dict[str, Any] = {"status": "error", "error": "Unknown health check"}
        if authorized:
            body["checks"] = sorted(runner.specs)
        return _response(body, 404)
    (result,) = await runner.run([spec])
    level = _detail_level(authorized)
    keys = runtime.config.log_redact_keys + runtime.config.secret_key_names + runtime.config.log_redact_paths
    code = 503 if result.status == "fail" else 200
    if render.wants_health_json(request.headers.get("Accept", "")):
        body = render.health_json_body(
            [result],
            level=level,
            version=runtime.config.service_version,
            service_id=runtime.config.service_name,
            redact_keys=keys,
        )
        body["status"] = {"pass": "pass", "warn": "warn", "fail": "fail"}[result.status]
        return _response(body, code, render.HEALTH_JSON)
    detail: dict[str, Any] = {"id": check_id, "status": result.status}
    if level != STATUS:
        detail.update(render.check_entry(result, level, keys))
    return _response(detail, code)
