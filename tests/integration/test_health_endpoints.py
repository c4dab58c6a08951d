"""The health endpoints through Django's full request stack (test client, real database)."""

import concurrent.futures
import json
import threading

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_touches_nothing(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}
    assert response["Cache-Control"] == "no-store"


def test_readyz_runs_only_critical_checks(client, observe):
    observe(HEALTH_TOKEN="tok")  # the checks' details are for authorized callers (anonymous: statuses only)
    response = client.get("/readyz", HTTP_AUTHORIZATION="Bearer tok")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "healthy"
    assert body["database"] == "connected"
    assert all(check["critical"] for check in body["checks"].values())
    assert "disk" not in body["checks"]


def test_health_seed_shape(client, observe):
    observe(HEALTH_TOKEN="tok")
    body = client.get("/health", HTTP_AUTHORIZATION="Bearer tok").json()
    assert body["status"] in {"healthy", "degraded"}
    assert body["version"] == "1.0.0"
    assert body["uptime"].count(" ") == 2 and body["uptime"].endswith("m")
    assert isinstance(body["uptime_seconds"], float)
    assert body["database"] == "connected"
    for check_id in ("database", "cache", "migrations", "disk"):
        entry = body["checks"][check_id]
        assert entry["status"] in {"pass", "warn", "fail"}
        assert isinstance(entry["duration_ms"], float)
        assert isinstance(entry["critical"], bool)


def test_anonymous_callers_get_each_checks_status_only(client):
    body = client.get("/health").json()
    assert body["checks"] and all(set(entry) == {"status"} for entry in body["checks"].values()), body


def test_api_mount_serves_the_seed_path(client):
    assert client.get("/api/health").status_code == 200


def test_health_json_format(observe, client):
    observe(HEALTH_TOKEN="tok")
    response = client.get("/health", HTTP_ACCEPT="application/health+json", HTTP_AUTHORIZATION="Bearer tok")
    assert response["Content-Type"] == "application/health+json"
    body = json.loads(response.content)
    assert body["status"] in {"pass", "warn"}
    assert body["checks"]["database:responseTime"][0]["componentId"] == "default"
    assert body["checks"]["database:responseTime"][0]["observedUnit"] == "ms"  # for authorized callers
    anonymous = client.get("/health", HTTP_ACCEPT="application/health+json").json()
    assert "observedUnit" not in anonymous["checks"]["database:responseTime"][0]


def test_single_check_and_unknown_id(observe, client):
    observe(HEALTH_TOKEN="tok")
    response = client.get("/health/database")
    assert response.status_code == 200
    assert response.json()["id"] == "database" and response.json()["status"] == "pass"
    missing = client.get("/health/nope", HTTP_AUTHORIZATION="Bearer tok")
    assert missing.status_code == 404
    assert missing.json()["error"] == "Unknown health check"
    assert "database" in missing.json()["checks"]


def test_exclude(observe, client):
    observe(HEALTH_TOKEN="tok")
    body = client.get("/health?exclude=disk&exclude=memory,cache", HTTP_AUTHORIZATION="Bearer tok").json()
    assert set(body["checks"]) & {"disk", "memory", "cache"} == set()
    assert "database" in body["checks"]


