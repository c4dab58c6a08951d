"""Health against real PostgreSQL, Redis and Celery, served by real gunicorn; faults on throwaway servers."""

import json
import re
import signal

import psutil
import pytest
import requests

from tests import support

pytestmark = pytest.mark.integration

TIMEOUT = 1.0  # HEALTH_TIMEOUT for fault tests (the runner's bound is tested with a hanging check in tests/unit)


def readyz(server, **kwargs):
    # A generous client timeout: a hang fails the test instead of waiting forever, load does not.
    return requests.get(server.url + "/readyz", timeout=30, **kwargs)


def readyz_down(server, component: str):
    """The first /readyz on which ``component`` no longer reports "connected": readiness answers from the last
    result while one refresh runs (docs/health.md), so the failure shows on a poll after the refresh that found
    it. Waiting for the component itself, not for any 503: on a loaded machine another check can miss its bound
    on one poll."""
    seen = []

    def down() -> bool:
        seen.append(readyz(server))
        return seen[-1].json().get(component) != "connected"

    support.wait_until(down, timeout=30, message=f"readyz reports {component} down")
    return seen[-1]


def fault_env(tmp_path, **extra):
    return support.sqlite_env(tmp_path, **{"HEALTH_TIMEOUT": str(TIMEOUT), "HEALTH_CACHE_TTL": "0", **extra})


def test_postgres_and_redis_connected_and_no_password_in_bodies(tmp_path):
    url, drop = support.create_postgres_database()
    try:
        url_with_password = url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
        env = support.project_env(
            DATABASE_URL=url_with_password,
            REDIS_URL=support.redis_url(5),
            HEALTH_TOKEN="tok",
            TESTPROJECT_VAR_DIR=str(tmp_path / "var"),
        )
        support.manage("migrate", "-v0", env=env)
        with support.gunicorn(env, tmp_path / "gunicorn.log") as server:
            ready = readyz(server)
            assert ready.status_code == 200, ready.text
            body = requests.get(server.url + "/health", headers={"Authorization": "Bearer tok"}, timeout=10).json()
            assert body["database"] == "connected"
            assert body["redis"] == "connected"
            assert body["checks"]["database"]["status"] == "pass"
            assert body["checks"]["redis"]["status"] == "pass"
            assert body["checks"]["cache"]["status"] == "pass"
            assert body["checks"]["celery_broker"]["status"] == "pass"
            # Connection hygiene: checks run in pool threads and must not leak connections.
            dbname = url.rsplit("/", 1)[1]
            for _ in range(40):
                assert requests.get(server.url + "/readyz?fresh", timeout=10).status_code == 200
            import psycopg

            with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={dbname}") as conn:
                (open_connections,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname]
                ).fetchone()
            assert open_connections <= 3  # this one, plus at most a request-thread connection per worker
            for path in ("/health", "/readyz", "/health/database", "/health/redis"):
                for headers in ({}, {"Authorization": "Bearer tok"}, {"Accept": "application/health+json"}):
                    text = requests.get(server.url + path, headers=headers, timeout=10).text
                    assert "hunter2" not in text
    finally:
        drop()


def test_redis_killed_then_restarted(tmp_path):
    with support.throwaway_redis() as redis_server:
        env = fault_env(tmp_path, REDIS_URL=redis_server.url, CELERY_BROKER_URL="filesystem://")
        with support.gunicorn(env, tmp_path / "gunicorn.log") as server:
            assert readyz(server).status_code == 200
            redis_server.stop()
            down = readyz_down(server, "redis")
            assert down.status_code == 503, down.text
            body = down.json()
            assert body["redis"] == "disconnected"
            assert body["checks"]["redis"]["status"] == "fail"
            assert "Cannot connect to Redis" in body["error"]
            assert requests.get(server.url + "/healthz", timeout=5).status_code == 200  # liveness unaffected
            assert requests.get(server.url + "/api/ping", timeout=5).status_code == 200  # routes without Redis
            redis_server.start()
            support.wait_until(lambda: readyz(server).status_code == 200, timeout=30, message="readyz recovers")


