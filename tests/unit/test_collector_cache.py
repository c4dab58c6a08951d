"""The collectors' result cache: a flood of scrapes reaches each dependency once per interval (counting fakes)."""

import threading
import time
import types

import pytest
from prometheus_client import CollectorRegistry

from django_observe.metrics.collectors import base, disk, host
from django_observe.metrics.collectors.base import Deadline, ResultCache, ScrapeErrors
from django_observe.metrics.collectors.celery import CeleryCollector
from django_observe.metrics.collectors.database import DatabaseCollector, PoolRecorder
from django_observe.metrics.collectors.redis import RedisCollector


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Counter:
    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()

    def hit(self):
        with self.lock:
            self.calls += 1


def fake_database(calls):
    class Connection:
        closed = False

        def execute(self, sql):
            calls.hit()
            return types.SimpleNamespace(fetchone=lambda: (10, 4, 100, 3))

    databases = {"default": {"ENGINE": "django.db.backends.postgresql"}}
    collector = DatabaseCollector("", ScrapeErrors(), Deadline(1), databases, connect=lambda alias: Connection())
    return collector, [collector.cache]


def fake_redis(calls):
    class Client:
        def info(self):
            calls.hit()
            return {"used_memory": 1, "maxmemory": 0, "connected_clients": 1}

    collector = RedisCollector("", ScrapeErrors(), Deadline(1), ["redis://h/0"])
    collector._clients["h:6379/0"] = Client()
    return collector, [collector.cache]


def fake_disk(calls, monkeypatch, tmp_path):
    statvfs = disk.os.statvfs

    def counting(path):
        calls.hit()
        return statvfs(path)

    monkeypatch.setattr(disk.os, "statvfs", counting)
    collector = disk.DiskCollector("", ScrapeErrors(), Deadline(1), [str(tmp_path)])
    return collector, [collector.cache]


def fake_host(calls, tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 1000 kB\nMemAvailable: 400 kB\n")

    collector = host.HostCollector("", ScrapeErrors(), Deadline(1), str(meminfo), str(tmp_path / "cgroup"))
    read = collector.read

    def counting():
        calls.hit()
        return read()

    collector.read = counting
    return collector, [collector.cache]


def fake_celery(calls):
    class Channel:
        def queue_declare(self, queue, passive):
            calls.hit()
            return types.SimpleNamespace(message_count=3)

    class Connection:
        default_channel = Channel()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def ensure_connection(self, **kw):
            pass

    app = types.SimpleNamespace(
        conf=types.SimpleNamespace(task_queues=None, task_default_queue="celery"),
        connection_for_read=Connection,
        control=types.SimpleNamespace(ping=lambda timeout: calls.hit() or [{"w1": "pong"}]),
    )
    collector = CeleryCollector(app, "", ScrapeErrors(), workers_ttl=1.0)
    return collector, [collector.queue_cache, collector.workers_cache, collector.ping_answer]


@pytest.fixture(params=["database", "redis", "disk", "host", "celery"])
def dependency(request, monkeypatch, tmp_path):
    calls = Counter()
    builders = {
        "database": lambda: fake_database(calls),
        "redis": lambda: fake_redis(calls),
        "disk": lambda: fake_disk(calls, monkeypatch, tmp_path),
        "host": lambda: fake_host(calls, tmp_path),
        "celery": lambda: fake_celery(calls),
    }
    collector, caches = builders[request.param]()
    clock = Clock()
    for cache in caches:
        cache.clock = clock
    return collector, calls, clock, 2 if request.param == "celery" else 1


def names(collector):
    return sorted(s.name for m in collector.collect() for s in m.samples)


def test_fifty_scrapes_in_one_interval_reach_the_dependency_once(dependency):
    collector, calls, clock, reads_per_scrape = dependency
    first = names(collector)
    assert first  # the read worked
    for _ in range(49):
        clock.now += 0.01
        assert names(collector) == first  # the same samples, from the cache
    assert calls.calls == reads_per_scrape
    clock.now += 1.0  # the interval is over
    for _ in range(50):
        assert names(collector) == first
    assert calls.calls == 2 * reads_per_scrape


def test_concurrent_scrapes_wait_for_the_read_in_flight_instead_of_failing():
    calls, errors = Counter(), ScrapeErrors()

    def slow_read():
        calls.hit()
        time.sleep(0.2)
        return ["families"]

    cache = ResultCache(1.0)
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(base.guarded_read("slow", slow_read, Deadline(1), errors, cache, []))
        )
        for _ in range(50)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls.calls == 1
    assert results == [["families"]] * 50
    assert errors.counts == {}


