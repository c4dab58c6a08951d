"""Metrics under real gunicorn (3 workers), a real Celery worker on Redis and a real Prometheus."""

import os
import signal
import subprocess
import time

import pytest
import requests

from tests import promql, support, support_load
from tests import support_metrics as sm

pytestmark = pytest.mark.integration


def metrics_env(tmp, **extra):
    return support.sqlite_env(
        tmp,
        METRICS_PORT=str(support.free_port()),
        METRICS_WORKER_PORT=str(support.free_port()),
        METRICS_MULTIPROC_DIR=str(tmp / "metrics"),
        **extra,
    )


def ping_count(port):
    return sm.value(sm.scrape(port), "http_server_request_duration_seconds_count", route="api/ping", method="GET")


def worker_pids(master_pid):
    out = subprocess.run(["pgrep", "-P", str(master_pid)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def pings_per_worker(env) -> dict[int, float]:
    """How many /api/ping requests each process counted, from its own multiprocess file."""
    return sm.per_process(
        env["METRICS_MULTIPROC_DIR"], "http_server_request_duration_seconds_count", route="api/ping", method="GET"
    )


def test_counts_are_exact_across_gunicorn_workers_and_survive_a_worker_kill(tmp_path):
    env = metrics_env(tmp_path)
    port = int(env["METRICS_PORT"])
    with support.gunicorn(env, tmp_path / "web.log", workers=3) as server:
        support.wait_for_port("127.0.0.1", port, 20)
        # The exact total proves the merge only if more than one worker counted: send batches (each request on a
        # new connection; sync workers do not keep it alive) until at least two workers served, at most 20.
        batch, sent, served = [support_load.Request("GET", "/api/ping")] * 30, 0, {}
        for _ in range(20):
            assert {r.status for r in support_load.send_all(server.port, batch, concurrency=6)} == {200}
            sent += len(batch)
            served = pings_per_worker(env)
            if sent >= 90 and len(served) >= 2:
                break
        assert len(served) >= 2, f"all {sent} requests reached one worker ({served}): the count proves no merge"
        assert sum(served.values()) == sent
        for _ in range(5):  # every scrape, whichever worker serves it, sees all of them
            assert ping_count(port) == sent
        pids = worker_pids(server.proc.pid)
        assert len(pids) == 3
        assert set(served) <= set(pids)
        victim = max(served, key=served.get)  # a worker whose counts must survive it
        os.kill(victim, signal.SIGKILL)
        support.wait_until(
            lambda: len(set(worker_pids(server.proc.pid)) - {victim}) == 3,
            timeout=20,
            message="gunicorn replaced the worker",
        )
        support.wait_until(lambda: support.port_open("127.0.0.1", port), timeout=20, message="exporter back")
        assert ping_count(port) == sent  # the dead worker's samples are kept: counters stay monotonic
        assert {r.status for r in support_load.send_all(server.port, batch, concurrency=3)} == {200}
        assert ping_count(port) == sent + len(batch)
        samples = sm.scrape(port)
        assert sm.value(samples, "http_server_active_requests") == 0
        assert "build_info" in sm.names(samples)


def test_unknown_methods_and_random_paths_keep_series_bounded(client):
    from django_observe.runtime import get_runtime

    before = sum(1 for m in get_runtime().metrics.catalogue.request_duration.collect() for s in m.samples)
    for i in range(10_000):
        client.get(f"/random/{i}/{i * 7919 % 10007}")
    client.generic("FOO", "/api/ping")
    client.generic("BREW", "/api/ping")
    families = list(get_runtime().metrics.catalogue.request_duration.collect())
    labels = {tuple(sorted(s.labels.items())) for m in families for s in m.samples if s.name.endswith("_count")}
    methods = {dict(lbl)["method"] for lbl in labels}
    routes = {dict(lbl)["route"] for lbl in labels}
    assert "FOO" not in methods and "BREW" not in methods and "_OTHER" in methods
    assert "__unmatched__" in routes
    assert not any(route.startswith("random/") for route in routes)
    after = sum(1 for m in families for s in m.samples)
    assert after - before <= 3 * 17  # at most a few new label sets, whatever the paths


def test_commands_start_no_exporter(tmp_path):
    env = metrics_env(tmp_path)
    port = int(env["METRICS_PORT"])
    # The command's code runs after django.setup() (where a server process starts its exporter): its line is
    # the positive event after which the port's absence means something. It then waits for its stdin to close.
    code = (
        "from django_observe.runtime import get_runtime\n"
        "print('set up; exporter:', get_runtime().metrics.exporter, flush=True)\n"
        "import sys; sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [support.PYTHON, "manage.py", "shell", "-c", code],
        cwd=support.ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = next((line for line in proc.stdout if line.startswith("set up;")), "the command exited first")
        assert line.strip() == "set up; exporter: None"
        assert not support.port_open("127.0.0.1", port)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()
    result = support.manage("migrate", "-v0", env=env)
    assert result.returncode == 0
    from django_observe.runtime import get_runtime

    assert get_runtime().metrics.exporter is None  # this test runner process


def test_two_processes_on_one_port_do_not_crash(tmp_path):
    env = metrics_env(tmp_path)
    port = int(env["METRICS_PORT"])
    with support.runserver(env, tmp_path / "a.log") as first, support.runserver(env, tmp_path / "b.log") as second:
        support.wait_for_port("127.0.0.1", port, 20)
        assert requests.get(first.url + "/api/ping", timeout=5).status_code == 200
        assert requests.get(second.url + "/api/ping", timeout=5).status_code == 200
        support.wait_until(lambda: "is in use" in first.output() + second.output(), message="busy-port warning")
        warnings = (first.output() + second.output()).count("is in use")
        assert warnings == 1


def test_metrics_port_and_view_protection(tmp_path):
    env = metrics_env(tmp_path, METRICS_TOKEN="s3cret", METRICS_VIEW_ENABLED="true")
    port = int(env["METRICS_PORT"])
    with support.gunicorn(env, tmp_path / "web.log", workers=2) as server:
        support.wait_for_port("127.0.0.1", port, 20)
        url = f"http://127.0.0.1:{port}/metrics"
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401
        ok = requests.get(url, headers={"Authorization": "Bearer s3cret"}, timeout=5)
        assert ok.status_code == 200 and "http_server_active_requests" in ok.text
        assert requests.get(server.url + "/metrics", timeout=5).status_code == 401
        view = requests.get(
            server.url + "/metrics",
            headers={"Authorization": "Bearer s3cret", "Accept": "application/openmetrics-text"},
            timeout=5,
        )
        assert view.status_code == 200
        assert view.headers["Content-Type"].startswith("application/openmetrics-text")
        assert view.text.rstrip().endswith("# EOF")
    env = metrics_env(tmp_path, METRICS_ALLOWED_IPS="10.0.0.0/8")
    with support.gunicorn(env, tmp_path / "web2.log", workers=1):
        support.wait_for_port("127.0.0.1", int(env["METRICS_PORT"]), 20)
        # Off the list: disconnected when accepted, before anything is read or answered (docs/metrics.md).
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{env['METRICS_PORT']}/metrics", timeout=5)


def test_metrics_view_is_off_by_default(client):
    assert client.get("/metrics").status_code == 404


def test_celery_worker_metrics_and_queue_length(tmp_path):
    env = metrics_env(tmp_path, REDIS_URL=support.redis_url(8))
    import redis

    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    web_port, worker_port = int(env["METRICS_PORT"]), int(env["METRICS_WORKER_PORT"])
    publish = (
        "from testproject.demo.tasks import add, fail, flaky\n"
        "for i in range(5): add.delay(i, i)\n"
        "fail.delay('x'); fail.delay('y'); flaky.delay(2)\n"
    )
    with support.gunicorn(env, tmp_path / "web.log", workers=2) as server:
        support.wait_for_port("127.0.0.1", web_port, 20)
        # No worker yet: the queue fills up and the web exporter shows it.
        for _ in range(4):
            requests.get(server.url + "/api/enqueue", timeout=5)
        support.wait_until(
            lambda: sm.value(sm.scrape(web_port), "celery_queue_length", queue="celery") >= 4,
            message="queue length rises while no worker runs",
        )
        web = sm.scrape(web_port)
        assert sm.value(web, "celery_tasks_published_total", task="testproject.demo.tasks.add") == 4
        assert sm.value(web, "celery_workers") == 0
        worker = support.celery_worker(env, tmp_path / "worker.log")
        worker.start()
        try:
            support.wait_worker_ready(worker)
            support.wait_for_port("127.0.0.1", worker_port, 20)
            support.manage("shell", "-c", publish, env=env)

            def done():
                s = sm.scrape(worker_port)
                return (
                    sm.value(s, "celery_tasks_total", state="succeeded") >= 10
                    and sm.value(s, "celery_tasks_total", state="failed") >= 2
                ) and s

            samples = support.wait_until(done, timeout=30, message="tasks finished")
            add = "testproject.demo.tasks.add"
            assert sm.value(samples, "celery_tasks_total", task=add, state="succeeded") == 9
            assert sm.value(samples, "celery_tasks_total", task=add, state="received") == 9
            assert sm.value(samples, "celery_tasks_total", task="testproject.demo.tasks.fail", state="failed") == 2
            assert sm.value(samples, "celery_tasks_total", task="testproject.demo.tasks.flaky", state="retried") == 2
            assert sm.value(samples, "celery_task_duration_seconds_count", task=add) == 9
            assert sm.value(samples, "celery_task_queue_wait_seconds_count", queue="celery") >= 9
            support.wait_until(
                lambda: sm.value(sm.scrape(web_port), "celery_queue_length", queue="celery") == 0,
                message="queue drained",
            )
            support.wait_until(
                lambda: sm.value(sm.scrape(web_port), "celery_workers") >= 1, timeout=20, message="worker seen alive"
            )
        finally:
            worker.stop()


def test_prometheus_scrapes_both_ports_and_the_seed_promql_answers(tmp_path):
    env = metrics_env(tmp_path, REDIS_URL=support.redis_url(11))
    web_port, worker_port = int(env["METRICS_PORT"]), int(env["METRICS_WORKER_PORT"])
    token = support.manage("demo_token", env=env).stdout.strip()
    with (
        support.gunicorn(env, tmp_path / "web.log", workers=3) as server,
        support.running_worker(env, tmp_path / "worker.log"),
    ):
        support.wait_for_port("127.0.0.1", web_port, 20)
        support.wait_for_port("127.0.0.1", worker_port, 20)
        with sm.prometheus({"django": web_port, "celery": worker_port}) as prom:
            support.wait_until(lambda: len(sm.query(prom, "up == 1")) == 2, timeout=30, message="both up")
            plan = [
                support_load.Request("POST", "/api/chat", (("Authorization", f"Bearer {token}"),), b'{"message": "hi"}')
            ] * 20
            for _ in range(4):
                assert {r.status for r in support_load.send_all(server.port, plan, concurrency=4)} == {202}
                requests.get(server.url + "/health", timeout=10)
                time.sleep(1.2)
            seed = {
                "average latency": "rate(authorized_invoke_duration_seconds_sum[30s])"
                " / rate(authorized_invoke_duration_seconds_count[30s])",
                "p95 latency": "histogram_quantile(0.95, rate(authorized_invoke_duration_seconds_bucket[30s]))",
                # The two histograms have different labels: sum them, as the shipped recording rule does.
                "authorization overhead %": "sum(rate(authorization_duration_seconds_sum[30s]))"
                " / sum(rate(authorized_invoke_duration_seconds_sum[30s])) * 100",
            }
            for what, expr in seed.items():
                result = support.wait_until(lambda e=expr: sm.query(prom, e), timeout=20, message=what)
                assert float(result[0]["value"][1]) > 0, (what, result)
                assert sm.promtool_query(prom, expr).strip(), what
            tasks = support.wait_until(
                lambda: sm.query(prom, 'sum(celery_tasks_total{job="celery",state="succeeded"})'),
                timeout=20,
                message="task metrics scraped",
            )
            assert float(tasks[0]["value"][1]) >= 80
            # Every metric name used by the shipped dashboards, alerts and recording rules exists
            # (a crash and an N+1 first, so that their counters have samples).
            assert requests.get(server.url + "/api/crash", timeout=10).status_code == 500
            assert requests.get(server.url + "/api/users/report?n=12", timeout=10).status_code == 200  # an N+1
            exposed = sm.names(sm.scrape(web_port)) | sm.names(sm.scrape(worker_port))
            # Counters declared but not yet incremented (collector errors) have no sample, only a TYPE line.
            for port in (web_port, worker_port):
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
                for line in text.splitlines():
                    if line.startswith("# TYPE ") and line.endswith(" counter"):
                        exposed.add(line.split()[2])  # the text format names counters with _total
            used = set()
            for expr in promql.shipped_expressions().values():
                used |= promql.metric_names(expr)
            missing = used - promql.recorded_names() - promql.POSTGRES_POOL_NAMES - promql.BEAT_NAMES - exposed
            missing -= promql.GENAI_NAMES
            assert not missing, f"queries use metrics nobody exposes: {sorted(missing)}"


FIRST_SCRAPE_FAMILIES = {
    "http_server_request_duration_seconds": "histogram",
    "http_server_exceptions_total": "counter",
    "http_server_active_requests": "gauge",
    "health_check_status": "gauge",
    "health_check_duration_seconds": "gauge",
}


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn"])
def test_the_first_scrape_announces_the_request_and_health_families(tmp_path, server):
    # gunicorn with 2 workers: multiprocess mode, where prometheus_client alone reports only the families some
    # process has a sample of; uvicorn without --workers: single-process mode. No request, no probe before it.
    env = metrics_env(tmp_path)
    port = int(env["METRICS_PORT"])
    start = support.gunicorn(env, tmp_path / "web.log", workers=2) if server == "gunicorn" else None
    start = start or support.uvicorn(env, tmp_path / "web.log")
    with start:
        support.wait_for_port("127.0.0.1", port, 20)
        response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        response.raise_for_status()
        text = "\n" + response.text
        for name, kind in FIRST_SCRAPE_FAMILIES.items():
            assert text.count(f"\n# HELP {name} ") == 1, f"{name} not announced once:\n{text[:3000]}"
            assert text.count(f"\n# TYPE {name} {kind}\n") == 1, f"{name} not announced once"
        assert "\nhttp_server_active_requests 0.0\n" in text
        assert "\nhttp_server_request_duration_seconds_count{" not in text  # no request was counted