def test_postgres_killed_then_restarted(tmp_path):
    with support.throwaway_postgres() as pg:
        env = support.project_env(
            DATABASE_URL=pg.url,
            HEALTH_TIMEOUT=str(TIMEOUT),
            HEALTH_CACHE_TTL="0",
            TESTPROJECT_VAR_DIR=str(tmp_path / "var"),
        )
        support.manage("migrate", "-v0", env=env)
        with support.gunicorn(env, tmp_path / "gunicorn.log") as server:
            assert readyz(server).status_code == 200
            pg.stop()
            down = readyz_down(server, "database")
            assert down.status_code == 503, down.text
            assert down.json()["database"] == "disconnected"
            assert "Cannot connect to PostgreSQL" in down.json()["error"]
            assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
            pg.start()
            support.wait_until(lambda: readyz(server).status_code == 200, timeout=15, message="readyz recovers")


def test_celery_worker_killed_then_restarted(tmp_path):
    broker = support.redis_url(6)
    env = fault_env(
        tmp_path,
        REDIS_URL=broker,
        HEALTH_TIMEOUT="2",
        HEALTH_TOKEN="tok",  # observed values are for authorized callers
        HEALTH_CHECK_OPTIONS=json.dumps({"celery": {"critical": True}}),
    )
    with support.gunicorn(env, tmp_path / "gunicorn.log") as server:
        worker = support.celery_worker(env, tmp_path / "worker.log")
        worker.start()
        try:
            support.wait_worker_ready(worker)
            support.wait_until(lambda: readyz(server).status_code == 200, timeout=30, message="ready with worker")
            ok = requests.get(server.url + "/health/celery", headers={"Authorization": "Bearer tok"}, timeout=10).json()
            assert ok["status"] == "pass" and ok["observed_value"] >= 1
            worker.stop()
            down = readyz_down(server, "celery")
            assert down.status_code == 503, down.text
            assert down.json()["celery"] == "no workers"
            assert down.json()["checks"]["celery"]["status"] == "fail"
            worker = support.celery_worker(env, tmp_path / "worker2.log")
            worker.start()
            support.wait_worker_ready(worker)
            support.wait_until(lambda: readyz(server).status_code == 200, timeout=15, message="recovers")
        finally:
            worker.stop()


def end_drain(server) -> None:
    """A second SIGTERM to each worker ends its drain at once (drain.py hands over to the server's handler)."""
    for child in psutil.Process(server.proc.pid).children():
        child.send_signal(signal.SIGTERM)


def test_sigterm_drains_readiness_while_liveness_stays_up(tmp_path):
    # A drain far longer than the test (and gunicorn's graceful timeout longer still): observing the 503 is not a
    # race against the drain's end; the test ends the drain itself with a second SIGTERM.
    env = support.sqlite_env(tmp_path, HEALTH_DRAIN_SECONDS="300")
    extra = ("--graceful-timeout", "600")
    with support.gunicorn(env, tmp_path / "gunicorn.log", workers=1, extra=extra) as server:
        assert readyz(server).status_code == 200
        server.signal(signal.SIGTERM)  # master forwards it to the worker
        draining = support.wait_until(
            lambda: [r for r in [requests.get(server.url + "/readyz", timeout=30)] if r.status_code == 503],
            timeout=30,
            message="readyz 503 after SIGTERM",
        )
        assert draining[0].json()["error"] == "Shutting down"
        assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
        assert server.proc.poll() is None  # still draining
        end_drain(server)
        server.proc.wait(timeout=60)  # and then it really stops
        assert server.proc.returncode == 0


