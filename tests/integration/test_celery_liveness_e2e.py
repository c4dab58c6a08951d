"""Celery per worker: the heartbeat probe with no broker round trip, the queue-consumer check, beat metrics.

A real prefork worker on Redis; a real ``celery beat`` with a one-second entry.
"""

import datetime
import signal
import time

import pytest
from celery import Celery
from health_check.exceptions import ServiceUnavailable
from kombu import Queue

from django_observe.health.checks import CeleryQueues
from tests import support, support_metrics

pytestmark = pytest.mark.integration

MAX_AGE = "3"


def probe(env):
    result = support.manage("observe_health", "--celery-worker", "--max-age", MAX_AGE, env=env, check=False)
    return result.returncode, result.stdout.strip()


@pytest.fixture
def worker_env(tmp_path):
    url = support.redis_url(14)
    import redis

    redis.Redis.from_url(url).flushdb()
    return support.sqlite_env(
        tmp_path,
        REDIS_URL=url,
        CELERY_HEARTBEAT_FILE=str(tmp_path / "worker.heartbeat"),
        CELERY_HEARTBEAT_INTERVAL="0.5",
    )


def test_the_probe_follows_the_worker_process_and_each_queue_needs_a_consumer(worker_env, tmp_path):
    assert probe(worker_env)[0] == 1  # no worker yet: no file
    worker = support.celery_worker(worker_env, tmp_path / "worker.log").start()
    try:
        support.wait_worker_ready(worker)
        code, line = probe(worker_env)
        assert code == 0 and line.startswith("celery worker alive"), line

        app = Celery("probe", broker=worker_env["REDIS_URL"])
        timeout = datetime.timedelta(seconds=2)
        assert CeleryQueues(app=app, timeout=timeout).run().value == 1  # the default queue "celery" is consumed
        app.conf.task_queues = [Queue("celery"), Queue("reports")]
        with pytest.raises(ServiceUnavailable, match="No worker consumes reports"):
            CeleryQueues(app=app, timeout=timeout).run()

        worker.signal(signal.SIGSTOP)  # hung: the process exists, its consumer loop does not run
        time.sleep(float(MAX_AGE) + 0.5)
        code, line = probe(worker_env)
        assert code == 1 and "not alive" in line and "limit 3 s" in line, line
        worker.signal(signal.SIGCONT)
        support.wait_until(lambda: probe(worker_env)[0] == 0, timeout=30, message="heartbeat again after SIGCONT")

        worker.signal(signal.SIGKILL)  # gone without shutdown: the file stays, and ages
        time.sleep(float(MAX_AGE) + 0.5)
        code, line = probe(worker_env)
        assert code == 1 and "not alive" in line, line
    finally:
        worker.stop()


def test_beat_exports_the_last_run_and_interval_of_each_entry(tmp_path):
    port = support.free_port()
    env = support.project_env(
        TESTPROJECT_VAR_DIR=str(tmp_path / "var"), TESTPROJECT_BEAT_EVERY="1", METRICS_WORKER_PORT=str(port)
    )
    before = time.time()
    with support.celery_beat(env, tmp_path / "beat.log", tmp_path / "beat-schedule") as beat:
        support.wait_for_port("127.0.0.1", port, 20, beat.proc)
        first = support.wait_until(
            lambda: support_metrics.value(
                support_metrics.scrape(port), "celery_beat_last_run_timestamp_seconds", entry="add-every-n"
            ),
            timeout=15,
            message="beat sent the entry",
        )
        assert before <= first <= time.time()  # a Unix timestamp of this run, not a duration or a monotonic clock
        later = support.wait_until(
            lambda: (
                (
                    v := support_metrics.value(
                        support_metrics.scrape(port), "celery_beat_last_run_timestamp_seconds", entry="add-every-n"
                    )
                )
                > first
                and v
            ),
            timeout=30,
            message="beat sent the entry again",
        )
        assert first < later <= time.time()
        samples = support_metrics.scrape(port)
        interval = support_metrics.value(samples, "celery_beat_entry_interval_seconds", entry="add-every-n")
        assert 0.5 <= interval <= 1.0


def test_by_default_each_worker_beats_its_own_file_in_a_private_directory(tmp_path):
    """No CELERY_HEARTBEAT_FILE: two workers on one host each write ``celery-<node name>.heartbeat`` in the
    user's private runtime directory, and the probe checks both."""
    url = support.redis_url(13)
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir(mode=0o700)
    env = support.sqlite_env(tmp_path, REDIS_URL=url, CELERY_HEARTBEAT_INTERVAL="0.5", XDG_RUNTIME_DIR=str(runtime_dir))
    private = runtime_dir / "django_observe"
    workers = [support.celery_worker(env, tmp_path / f"w{i}.log").start() for i in (1, 2)]
    try:
        support.wait_until(
            lambda: len(list(private.glob("celery-*.heartbeat"))) == 2, timeout=60, message="two heartbeat files"
        )
        assert (private.stat().st_mode & 0o777) == 0o700
        code, out = probe(env)
        assert code == 0 and out.count("celery worker alive") == 2, out
        workers[1].signal(signal.SIGSTOP)  # one of the two hangs: the probe says so
        support.wait_until(lambda: probe(env)[0] == 1, timeout=30, message="the hung worker's file ages")
        workers[1].signal(signal.SIGCONT)
    finally:
        for worker in workers:
            worker.stop()
