"""Infrastructure and business metrics (issue #9) under gunicorn (3 workers) and a Celery worker.

Real PostgreSQL (a fresh database, Django's psycopg pool configured), a throwaway Redis (cache, Celery broker
and the Redis collector; killed at the end) and real multiprocess aggregation.
"""

import time

import pytest
import requests

from tests import promql, support, support_load
from tests import support_metrics as sm

pytestmark = pytest.mark.integration

WORKERS = 3
POOL_MAX = 4
COLLECTOR_CACHE = 1.0  # the collectors' default cache_seconds: a change shows in the scrapes after it


def past_the_cache():
    time.sleep(COLLECTOR_CACHE + 0.2)


def chat(port, token, n, model="m1"):
    plan = [
        support_load.Request(
            "POST",
            "/api/chat",
            (("Authorization", f"Bearer {token}"),),
            f'{{"message": "one two three", "model": "{model}"}}'.encode(),
        )
    ] * n
    assert {r.status for r in support_load.send_all(port, plan, concurrency=3)} == {202}


def test_infrastructure_and_business_metrics(tmp_path):
    import psycopg
    import redis

    db_url, drop = create_db()
    try:
        with support.throwaway_redis() as broker:
            env = support.project_env(
                DATABASE_URL=db_url,
                DATABASE_POOL=str(POOL_MAX),
                REDIS_URL=broker.url,
                TESTPROJECT_VAR_DIR=str(tmp_path / "var"),
                METRICS_PORT=str(support.free_port()),
                METRICS_WORKER_PORT=str(support.free_port()),
                METRICS_MULTIPROC_DIR=str(tmp_path / "metrics"),
            )
            support.manage("migrate", "-v0", env=env)
            token = support.manage("demo_token", env=env).stdout.strip()
            web_port, worker_port = int(env["METRICS_PORT"]), int(env["METRICS_WORKER_PORT"])
            worker = support.celery_worker(env, tmp_path / "worker.log")
            with support.gunicorn(env, tmp_path / "web.log", workers=WORKERS) as server:
                worker.start()
                try:
                    support.wait_worker_ready(worker)
                    support.wait_for_port("127.0.0.1", web_port, 20)
                    support.wait_for_port("127.0.0.1", worker_port, 20)

                    # Business metrics: the same counter from a view (prompt) and a task (completion).
                    chat(server.port, token, 12)
                    campaign = requests.post(
                        server.url + "/api/campaigns",
                        json={"recipients": [f"u{i}@example.com" for i in range(5)] + ["nobody", "x@y.invalid"]},
                        headers={"Authorization": f"Bearer {token}"},
                        timeout=10,
                    )
                    assert campaign.status_code == 202

                    def finished():
                        s = sm.scrape(worker_port)
                        done = sm.value(s, "chat_messages_processed_total") == 12
                        return done and sm.value(s, "campaign_deliveries_total") == 7 and s

                    worker_samples = support.wait_until(finished, timeout=40, message="tasks done")
                    web = sm.scrape(web_port)
                    prompt = sm.value(web, "llm_tokens_total", model="m1", kind="prompt")
                    completion = sm.value(worker_samples, "llm_tokens_total", model="m1", kind="completion")
                    assert (prompt, completion) == (12 * 3, 12 * 4)  # "one two three", "echo: one two three"
                    total = sm.value(web, "llm_tokens_total") + sm.value(worker_samples, "llm_tokens_total")
                    assert total == 12 * 7
                    assert sm.value(worker_samples, "campaign_deliveries_total", result="succeeded") == 5
                    assert sm.value(worker_samples, "campaign_deliveries_total", result="failed") == 2
                    assert sm.value(worker_samples, "chat_reply_duration_seconds_count", model="m1") == 12
                    for _ in range(3):  # whichever worker serves the scrape
                        assert sm.value(sm.scrape(web_port), "llm_tokens_total", kind="prompt") == 36

                    # Active users: one user made every request.
                    assert sm.value(web, "active_users") == 1

                    # Pool: every worker that served a request has a pool of at most POOL_MAX.
                    pool_max = sm.value(web, "db_client_connection_max", alias="default")
                    used = sm.value(web, "db_client_connection_count", alias="default", state="used")
                    idle = sm.value(web, "db_client_connection_count", alias="default", state="idle")
                    assert pool_max in {POOL_MAX * n for n in range(1, WORKERS + 1)}
                    assert 1 <= used + idle <= pool_max
                    assert sm.value(worker_samples, "db_client_connection_max", alias="default") >= POOL_MAX

                    # Server side: N extra connections move the database's count by at least N.
                    past_the_cache()  # the previous scrape's result must not stand in for "before"
                    before = sm.value(sm.scrape(web_port), "db_server_database_connections", alias="default")
                    extra = [psycopg.connect(db_url.replace("postgres://", "postgresql://")) for _ in range(5)]
                    try:
                        past_the_cache()
                        after = sm.scrape(web_port)
                        assert sm.value(after, "db_server_database_connections", alias="default") >= before + 5
                        server_total = sm.value(after, "db_server_connections", alias="default")
                        assert server_total >= sm.value(after, "db_server_database_connections", alias="default")
                        max_connections = sm.value(after, "db_server_connections_max", alias="default")
                        ratio = sm.value(after, "db_server_connections_usage_ratio", alias="default")
                        assert max_connections >= server_total and 0 < ratio <= 1
                    finally:
                        for conn in extra:
                            conn.close()

                    # Redis: writing data moves used memory.
                    name = support_redis_name(broker.url)
                    before = sm.value(sm.scrape(web_port), "redis_memory_used_bytes", redis=name)
                    client = redis.Redis.from_url(broker.url.replace("/0", "/3"))
                    client.set("ballast", b"x" * 4_000_000)
                    past_the_cache()
                    after = sm.scrape(web_port)
                    assert sm.value(after, "redis_memory_used_bytes", redis=name) >= before + 3_000_000
                    assert sm.value(after, "redis_memory_max_bytes", redis=name) == 0
                    assert sm.value(after, "redis_connected_clients", redis=name) >= 2

                    # Processes: the master and its workers, summed; the host.
                    processes = sm.value(after, "process_group_processes")
                    assert processes == WORKERS + 1
                    assert sm.value(after, "process_resident_memory_bytes") > processes * 20e6
                    assert sm.value(after, "process_cpu_seconds_total") > 0
                    available = sm.value(after, "host_memory_available_bytes")
                    assert 0 < available < sm.value(after, "host_memory_total_bytes")
                    disk_used = sm.value(after, "disk_used_bytes", path=".")
                    assert 0 < disk_used < sm.value(after, "disk_total_bytes", path=".")
                    started = time.monotonic()
                    sm.scrape(web_port)
                    print(f"scrape with every collector on: {(time.monotonic() - started) * 1000:.0f} ms")
                    assert sm.value(after, "metrics_collector_errors_total") == 0

                    # Every metric name the shipped rules and dashboards use exists here or in the sqlite run.
                    exposed = sm.names(after) | sm.names(sm.scrape(worker_port))
                    used_names = set()
                    for expr in promql.shipped_expressions().values():
                        used_names |= promql.metric_names(expr)
                    missing = (used_names & promql.POSTGRES_POOL_NAMES) - exposed
                    assert not missing, missing
                finally:
                    worker.stop()

                # The dependency goes away: the scrape still answers and reports the error (the collector's
                # deadline, not this test's clock, bounds a hung read: tests/unit/test_infra_metrics.py).
                broker.stop()
                past_the_cache()
                down = sm.scrape(web_port)
                assert sm.value(down, "metrics_collector_errors_total", collector="redis") >= 1
                assert not sm.value(down, "redis_memory_used_bytes", redis=name)
                assert sm.value(down, "db_server_connections", alias="default") > 0  # the others carry on
                sm.scrape(web_port)
                support.wait_until(lambda: "metrics collector redis" in server.output(), message="log line")
            assert server.output().count("metrics collector redis") == 1  # rate-limited
    finally:
        drop()


def create_db():
    return support.create_postgres_database()


def support_redis_name(url):
    from django_observe.metrics.collectors.redis import redis_name

    return redis_name(url)
