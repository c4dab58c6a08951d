"""The console records Celery tasks run by a real worker (prefork children), published from gunicorn: runs,
failures, queue wait, and the failed run with the publishing request's correlation ID."""

import sqlite3

import pytest
import requests

from tests import support

pytestmark = pytest.mark.integration


def _jobs(db: str) -> dict[str, tuple[int, int]]:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            rows = conn.execute(
                "SELECT type, key, sum(count), sum(errors) FROM observe_console_aggregate "
                "WHERE period = 60 AND type IN ('job', 'job_wait', 'job_enqueued') GROUP BY type, key"
            ).fetchall()
    except sqlite3.OperationalError:  # locked by a flush: ask again
        return {}
    return {f"{kind} {key}": (int(count), int(errors)) for kind, key, count, errors in rows}


def test_a_real_worker_reports_its_runs_to_the_console(tmp_path):
    env = support.sqlite_env(tmp_path, TESTPROJECT_CONSOLE="1", CONSOLE_FLUSH_SECONDS="0.3")
    db = env["SQLITE_PATH"]
    with (
        support.gunicorn(env, tmp_path / "web.log", workers=1) as server,
        support.running_worker(env, tmp_path / "worker.log"),
    ):
        failed = requests.get(f"{server.url}/api/enqueue?fail=1", timeout=10)
        assert failed.status_code == 202
        assert requests.get(f"{server.url}/api/enqueue", timeout=10).status_code == 202
        expected = {
            "job testproject.demo.tasks.fail": (1, 1),
            "job testproject.demo.tasks.add": (1, 0),
            "job_enqueued testproject.demo.tasks.fail": (1, 0),
            "job_enqueued testproject.demo.tasks.add": (1, 0),
        }
        support.wait_until(
            lambda: all(_jobs(db).get(k) == v for k, v in expected.items()), timeout=30, message="the task runs"
        )
        assert _jobs(db)["job_wait testproject.demo.tasks.add"][0] == 1  # queue wait measured in the worker
    with sqlite3.connect(db) as conn:
        (row,) = conn.execute("SELECT task, correlation_id, error FROM observe_console_job").fetchall()
    assert row[0] == "testproject.demo.tasks.fail"
    assert row[1] == failed.headers["X-Correlation-ID"]  # the request that published it
    assert "planned failure" in row[2]
