import datetime
import types

import pytest

from django_observe.health import render
from django_observe.health.checks import Observation
from django_observe.health.registry import CheckSpec
from django_observe.health.runner import CheckResult

NOW = datetime.datetime(2026, 3, 5, 14, 30, tzinfo=datetime.UTC)


def result(check_id, status="pass", critical=True, error=None, detail=None, observation=None):
    check = types.SimpleNamespace(alias="default") if check_id == "database" else object()
    return CheckResult(CheckSpec(check_id, check, critical, 2.0), status, 1.5, NOW, error, detail, observation)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0d 0h 0m"), (59, "0d 0h 0m"), (3600 * 86 + 22 * 60 + 5, "3d 14h 22m")]
)
def test_format_uptime(seconds, text):
    assert render.format_uptime(seconds) == text


def test_overall_status():
    assert render.overall_status([result("database")]) == "healthy"
    assert render.overall_status([result("database"), result("disk", "warn", critical=False)]) == "degraded"
    assert render.overall_status([result("celery", "fail", critical=False)]) == "degraded"
    assert render.overall_status([result("database", "fail")]) == "unhealthy"


def test_component_body_unhealthy_names_the_component():
    results = [
        result("database", "fail", error="Cannot connect to PostgreSQL", detail="OperationalError: host=db"),
        result("redis"),
    ]
    body = render.component_body(results, level=render.PUBLIC, version="1.0.0")
    assert body["status"] == "unhealthy"
    assert body["database"] == "disconnected"
    assert body["redis"] == "connected"
    assert body["error"] == "Cannot connect to PostgreSQL"
    assert body["checks"]["database"]["status"] == "fail"
    assert "detail" not in body["checks"]["database"]
    full = render.component_body(results, level=render.FULL, version="1.0.0")
    assert full["checks"]["database"]["detail"] == "OperationalError: host=db"
    assert render.component_body(results, level=render.STATUS, version="1.0.0") == {"status": "unhealthy"}


def test_celery_word():
    assert (
        render.component_body([result("celery_broker"), result("celery", "fail", False)], level="public", version="x")[
            "celery"
        ]
        == "no workers"
    )
    assert (
        render.component_body([result("celery_broker", "fail")], level="public", version="x")["celery"]
        == "disconnected"
    )


def test_health_json_shape():
    results = [
        result("database"),
        result("database:replica", "fail", error="Cannot connect to PostgreSQL"),
        result("disk", observation=Observation(42.0, "percent"), critical=False),
    ]
    body = render.health_json_body(results, level=render.FULL, version="1", service_id="svc")
    assert body["status"] == "fail"
    assert [item["componentId"] for item in body["checks"]["database:responseTime"]] == ["default", "replica"]
    assert body["checks"]["database:responseTime"][1]["output"] == "Cannot connect to PostgreSQL"
    assert body["checks"]["disk:utilization"][0]["observedValue"] == 42.0
    assert body["checks"]["disk:utilization"][0]["time"] == "2026-03-05T14:30:00Z"


def test_health_json_for_callers_without_full_detail_gives_each_checks_status_only():
    """As the JSON body (docs/security.md): no observed values, durations or times per check."""
    results = [
        result("database"),
        result("database:replica", "fail", error="Cannot connect to PostgreSQL"),
        result("disk", observation=Observation(42.0, "percent"), critical=False),
    ]
    body = render.health_json_body(results, level=render.PUBLIC, version="1", service_id="svc")
    items = [item for items in body["checks"].values() for item in items]
    assert {frozenset(item) for item in items} == {frozenset({"componentId", "componentType", "status"})}
    assert [item["status"] for item in body["checks"]["database:responseTime"]] == ["pass", "fail"]
    assert body["checks"]["disk:utilization"][0]["status"] == "pass"
    assert body["output"] == "Cannot connect to PostgreSQL"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/health+json", True),
        ("application/json", False),
        ("", False),
        ("*/*", False),
        ("application/json;q=0.5, application/health+json", True),
        ("application/health+json;q=0.2, application/json", False),
        ("application/health+json;q=0", False),
        ("application/health+json;q=abc", False),
        (";;;,,,\x00garbage", False),
        ("application/health+json;q=7", False),
    ],
)
def test_wants_health_json(accept, expected):
    assert render.wants_health_json(accept) is expected
