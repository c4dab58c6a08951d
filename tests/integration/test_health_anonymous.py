"""Anonymous callers get the public shape only; authorized callers get more, and nobody gets a secret."""

import datetime

import pytest
from django.test import Client

from django_observe.health import render
from django_observe.health.registry import CheckSpec
from django_observe.health.runner import CheckResult
from tests import checks

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "health-token-for-tests-0123456789"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


def _leaky(observe, **options):
    observe(
        HEALTH_TOKEN=TOKEN,
        HEALTH_CHECKS=[{"path": "tests.checks.LeaksHost", "id": "upstream", "critical": False}],
        **options,
    )


@pytest.mark.parametrize("accept", ["application/json", "application/health+json"])
def test_public_error_has_no_secret_and_no_host(observe, accept):
    _leaky(observe)
    anonymous = Client().get("/health", HTTP_ACCEPT=accept).content.decode()
    assert "SECRET" not in anonymous
    assert "10.0.0.5" not in anonymous and "cache-2.internal" not in anonymous, anonymous
    assert "upstream" in anonymous  # the human error stays
    authorized = Client().get("/health", HTTP_ACCEPT=accept, **AUTH).content.decode()
    assert "SECRET" not in authorized
    assert "10.0.0.5" in authorized  # hosts are for authorized callers


def test_anonymous_health_json_shows_statuses_not_observed_values(observe):
    """#34 finding 14: application/health+json follows the JSON body's rule for anonymous callers."""
    observe(HEALTH_TOKEN=TOKEN, HEALTH_CHECKS=["tests.checks.AlwaysFails"])  # besides the defaults (disk, ...)
    accept = {"HTTP_ACCEPT": "application/health+json"}
    anonymous = Client().get("/health", **accept).json()
    items = [item for items in anonymous["checks"].values() for item in items]
    assert items and all(set(item) == {"componentId", "componentType", "status"} for item in items), anonymous
    authorized = Client().get("/health", **accept, **AUTH).json()
    observed = [item for items in authorized["checks"].values() for item in items]
    assert all("observedValue" in item and "time" in item for item in observed), authorized
    assert any(item["observedUnit"] == "percent" for item in observed), authorized


def test_detail_endpoint_redacts_too(observe):
    _leaky(observe)
    for extra in ({}, AUTH):
        body = Client().get("/health/upstream", **extra).content.decode()
        assert "SECRET" not in body
    assert "10.0.0.5" not in Client().get("/health/upstream").content.decode()


@pytest.mark.parametrize("policy", ["always", "authorized", "never"])
def test_unknown_check_lists_ids_only_to_authorized_callers(observe, policy):
    observe(HEALTH_TOKEN=TOKEN, HEALTH_DETAILS=policy)
    anonymous = Client().get("/health/nope").json()
    assert anonymous["error"] == "Unknown health check" and "checks" not in anonymous
    assert "database" in Client().get("/health/nope", **AUTH).json()["checks"]


def test_exclude_is_only_for_authorized_callers(observe):
    observe(HEALTH_TOKEN=TOKEN, HEALTH_CHECKS=["tests.checks.AlwaysFails"])
    assert Client().get("/readyz").status_code == 503
    assert Client().get("/readyz?exclude=always_fails").status_code == 503
    assert Client().get("/readyz?exclude=always_fails", **AUTH).status_code == 200


def test_migration_names_are_not_public():
    spec = CheckSpec("migrations", checks.AlwaysFails(), True, 1.0)
    result = CheckResult(
        spec,
        "fail",
        1.0,
        datetime.datetime.now(datetime.UTC),
        "2 unapplied migration(s): shop.0002_add_price, shop.0003_index",
        "",
    )
    public = repr(render.component_body([result], level=render.PUBLIC, version="1"))
    assert "0002_add_price" not in public and "2 unapplied migration(s)" in public
    public = repr(render.health_json_body([result], level=render.PUBLIC, version="1", service_id="s"))
    assert "0002_add_price" not in public
    full = repr(render.component_body([result], level=render.FULL, version="1"))
    assert "0002_add_price" in full