def test_observe_health_command(tmp_path):
    env = support.sqlite_env(tmp_path)
    ok = support.manage("observe_health", "--readiness", env=env, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "database" in ok.stdout and ok.stdout.strip().splitlines()[-1] in {"healthy", "degraded"}
    bad_env = dict(env, REDIS_URLS="redis://127.0.0.1:1/0", HEALTH_TIMEOUT="0.5")
    bad = support.manage("observe_health", "--json", env=bad_env, check=False)
    assert bad.returncode == 1
    body = json.loads(bad.stdout)
    assert body["status"] == "unhealthy" and body["redis"] == "disconnected"


def test_invalid_configuration_fails_at_startup(tmp_path):
    env = support.sqlite_env(tmp_path)
    check = support.manage("check", env=dict(env, HEALTH_DETAILS="sometimes"), check=False)
    assert check.returncode != 0
    assert "django_observe.E001" in check.stderr
    assert 'environment variable HEALTH_DETAILS must be one of "always", "authorized", "never"' in check.stderr
    server = support.gunicorn(dict(env, LOG_FORMAT="xml"), tmp_path / "bad.log", workers=1)
    server.start(timeout=20)
    try:
        server.proc.wait(timeout=30)  # the worker cannot boot, so gunicorn exits
    finally:
        server.stop()
    assert server.proc.returncode != 0
    assert 'environment variable LOG_FORMAT must be one of "json", "text", got \'xml\'' in server.output()


def test_quickstart_rundemo_serves_healthz(tmp_path):
    port, metrics_port = support.free_port(), support.free_port()
    env = support.project_env(SQLITE_PATH=str(tmp_path / "db.sqlite3"), TESTPROJECT_VAR_DIR=str(tmp_path / "var"))
    proc = support.Server(
        [
            support.PYTHON,
            "manage.py",
            "rundemo",
            "--port",
            str(port),
            "--metrics-port",
            str(metrics_port),
            "--exit-after",
            "60",
        ],
        env,
        port,
        tmp_path / "demo.log",
    )
    with proc:
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "healthy"}
        support.wait_until(lambda: " ready." in proc.output(), timeout=30, message="demo worker ready")
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        assert health["database"] == "connected"
        support.wait_for_port("127.0.0.1", metrics_port)  # rundemo --metrics-port moves the web's metrics port
        assert "# TYPE" in requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert f"Metrics on http://127.0.0.1:{metrics_port}/metrics" in proc.output()
        # The console, with the user and password the demo printed: the health probes above are on it.
        printed = re.search(r"Console: (\S+) \(log in as (\S+), password (\S+)\)", proc.output())
        assert printed and printed.group(1) == f"http://127.0.0.1:{port}/observe/", proc.output()
        browser = requests.Session()
        login = f"http://127.0.0.1:{port}/admin/login/"
        browser.get(login, timeout=10)
        browser.post(
            login,
            data={
                "username": printed.group(2),
                "password": printed.group(3),
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                "next": "/observe/",
            },
            headers={"Referer": login},
            timeout=10,
        )
        overview = browser.get(printed.group(1), timeout=20)
        assert overview.status_code == 200 and overview.url == printed.group(1)
        assert "Overview" in overview.text
        assert requests.get(printed.group(1), timeout=10, allow_redirects=False).status_code == 302  # anonymous


def test_rabbitmq_broker_and_workers(tmp_path):
    env = fault_env(
        tmp_path,
        CELERY_BROKER_URL=support.amqp_url(),
        HEALTH_TIMEOUT="3",
        HEALTH_CHECK_OPTIONS=json.dumps({"celery": {"critical": True}}),
    )
    with (
        support.gunicorn(env, tmp_path / "gunicorn.log") as server,
        support.running_worker(env, tmp_path / "worker.log"),
    ):
        body = support.wait_until(
            lambda: (r := readyz(server)).status_code == 200 and r.json(),
            timeout=15,
            message="ready with a RabbitMQ broker and a worker",
        )
        assert body["checks"]["celery_broker"]["status"] == "pass"
        assert body["checks"]["celery"]["status"] == "pass"
        assert "guest" not in requests.get(server.url + "/health", timeout=10).text  # no broker credentials