def test_a_failure_is_counted_once_per_interval_and_zero_disables_the_cache():
    errors, clock = ScrapeErrors(), Clock()
    cache = ResultCache(1.0, clock)

    def broken():
        raise ConnectionError("down")

    for _ in range(50):
        assert base.guarded_read("redis", broken, Deadline(1), errors, cache, []) == []
    assert errors.counts == {"redis": 1}
    clock.now += 1.0
    base.guarded_read("redis", broken, Deadline(1), errors, cache, [])
    assert errors.counts == {"redis": 2}

    calls = Counter()
    uncached = ResultCache(0)
    for _ in range(5):
        uncached.get(calls.hit)
    assert calls.calls == 5
    with pytest.raises(ValueError):
        ResultCache(-1)


def test_django_keeps_its_psycopg_pools_in_the_private_dict_the_pool_recorder_reads():
    """PoolRecorder reads DatabaseWrapper._connection_pools, since the public ``pool`` property opens a pool that
    does not exist yet. If Django renames or drops the dict, this fails: rewrite PoolRecorder.record."""
    import inspect

    from django.db.backends.postgresql.base import DatabaseWrapper

    assert isinstance(DatabaseWrapper.__dict__.get("_connection_pools"), dict), "Django dropped _connection_pools"
    assert "self._connection_pools[self.alias]" in inspect.getsource(DatabaseWrapper.pool.fget), (
        "DatabaseWrapper.pool no longer keeps pools in _connection_pools by alias"
    )

    stats = {"pool_size": 3, "pool_available": 1, "pool_max": 4, "requests_waiting": 2}
    DatabaseWrapper._connection_pools["observe_test"] = types.SimpleNamespace(get_stats=lambda: stats)
    try:
        registry = CollectorRegistry()
        PoolRecorder("", ["observe_test", "absent"], registry=registry).record()
    finally:
        del DatabaseWrapper._connection_pools["observe_test"]
    get = registry.get_sample_value
    assert get("db_client_connection_count", {"alias": "observe_test", "state": "used"}) == 2
    assert get("db_client_connection_max", {"alias": "observe_test"}) == 4
    assert get("db_client_connection_pending_requests", {"alias": "observe_test"}) == 2
    assert get("db_client_connection_max", {"alias": "absent"}) is None


def test_celery_keeps_a_ping_answer_for_workers_ttl_but_retries_a_failed_ping_after_the_interval():
    answers = [RuntimeError("broker busy"), [{"w1": "pong"}], [{"w1": "pong"}, {"w2": "pong"}]]

    def ping(timeout):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    app = types.SimpleNamespace(control=types.SimpleNamespace(ping=ping))
    errors, clock = ScrapeErrors(), Clock()
    collector = CeleryCollector(app, "", errors, workers_ttl=10.0)
    collector.workers_cache.clock = collector.ping_answer.clock = clock
    read = lambda: base.guarded_read(  # noqa: E731
        "celery_workers", collector._worker_count, collector.deadline, errors, collector.workers_cache
    )
    assert read() is None and errors.counts == {"celery_workers": 1}
    clock.now += 1.0
    assert read() == 1  # the failure was kept one interval, not workers_ttl
    clock.now += 5.0
    assert read() == 1  # the answer is kept workers_ttl
    clock.now += 5.0
    assert read() == 2
