import asyncio
import dataclasses
import threading
import time

from health_check import HealthCheck
from health_check.exceptions import ServiceUnavailable, ServiceWarning

from django_observe.health.registry import CheckSpec
from django_observe.health.runner import HealthRunner
from tests import support


@dataclasses.dataclass
class Counting(HealthCheck):
    delay: float = 0.05
    calls: int = 0

    def run(self):
        self.calls += 1
        time.sleep(self.delay)


@dataclasses.dataclass
class Failing(HealthCheck):
    def run(self):
        try:
            raise ConnectionError("connection to postgres://app:hunter2@db:5432/app refused")
        except ConnectionError as exc:
            raise ServiceUnavailable("Cannot connect to PostgreSQL") from exc


@dataclasses.dataclass
class Warning_(HealthCheck):
    async def run(self):
        raise ServiceWarning("Disk 95% full")


@dataclasses.dataclass
class Hanging(HealthCheck):
    async def run(self):
        await asyncio.sleep(30)  # longer than the backstop below: only the runner's timeout returns in time


@dataclasses.dataclass
class Broken(HealthCheck):
    def run(self):
        raise KeyError("password=hunter2")


def spec(check_id, check, critical=True, timeout=2.0):
    return CheckSpec(check_id, check, critical, timeout)


def test_single_flight_across_tasks_and_threads():
    check = Counting(delay=0.2)
    runner = HealthRunner([spec("slow", check)], ttl=5)

    async def many():
        return await asyncio.gather(*(runner.run(runner.select()) for _ in range(100)))

    results = []
    threads = [threading.Thread(target=lambda: results.append(asyncio.run(many()))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert check.calls == 1
    assert runner.runs == 1
    assert all(r[0].status == "pass" for batch in results for r in batch)


def test_cache_expires_after_ttl():
    check = Counting(delay=0)
    runner = HealthRunner([spec("c", check)], ttl=0.05)
    runner.run_sync(runner.select())
    runner.run_sync(runner.select())
    assert check.calls == 1
    time.sleep(0.06)
    runner.run_sync(runner.select())
    assert check.calls == 2


def test_run_sync_answers_a_cached_or_stale_result_without_an_event_loop(monkeypatch):
    check = Counting(delay=0)
    runner = HealthRunner([spec("c", check)], ttl=0.05)
    runner.run_sync(runner.select())  # the first run is waited for, in an event loop
    loops = []
    real_run = asyncio.run
    monkeypatch.setattr(asyncio, "run", lambda main, **kw: (loops.append(main), real_run(main, **kw))[1])
    (cached,) = runner.run_sync(runner.select(), serve_stale=True)
    assert cached.status == "pass" and loops == []
    time.sleep(0.06)
    release = threading.Event()
    check.run = lambda: release.wait(15)  # the refresh runs until the test lets it finish
    (stale,) = runner.run_sync(runner.select(), serve_stale=True)
    assert stale is cached  # answered from the last result while one refresh runs in the background
    assert runner.refreshes == 1 and "c" in runner._inflight
    release.set()
    support.wait_until(lambda: "c" not in runner._inflight)
    assert len(loops) == 1  # the refresh's own loop, in its thread
    assert runner.runs == 2


def test_failure_keeps_public_message_and_redacted_detail():
    runner = HealthRunner([spec("database", Failing())], ttl=0)
    (result,) = runner.run_sync(runner.select())
    assert result.status == "fail"
    assert result.error == "Cannot connect to PostgreSQL"
    assert "hunter2" not in result.detail
    assert result.detail.startswith("ConnectionError: connection to postgres://app:[REDACTED]@db")


def test_warning_and_unexpected_errors():
    runner = HealthRunner([spec("disk", Warning_(), critical=False), spec("x", Broken())], ttl=0)
    warn, broken = runner.run_sync(runner.select())
    assert (warn.status, warn.error) == ("warn", "Disk 95% full")
    assert (broken.status, broken.error) == ("fail", "Unexpected error")
    assert "hunter2" not in broken.detail


def test_timeout_bounds_a_hanging_check():
    runner = HealthRunner([spec("hang", Hanging(), timeout=0.1)], ttl=0)
    (result,) = support.finishes(lambda: runner.run_sync(runner.select()), timeout=20)  # a backstop, not a bound
    assert result.status == "fail"
    assert result.error == "Timed out after 0.1 seconds"


def test_select_critical_and_exclude():
    runner = HealthRunner([spec("a", Counting()), spec("b", Counting(), critical=False), spec("c", Counting())])
    assert [s.id for s in runner.select(critical_only=True)] == ["a", "c"]
    assert [s.id for s in runner.select(exclude={"a"})] == ["b", "c"]


def test_the_queue_check_runs_only_when_enabled():
    import types

    from django_observe import conf
    from django_observe.health.registry import build_specs

    app = types.SimpleNamespace(main="proj")

    def specs(options):
        config = conf.load_config(
            types.SimpleNamespace(DEBUG=False, DJANGO_OBSERVE={"HEALTH_CHECK_OPTIONS": options}), environ={}
        )
        return {spec.id: spec for spec in build_specs(config, databases=[], caches={}, celery_app=app)}

    assert "celery_queues" not in specs({}) and "celery" in specs({})
    enabled = specs({"celery_queues": {"enabled": True}})
    assert "celery_queues" in enabled and enabled["celery_queues"].critical is False
