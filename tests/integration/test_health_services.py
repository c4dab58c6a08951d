"""Health against real PostgreSQL, Redis and Celery, served by real gunicorn; faults on throwaway servers."""

import json
import signal
import time

import pytest
import requests

from tests import support

pytestmark = pytest.mark.integration

TIMEOUT = 1.0  # HEALTH_TIMEOUT for fault tests; a dead dependency must answer within TIMEOUT + 1 s


def readyz(server, **kwargs):
    # The client timeout is the bound: a hang fails the test instead of waiting.
    return requests.get(server.url + "/readyz", timeout=TIMEOUT + 1 + 2, **kwargs)


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
            started = time.monotonic()
            down = readyz(server)
            elapsed = time.monotonic() - started
            assert down.status_code == 503, down.text
            body = down.json()
            assert body["redis"] == "disconnected"
            assert body["checks"]["redis"]["status"] == "fail"
            assert "Cannot connect to Redis" in body["error"]
            assert elapsed < TIMEOUT + 1 + 2
            assert requests.get(server.url + "/healthz", timeout=5).status_code == 200  # liveness unaffected
            assert requests.get(server.url + "/api/ping", timeout=5).status_code == 200  # routes without Redis
            redis_server.start()
            support.wait_until(lambda: readyz(server).status_code == 200, timeout=10, message="readyz recovers")


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
            down = readyz(server)
            assert down.status_code == 503, down.text
            assert down.json()["database"] == "disconnected"
            assert "Cannot connect to PostgreSQL" in down.json()["error"]
            assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
            pg.start()
            support.wait_until(lambda: readyz(server).status_code == 200, timeout=15, message="readyz recovers")


def test_celery_worker_killed_then_restarted(tmp_path):
    broker = support.redis_url(6)
    env = fault_env(
        tmp_path, REDIS_URL=broker, HEALTH_TIMEOUT="2", HEALTH_CHECK_OPTIONS=json.dumps({"celery": {"critical": True}})
    )
    with support.gunicorn(env, tmp_path / "gunicorn.log") as server:
        worker = support.celery_worker(env, tmp_path / "worker.log")
        worker.start()
        try:
            support.wait_worker_ready(worker)
            support.wait_until(lambda: readyz(server).status_code == 200, timeout=10, message="ready with worker")
            ok = requests.get(server.url + "/health/celery", timeout=10).json()
            assert ok["status"] == "pass" and ok["observed_value"] >= 1
            worker.stop()
            down = readyz(server)
            assert down.status_code == 503
            assert down.json()["celery"] == "no workers"
            assert down.json()["checks"]["celery"]["status"] == "fail"
            worker = support.celery_worker(env, tmp_path / "worker2.log")
            worker.start()
            support.wait_worker_ready(worker)
            support.wait_until(lambda: readyz(server).status_code == 200, timeout=15, message="recovers")
        finally:
            worker.stop()


def test_sigterm_drains_readiness_while_liveness_stays_up(tmp_path):
    env = support.sqlite_env(tmp_path, HEALTH_DRAIN_SECONDS="4")
    with support.gunicorn(env, tmp_path / "gunicorn.log", workers=1) as server:
        assert readyz(server).status_code == 200
        server.signal(signal.SIGTERM)  # master forwards it to the worker
        draining = support.wait_until(
            lambda: [r for r in [requests.get(server.url + "/readyz", timeout=5)] if r.status_code == 503],
            timeout=3,
            message="readyz 503 after SIGTERM",
        )
        assert draining[0].json()["error"] == "Shutting down"
        assert requests.get(server.url + "/healthz", timeout=5).status_code == 200
        server.proc.wait(timeout=20)  # and then it really stops
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
    port = support.free_port()
    env = support.project_env(SQLITE_PATH=str(tmp_path / "db.sqlite3"), TESTPROJECT_VAR_DIR=str(tmp_path / "var"))
    proc = support.Server(
        [support.PYTHON, "manage.py", "rundemo", "--port", str(port), "--exit-after", "60"],
        env,
        port,
        tmp_path / "demo.log",
    )
    with proc:
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json() == {"status": "healthy"}
        support.wait_until(lambda: " ready." in proc.output(), timeout=30, message="demo worker ready")
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        assert health["database"] == "connected"


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
