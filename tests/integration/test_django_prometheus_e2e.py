"""django-prometheus installed as its docs say (testproject with DJANGO_PROMETHEUS=1): its metrics on our ports.

Its PostgreSQL engine, local-memory cache backend, middleware, model mixin and migration gauges, under gunicorn
with three workers and a Celery prefork worker: summed exactly over the processes, no port of its own, no
family exposed twice.
"""

import collections

import pytest
import requests

from tests import support
from tests import support_metrics as sm

pytestmark = pytest.mark.integration

REQUESTS = 30
TASKS = 5


def families(port: int) -> collections.Counter:
    """How often each family is declared (``# TYPE`` lines) on a metrics port."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return collections.Counter(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE "))


def test_django_prometheus_metrics_are_summed_on_our_ports(tmp_path):
    url, drop = support.create_postgres_database()
    web_port, worker_port = support.free_port(), support.free_port()
    env = support.project_env(
        DATABASE_URL=url,
        DJANGO_PROMETHEUS="1",
        TESTPROJECT_VAR_DIR=str(tmp_path / "var"),
        METRICS_PORT=str(web_port),
        METRICS_WORKER_PORT=str(worker_port),
        METRICS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    try:
        support.manage("migrate", "-v0", env=env)
        worker = support.celery_worker(env, tmp_path / "worker.log")
        with support.gunicorn(env, tmp_path / "web.log", workers=3) as server:
            worker.start()
            try:
                support.wait_for_port("127.0.0.1", web_port, 20)
                session = requests.Session()
                for _ in range(REQUESTS):
                    assert session.get(server.url + "/api/stats", timeout=10).status_code == 200
                web = sm.scrape(web_port)
                # Its counters, summed over the three workers (each request is one GET, one cache get).
                assert sm.value(web, "django_http_requests_total_by_method_total", method="GET") == REQUESTS
                assert sm.value(web, "django_http_responses_total_by_status_total", status="200") == REQUESTS
                assert sm.value(web, "django_cache_get_total", backend="locmem") == REQUESTS
                assert sm.value(web, "django_db_execute_total", alias="default", vendor="postgresql") >= REQUESTS
                # ... and ours, next to them, for the same requests.
                assert sm.value(web, "http_server_request_duration_seconds_count", route="api/stats") == REQUESTS
                assert sm.value(web, "cache_operations_total", operation="get") == REQUESTS
                assert sm.value(web, "db_client_operation_duration_seconds_count", alias="default") >= REQUESTS
                # Ours: one series per database, computed once per scrape.
                assert [k for k in web if k[0] == "db_migrations_unapplied"] == [
                    ("db_migrations_unapplied", (("alias", "default"),))
                ]
                assert sm.value(web, "db_migrations_unapplied") == 0
                assert sm.value(web, "db_migrations_applied", alias="default") > 10
                # Its migration gauges (PROMETHEUS_EXPORT_MIGRATIONS): one series per worker, label pid
                # (system check W005): summing them would count each migration once per process.
                theirs = [labels for name, labels in web if name == "django_migrations_applied_total"]
                assert len({dict(labels)["pid"] for labels in theirs}) == 3
                # No family twice, and no port but gunicorn's and ours.
                declared = families(web_port)
                assert not [name for name, n in declared.items() if n > 1]
                assert {"django_http_requests_total_by_method_total", "http_server_request_duration_seconds"} <= set(
                    declared
                )
                assert support.listening_ports(server) == {server.port, web_port}

                support.wait_worker_ready(worker)
                support.wait_for_port("127.0.0.1", worker_port, 20)
                publish = (
                    "from django.contrib.auth import get_user_model\n"
                    "from testproject.demo.tasks import store_message\n"
                    "get_user_model().objects.create(username='demo')\n"
                    f"for i in range({TASKS}):\n    store_message.delay(f'message {{i}}')\n"
                )
                support.manage("shell", "-c", publish, env=env)
                task = "testproject.demo.tasks.store_message"
                tasks = support.wait_until(
                    lambda: (
                        (s := sm.scrape(worker_port))
                        and sm.value(s, "celery_tasks_total", task=task, state="succeeded") == TASKS
                        and s
                    ),
                    timeout=20,
                    message="tasks done",
                )
                # Inserted in the pool's children: the mixin's counter and ours, exact.
                assert sm.value(tasks, "django_model_inserts_total", model="message") == TASKS
                assert sm.value(tasks, "db_model_operations_total", model="demo.Message", operation="insert") == TASKS
                assert sm.value(tasks, "django_db_execute_total", vendor="postgresql") >= TASKS
                assert not [name for name, n in families(worker_port).items() if n > 1]
                assert support.listening_ports(worker) == {worker_port}
            finally:
                worker.stop()
        assert "Traceback" not in server.output(), server.output()[-3000:]
    finally:
        drop()
