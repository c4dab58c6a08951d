"""Response bodies: component statuses (``{"status": ..., "database": "connected", ...}``) and the IETF
``application/health+json`` draft."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from ..redaction import redact_text
from .runner import FAIL, PASS, WARN, CheckResult

__all__ = [
    "HEALTH_JSON",
    "error_text",
    "format_uptime",
    "health_json_body",
    "overall_status",
    "component_body",
    "wants_health_json",
]

HEALTH_JSON = "application/health+json"
STARTED_AT = time.monotonic()

# Level of detail a caller gets: "status" (only status), "public" (component words and human
# errors), "full" (public plus each check's raw error text).
STATUS, PUBLIC, FULL = "status", "public", "full"


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
_HOST = re.compile(
    r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"  # IPv4 (with a port)
    r"|\[?\b(?:[0-9a-fA-F]{0,4}:){2,7}[0-9a-fA-F]{0,4}\]?(?::\d+)?"  # IPv6
    r"|\b[\w-]+(?:\.[\w-]+)+:\d+\b"  # name.domain:port
    r"|\b[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*\.[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z]\b"  # a bare name.domain (payments-db.corp)
    r"|\bhost\s*=\s*\S+",  # libpq host=...
    re.IGNORECASE,
)


def error_text(error: str, level: str, redact_keys: Sequence[str] = ()) -> str:
    """A check's error as this caller may see it: redacted for everyone; for callers without full detail
    also cut before the first ``": "`` (lists such as migration names follow it) and without URLs or hosts."""
    text = redact_text(error, redact_keys)
    if level == FULL:
        return text
    text = text.partition(": ")[0]
    return _HOST.sub("<host>", _URL.sub("<url>", text))[:200]


def uptime_seconds() -> float:
    return time.monotonic() - STARTED_AT


def format_uptime(seconds: float) -> str:
    """``3d 14h 22m``."""
    minutes = int(seconds // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}d {hours}h {minutes}m"


def overall_status(results: Sequence[CheckResult]) -> str:
    """``unhealthy`` if a critical check fails, ``degraded`` if any other does not pass."""
    if any(r.status == FAIL and r.spec.critical for r in results):
        return "unhealthy"
    if any(r.status != PASS for r in results):
        return "degraded"
    return "healthy"


def _word(results: Sequence[CheckResult], component: str) -> str | None:
    mine = [r for r in results if r.spec.component == component]
    if not mine:
        return None
    return "disconnected" if any(r.status == FAIL for r in mine) else "connected"


def _celery_word(results: Sequence[CheckResult]) -> str | None:
    broker = _word(results, "celery_broker")
    workers = [r for r in results if r.spec.component == "celery"]
    if broker == "disconnected":
        return "disconnected"
    if workers and workers[0].status == FAIL:
        return "no workers"
    return broker or ("connected" if workers else None)


def check_entry(result: CheckResult, level: str, redact_keys: Sequence[str] = ()) -> dict[str, Any]:
    """One check as this caller may see it: its status only for callers without full detail (docs/security.md:
    no criticality, durations or observed values such as disk and memory percentages)."""
    if level != FULL:
        return {"status": result.status}
    entry: dict[str, Any] = {
        "status": result.status,
        "critical": result.spec.critical,
        "duration_ms": result.duration_ms,
    }
    if result.observation is not None:
        entry["observed_value"] = result.observation.value
        entry["observed_unit"] = result.observation.unit
    if result.error:
        entry["error"] = error_text(result.error, level, redact_keys)
        if level == FULL and result.detail:
            entry["detail"] = redact_text(result.detail, redact_keys)
    return entry


def component_body(
    results: Sequence[CheckResult], *, level: str, version: str, redact_keys: Sequence[str] = ()
) -> dict[str, Any]:
    """``{"status", "version", "uptime", "database", "redis", "celery", "checks", "error"}``."""
    status = overall_status(results)
    body: dict[str, Any] = {"status": status}
    if level == STATUS:
        return body
    seconds = uptime_seconds()
    body.update(version=version, uptime=format_uptime(seconds), uptime_seconds=round(seconds, 3))
    for key, word in (
        ("database", _word(results, "database")),
        ("redis", _word(results, "redis")),
        ("cache", _word(results, "cache")),
        ("celery", _celery_word(results)),
    ):
        if word is not None:
            body[key] = word
    body["checks"] = {r.id: check_entry(r, level, redact_keys) for r in results}
    failing = [r for r in results if r.status == FAIL and (r.spec.critical or status != "unhealthy")]
    if failing:
        body["error"] = "; ".join(dict.fromkeys(error_text(r.error, level, redact_keys) for r in failing if r.error))
    return body


_HEALTH_JSON_STATUS = {PASS: "pass", WARN: "warn", FAIL: "fail"}


def health_json_body(
    results: Sequence[CheckResult], *, level: str, version: str, service_id: str, redact_keys: Sequence[str] = ()
) -> dict[str, Any]:
    """The draft-inadarei-api-health-check-06 shape; for callers without full detail, the same facts as
    :func:`component_body` gives them (each check's status, the failures' public text)."""
    status = overall_status(results)
    root_status = {"healthy": "pass", "degraded": "warn", "unhealthy": "fail"}[status]
    body: dict[str, Any] = {"status": root_status}
    if level == STATUS:
        return body
    body.update(version=version, serviceId=service_id, description=f"health of {service_id}")
    checks: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        item: dict[str, Any] = {
            "componentId": r.spec.component_id,
            "componentType": r.spec.component_type,
            "status": _HEALTH_JSON_STATUS[r.status],
        }
        key = f"{r.spec.component}:{r.spec.measurement if r.observation is not None else 'responseTime'}"
        checks.setdefault(key, []).append(item)
        if level != FULL:
            # As check_entry: each check's status only (docs/security.md); no time, observed values or
            # durations, and the failures' public text once, in the body's "output".
            continue
        item["time"] = r.time.isoformat().replace("+00:00", "Z")
        if r.observation is not None:
            item.update(observedValue=r.observation.value, observedUnit=r.observation.unit)
        else:
            item.update(observedValue=r.duration_ms, observedUnit="ms")
        if r.error:
            item["output"] = (
                redact_text(r.detail, redact_keys)
                if level == FULL and r.detail
                else error_text(r.error, level, redact_keys)
            )
    body["checks"] = checks
    errors = [error_text(r.error, level, redact_keys) for r in results if r.status == FAIL and r.error]
    if errors:
        body["output"] = "; ".join(dict.fromkeys(errors))
    return body


def wants_health_json(accept: str) -> bool:
    """True when ``Accept`` prefers ``application/health+json``; malformed headers mean no."""
    best_q, best = -1.0, ""
    for part in accept.split(",")[:32]:
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        if media not in (HEALTH_JSON, "application/json", "application/*", "*/*"):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        if q > best_q or (q == best_q and media == HEALTH_JSON):
            best_q, best = q, media
    return best == HEALTH_JSON and best_q > 0