@pytest.mark.parametrize("accept", ["garbage;;q=x", "application/health+json;q=abc", "\t", "*/*;q=2"])
def test_malformed_accept_gets_default_json(client, accept):
    response = client.get("/health", HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_head_and_method_not_allowed(client):
    assert client.head("/health").status_code == 200
    assert client.head("/healthz").status_code == 200
    for path in ("/healthz", "/readyz", "/health", "/health/database"):
        response = client.post(path)
        assert response.status_code == 405, path
        assert response["Allow"] == "GET, HEAD"
        assert response.json()["error"] == "Method not allowed"


def test_probes_bypass_allowed_hosts(client):
    # A kubelet probes by pod IP, which is not in ALLOWED_HOSTS.
    assert client.get("/healthz", HTTP_HOST="10.1.2.3").status_code == 200
    assert client.get("/readyz", HTTP_HOST="10.1.2.3").status_code == 200
    assert client.get("/health", HTTP_HOST="10.1.2.3").status_code == 400  # the detailed page stays protected


def test_login_required_middleware_does_not_block_health(settings, client):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django.contrib.auth.middleware.LoginRequiredMiddleware"]
    assert client.get("/health").status_code == 200
    assert client.get("/health/database").status_code == 200
    assert client.get("/api/ping").status_code == 302  # the rest of the site is protected


def test_details_policy_never(observe, client):
    observe(HEALTH_DETAILS="never")
    assert client.get("/health").json() == {"status": "healthy"} or client.get("/health").json() == {
        "status": "degraded"
    }
    assert set(client.get("/health", HTTP_ACCEPT="application/health+json").json()) == {"status"}


def test_details_policy_authorized_with_token_and_staff(observe):
    observe(HEALTH_DETAILS="authorized", HEALTH_TOKEN="s3cret-token")
    anonymous = Client().get("/health").json()
    assert set(anonymous) == {"status"}
    wrong = Client().get("/health", HTTP_AUTHORIZATION="Bearer wrong").json()
    assert set(wrong) == {"status"}
    with_token = Client().get("/health", HTTP_AUTHORIZATION="Bearer s3cret-token").json()
    assert "checks" in with_token and "database" in with_token
    staff = get_user_model().objects.create_user("ops", password="pw", is_staff=True)
    staff_client = Client()
    staff_client.force_login(staff)
    assert "checks" in staff_client.get("/health").json()
    plain = get_user_model().objects.create_user("user", password="pw")
    plain_client = Client()
    plain_client.force_login(plain)
    assert set(plain_client.get("/health").json()) == {"status"}


def test_raw_details_only_for_authorized_callers(observe):
    observe(
        HEALTH_TOKEN="tok",
        REDIS_URLS=["redis://:hunter2@127.0.0.1:1/0"],  # nothing listens on port 1
        HEALTH_CHECK_OPTIONS={"redis": {"timeout": 0.5}},
    )
    public = Client().get("/health")
    assert public.status_code == 503
    body = public.json()
    assert body["redis"] == "disconnected"
    assert body["error"] == "Cannot connect to Redis"
    assert "detail" not in body["checks"]["redis"]
    full = Client().get("/health", HTTP_AUTHORIZATION="Bearer tok")
    detail = full.json()["checks"]["redis"]["detail"]
    assert "Connection" in detail or "connect" in detail
    for response in (public, full):
        assert b"hunter2" not in response.content


def test_non_critical_failure_is_degraded_not_503(observe, client):
    observe(
        REDIS_URLS=["redis://127.0.0.1:1/0"],
        HEALTH_CHECK_OPTIONS={"redis": {"critical": False, "timeout": 0.5}},
    )
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert client.get("/readyz").status_code == 200  # readiness ignores non-critical checks


def test_custom_check_by_dotted_path(observe, client):
    observe(
        HEALTH_CHECKS=[
            {"path": "tests.checks.AlwaysWarns", "id": "quota", "critical": False},
            "tests.checks.AlwaysFails",
        ]
    )
    body = client.get("/health").json()
    assert body["checks"]["quota"]["status"] == "warn"
    assert body["checks"]["always_fails"]["status"] == "fail"
    assert body["status"] == "unhealthy"
    assert client.get("/health/quota").status_code == 200
    assert client.get("/health/always_fails").status_code == 503


def test_200_concurrent_probes_run_each_check_once(observe):
    observe(HEALTH_CACHE_TTL=30)
    from django_observe.runtime import get_runtime

    runner = get_runtime().health
    before = runner.runs
    critical = len(runner.select(critical_only=True))

    def probe(_):
        return Client().get("/readyz").status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(probe, range(200)))
    assert codes == [200] * 200
    assert runner.runs - before == critical


def test_readyz_in_a_sync_worker_starts_no_thread_per_probe(observe, monkeypatch):
    # Under WSGI the middleware once answered /readyz through async_to_sync: a thread and an event loop per
    # probe, and over 50,000 requests a gunicorn worker's memory grew with the malloc arenas of those threads.
    observe(HEALTH_CACHE_TTL=3600)
    client = Client()
    assert client.get("/readyz").status_code == 200  # the first run of each check is waited for
    started = []
    real_start = threading.Thread.start

    def start(thread):
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    codes = [client.get("/readyz").status_code for _ in range(20)]
    assert codes == [200] * 20
    assert started == []


def test_our_checks_work_in_django_health_check_view(client):
    response = client.get("/ops/health-check/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    assert response.json() == {"Database(alias='default')": "OK", "Cache(alias='default')": "OK"}
