"""Dependencies die and come back while the test project is under load; SIGTERM while requests are in flight."""

import contextlib
import json
import os
import signal
import threading
import time

import psutil
import pytest
import requests

from tests import support, support_load, support_otlp
from tests import support_metrics as sm

pytestmark = pytest.mark.integration

TIMEOUT = 1.0


class Load:
    """Background load of routes that need neither Redis nor PostgreSQL."""

    def __init__(self, port: int):
        self.port, self.results, self.stopped = port, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        plan = [support_load.Request("GET", "/api/ping"), support_load.Request("GET", "/api/work?marker=chaos")] * 5
        while not self.stopped.is_set():
            self.results.extend(support_load.send_all(self.port, plan, concurrency=2, timeout=30))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.thread.join(timeout=30)


def ready(server):
    # A generous client timeout: the runner's bound (HEALTH_TIMEOUT) is tested with a hanging check in tests/unit.
    return requests.get(server.url + "/readyz", timeout=30)


def requests_counted(port):
    return sm.value(sm.scrape(port), "http_server_request_duration_seconds_count")


def task_ids_succeeded(worker):
    return {line.split('"task_id":"', 1)[1][:36] for line in worker.output().splitlines() if "task_succeeded" in line}


def kill_group(server):
    os.killpg(server.proc.pid, signal.SIGKILL)  # the worker and its pool, no warm shutdown
    server.proc.wait(timeout=10)


@pytest.mark.parametrize("kind", ["gunicorn", "uvicorn"])
def test_dependencies_die_and_return_under_load(tmp_path, kind):
    with (
        support.throwaway_redis() as redis_server,
        support.throwaway_postgres() as pg,
        support_otlp.HttpReceiver() as otlp,
    ):
        metrics_port = support.free_port()
        env = support.project_env(
            DATABASE_URL=pg.url,
            REDIS_URL=redis_server.url,  # cache, Redis check and Celery broker
            HEALTH_TIMEOUT=str(TIMEOUT),
            HEALTH_CACHE_TTL="0",
            HEALTH_CHECK_OPTIONS=json.dumps({"celery": {"critical": True}}),
            **support.tracing_to(otlp.endpoint),
            METRICS_PORT=str(metrics_port),
            METRICS_MULTIPROC_DIR=str(tmp_path / "metrics"),
            LOG_FORMAT="json",
            TESTPROJECT_VAR_DIR=str(tmp_path / "var"),
        )
        support.manage("migrate", "-v0", env=env)
        if kind == "gunicorn":
            server = support.gunicorn(env, tmp_path / "web.log", workers=2, extra=("--threads", "4"))
        else:
            server = support.uvicorn(env, tmp_path / "web.log", extra=("--workers", "2"))
        worker = support.celery_worker(env, tmp_path / "worker.log")
        recovery = {}
        with server, contextlib.ExitStack() as stack:
            stack.callback(lambda: worker.stop())
            worker.start()
            support.wait_worker_ready(worker)
            support.wait_for_port("127.0.0.1", metrics_port, 20)
            support.wait_until(lambda: ready(server).status_code == 200, timeout=20, message="ready")
            with Load(server.port) as load:
                for name, component, dependency in (("redis", "redis", redis_server), ("postgres", "database", pg)):
                    before = requests_counted(metrics_port)
                    dependency.stop()
                    # Readiness answers from the last result while one refresh runs: the failure shows on the poll
                    # after the refresh that found it.
                    polls: list = []

                    def reported(component=component) -> bool:
                        polls.append(ready(server))
                        return polls[-1].status_code == 503 and polls[-1].json()[component] == "disconnected"

                    support.wait_until(reported, timeout=30, message=f"readyz reports {name} down")
                    support.wait_until(
                        lambda: requests_counted(metrics_port) > before,
                        timeout=30,
                        message=f"metrics kept counting while {name} was down",
                    )
                    dependency.start()
                    started = time.monotonic()
                    support.wait_until(lambda: ready(server).status_code == 200, timeout=20, message=f"{name} back")
                    recovery[name] = time.monotonic() - started

                # The Celery worker is killed; tasks published meanwhile wait in the broker and run after it returns.
                support.wait_until(
                    lambda: ready(server).json().get("celery") == "connected", timeout=20, message="worker seen"
                )
                kill_group(worker)
                worker.stop()  # closes its log
                # Waits for the Celery check's own answer: under a loaded machine another check can miss its
                # 1 s bound on one poll and answer 503 while the worker's last result still says "connected".
                seen: list = []

                def worker_gone() -> bool:
                    seen.append(ready(server))
                    return seen[-1].json().get("celery") != "connected"

                support.wait_until(worker_gone, timeout=30, message="worker gone")
                down = seen[-1]
                assert (down.status_code, down.json()["celery"]) == (503, "no workers"), down.text
                queued = [requests.get(server.url + "/api/enqueue", timeout=5) for _ in range(5)]
                assert {r.status_code for r in queued} == {202}, "publishing does not need a worker"
                worker = support.celery_worker(env, tmp_path / "worker2.log")
                worker.start()
                support.wait_worker_ready(worker)
                started = time.monotonic()
                support.wait_until(lambda: ready(server).status_code == 200, timeout=20, message="worker back")
                recovery["celery"] = time.monotonic() - started
                task_ids = {r.json()["task_id"] for r in queued}
                support.wait_until(lambda: task_ids <= task_ids_succeeded(worker), timeout=30, message="tasks ran")

                otlp.__exit__(None, None, None)  # the collector goes away too
                served_before = len(load.results)
                support.wait_until(
                    lambda: len(load.results) >= served_before + 20, timeout=60, message="load served without collector"
                )
            results = load.results
    assert len(results) > 100
    assert {r.status for r in results} == {200}, "routes without the dead dependency kept answering"
    lines = server.output().count('"logger":"django_observe.request"')
    assert lines >= len(results), "logging never stopped"
    print(f"{kind}: {len(results)} requests, recovery seconds {recovery}")


