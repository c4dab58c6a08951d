"""A hung non-critical check holds at most one thread and cannot fail readiness."""

import pytest
from django.test import Client

from tests import checks

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hung(observe):
    checks.RELEASE_HUNG.clear()
    checks.HUNG_RUNS.clear()
    observe(
        HEALTH_TOKEN="tok",  # errors are for authorized callers (anonymous: statuses only)
        HEALTH_CACHE_TTL=0,
        HEALTH_CHECKS=[{"path": "tests.checks.Hangs", "id": "hangs", "critical": False, "timeout": 0.2}],
    )
    yield
    checks.RELEASE_HUNG.set()


def test_hung_check_cannot_starve_readiness(hung):
    client = Client()
    bodies = [client.get("/health", HTTP_AUTHORIZATION="Bearer tok") for _ in range(8)]
    assert all(r.status_code == 200 for r in bodies), [r.content for r in bodies]
    assert len(checks.HUNG_RUNS) == 1  # started once, never again while the first run is stuck
    later = bodies[-1].json()["checks"]["hangs"]
    assert later["status"] == "fail" and later["error"].startswith("Still running after")
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    for check_id in ("database", "cache", "migrations"):
        assert body["checks"][check_id]["status"] == "pass", body


def test_a_released_check_runs_again(hung):
    client = Client()
    client.get("/health")
    client.get("/health")
    checks.RELEASE_HUNG.set()
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and client.get("/health").json()["checks"]["hangs"]["status"] != "pass":
        time.sleep(0.05)
    assert client.get("/health").json()["checks"]["hangs"]["status"] == "pass"
    assert len(checks.HUNG_RUNS) >= 2