def test_sigterm_under_load_drains_then_finishes_in_flight_requests(tmp_path):
    with support_otlp.HttpReceiver() as otlp:
        env = support.sqlite_env(
            tmp_path,
            # A drain longer than the test (the test ends it with a second SIGTERM), so seeing the 503 is not a
            # race against the drain's end; a batch delay longer than the test, so only the exit flush exports.
            HEALTH_DRAIN_SECONDS="300",
            OTEL_ENABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
            OTEL_BSP_SCHEDULE_DELAY="600000",
            TESTPROJECT_READY_DIR=str(tmp_path / "ready"),
        )
        extra = ("--threads", "4", "--graceful-timeout", "600")
        with support.gunicorn(env, tmp_path / "web.log", workers=2, extra=extra) as server:
            # A worker still loading Django has no drain handler yet: SIGTERM would stop it at once.
            support.wait_processes_loaded(tmp_path / "ready", 2)
            with Load(server.port) as load:
                support.wait_until(lambda: len(load.results) >= 10, timeout=30, message="load served")
                server.signal(signal.SIGTERM)
                first = support.wait_until(
                    lambda: [r for r in [requests.get(server.url + "/readyz", timeout=30)] if r.status_code == 503],
                    timeout=30,
                    message="readiness goes 503 first",
                )
                assert first[0].json()["error"] == "Shutting down"
                assert requests.get(server.url + "/api/ping", timeout=30).status_code == 200  # still serving
                assert not otlp.spans, "spans exported before the exit: the flush below proves nothing"
                load.stopped.set()
            for child in psutil.Process(server.proc.pid).children():
                child.send_signal(signal.SIGTERM)  # a second SIGTERM ends the drain (health/drain.py)
            server.proc.wait(timeout=60)
            assert server.proc.returncode == 0
        served = [r for r in load.results if r.request.path.startswith("/api/work")]
        assert served and {r.status for r in load.results} == {200}
        # Spans buffered at shutdown were flushed on exit (nothing left before it: the batch delay is 10 minutes).
        work_spans = [s for s in otlp.spans if s.name == "GET api/work"]
        assert len(work_spans) == len(served)
