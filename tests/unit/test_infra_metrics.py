"""Pure logic of the scrape-time collectors and the business metrics API."""

import asyncio
import logging
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from prometheus_client import REGISTRY, CollectorRegistry

from django_observe.metrics import business
from django_observe.metrics.collectors import base, disk, host, process
from django_observe.metrics.collectors.active_users import ActiveUsers
from django_observe.metrics.collectors.base import Deadline, ScrapeErrors
from django_observe.metrics.collectors.redis import RedisCollector, redis_name
from tests import support


def samples(collector):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in collector.collect() for s in m.samples}


# --- errors and deadlines


def test_errors_are_counted_and_logged_once_per_period(caplog):
    errors = ScrapeErrors(log_every=300)
    with caplog.at_level(logging.WARNING, logger="django_observe.metrics"):
        for _ in range(5):
            errors.failed("redis", ConnectionError("redis://:secret@host"), "host:6379/0")
    assert errors.counts == {"redis": 5}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "redis (host:6379/0) failed: ConnectionError" in lines[0]
    assert "secret" not in lines[0]
    family = samples(base.ErrorsCollector("", errors))
    assert family == {("metrics_collector_errors_total", (("collector", "redis"),)): 5}


def test_deadline_bounds_a_hung_read_and_does_not_start_it_twice():
    release = threading.Event()  # the read waits for it with no timeout of its own: only the deadline returns
    deadline = Deadline(0.1)
    with pytest.raises(TimeoutError):
        deadline.run("slow", release.wait)
    with pytest.raises(base.CollectorBusy):
        deadline.run("slow", release.wait)
    assert not release.is_set()  # both returned while the read still hung
    release.set()
    time.sleep(0.05)
    assert deadline.run("slow", lambda: 42) == 42
    with pytest.raises(ZeroDivisionError):
        deadline.run("broken", lambda: 1 / 0)


def test_a_redis_that_accepts_but_never_answers_does_not_stall_the_scrape():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        errors = ScrapeErrors()
        collector = RedisCollector("", errors, Deadline(0.3), [f"redis://user:pw@127.0.0.1:{port}/2"])
        # The listener never answers: without the deadline the read would wait forever (30 s is only a backstop).
        assert support.finishes(lambda: samples(collector), timeout=30) == {}
        assert errors.counts["redis"] == 1
        registry = CollectorRegistry()
        registry.register(collector)  # describe() gives the names without reading Redis
        assert "redis_memory_used_bytes" in {m.name for m in collector.describe()}
    finally:
        listener.close()


def test_redis_names_never_carry_credentials():
    assert redis_name("redis://:hunter2@cache.internal:6380/3") == "cache.internal:6380/3"
    assert redis_name("rediss://user:pw@h") == "h:6379/0"
    assert redis_name("unix:///run/redis.sock") == "unix:/run/redis.sock"
    collector = RedisCollector("", ScrapeErrors(), Deadline(0.1), ["redis://a@h/0", "redis://b@h/0"])
    assert list(collector.targets) == ["h:6379/0", "h:6379/0#1"]


# --- disk, processes, host


def test_disk_reports_used_and_total_and_counts_a_missing_path(tmp_path):
    errors = ScrapeErrors()
    found = samples(disk.DiskCollector("ns_", errors, Deadline(1), [str(tmp_path), str(tmp_path / "missing")]))
    used = found[("ns_disk_used_bytes", (("path", str(tmp_path)),))]
    total = found[("ns_disk_total_bytes", (("path", str(tmp_path)),))]
    assert 0 < used < total
    assert errors.counts == {"disk": 1}


def test_processes_are_summed_over_the_group_and_cpu_stays_monotonic(tmp_path):
    # The child says when it runs: read right after Popen, it may still be exec'ing with no resident pages.
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"], stdout=subprocess.PIPE
    )
    try:
        assert child.stdout.readline() == b"up\n"
        group = tmp_path / str(os.getpid())
        group.mkdir()
        (group / f"counter_{child.pid}.db").write_bytes(b"")
        (group / "gauge_livesum_999999999.db").write_bytes(b"")  # a pid that does not exist
        collector = process.ProcessesCollector("", ScrapeErrors(), Deadline(1), str(group), cache_seconds=0)
        first = samples(collector)
        assert first[("process_group_processes", ())] == 2
        mine = process.read_process(os.getpid())
        assert first[("process_resident_memory_bytes", ())] > mine[1]
        cpu_before = first[("process_cpu_seconds_total", ())]
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    second = samples(collector)
    assert second[("process_group_processes", ())] == 1
    assert second[("process_cpu_seconds_total", ())] >= cpu_before


def test_host_memory_and_cgroup_limit(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:       1000 kB\nMemFree:   10 kB\nMemAvailable:    400 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text("524288\n")
    (cgroup / "memory.current").write_text("262144\n")
    (cgroup / "cpu.max").write_text("50000 100000\n")
    collector = host.HostCollector("", ScrapeErrors(), Deadline(1), str(tmp_path / "meminfo"), str(cgroup))
    found = samples(collector)
    assert found[("host_memory_total_bytes", ())] == 1024000
    assert found[("host_memory_available_bytes", ())] == 409600
    assert found[("host_cpu_cores", ())] == 0.5
    assert found[("cgroup_memory_limit_bytes", ())] == 524288
    assert found[("cgroup_memory_used_bytes", ())] == 262144


# --- active users


class Clock:
    def __init__(self):
        self.now = 1_000_000 * 60.0

    def __call__(self):
        return self.now


def test_active_users_are_distinct_across_processes_and_leave_the_window(tmp_path):
    clock = Clock()
    one, two = ActiveUsers(5, str(tmp_path), clock), ActiveUsers(5, str(tmp_path), clock)
    for user in ("1", "2", "1", "1"):
        one.seen(user)
    for user in ("2", "3"):
        two.seen(user)
    assert one.count() == two.count() == 3
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) == 4 * 8  # one append per new user, minute and process
    clock.now += 3 * 60
    two.seen("4")
    assert one.count() == 4
    clock.now += 2 * 60  # minute 0 leaves the 5-minute window
    assert one.count() == 1
    assert len(list(tmp_path.iterdir())) == 1


def test_active_users_in_memory_without_a_directory():
    clock = Clock()
    users = ActiveUsers(2, None, clock)
    users.seen("a")
    clock.now += 60
    users.seen("b")
    assert users.count() == 2
    clock.now += 60
    assert users.count() == 1


# --- business metrics


def test_counter_from_the_api_applies_the_guard_and_the_registry():
    tokens = business.counter("unit_tokens_total", "Tokens.", ["model"])
    assert business.counter("unit_tokens", "Tokens.", ["model"]) is tokens  # a second import
    with pytest.raises(ValueError):
        business.counter("unit_tokens", "Tokens.", ["other"])
    tokens.inc(5, model="a")
    tokens.labels("a").inc(2)
    tokens.labels(model="b").inc()
    assert REGISTRY.get_sample_value("unit_tokens_total", {"model": "a"}) == 7
    for i in range(250):
        tokens.inc(model=f"m{i}")
    assert REGISTRY.get_sample_value("unit_tokens_total", {"model": "__other__"}) >= 49
    with pytest.raises(ValueError):
        tokens.inc(1, wrong="x")


def test_declarations_are_validated():
    with pytest.raises(ValueError):
        business.counter("1bad", "x")
    with pytest.raises(ValueError):
        business.histogram("unit_h_bad", "x", buckets=(1, 0.5))
    with pytest.raises(ValueError):
        business.gauge("unit_g_bad", "x", ["value"])
    with pytest.raises(TypeError):
        business.counter("unit_c_str", "x", "model")


def test_timed_as_context_manager_and_decorator_sync_and_async():
    duration = business.histogram("unit_duration_seconds", "Duration.", ["step"], buckets=(0.01, 1))
    with business.timed(duration, step="block"):
        time.sleep(0.02)

    @business.timed(duration, step="sync")
    def work():
        raise RuntimeError

    @duration.time(step="async")
    async def awork():
        await asyncio.sleep(0)
        return 3

    with pytest.raises(RuntimeError):
        work()
    assert asyncio.run(awork()) == 3
    get = REGISTRY.get_sample_value
    assert get("unit_duration_seconds_count", {"step": "block"}) == 1
    assert get("unit_duration_seconds_bucket", {"step": "block", "le": "0.01"}) == 0
    assert get("unit_duration_seconds_count", {"step": "sync"}) == 1  # also when it raises
    assert get("unit_duration_seconds_count", {"step": "async"}) == 1


def test_gauge_modes():
    users = business.gauge("unit_sessions", "Sessions.", multiprocess_mode="livesum")
    users.inc()
    users.inc()
    users.dec()
    assert REGISTRY.get_sample_value("unit_sessions") == 1
    with pytest.raises(ValueError):
        business.gauge("unit_bad_mode", "x", multiprocess_mode="average")


def test_setup_does_not_import_prometheus_client_before_multiprocess_mode_is_chosen():
    code = (
        "import sys; import django_observe.metrics.setup, django_observe.metrics; "
        "print('prometheus_client.values' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_business_guard_bounds_series_not_values_per_label():
    from django_observe.runtime import get_runtime

    limit = get_runtime().metrics.catalogue.max_label_values
    pairs = business.counter("unit_pairs_total", "Pairs.", ["a", "b"])
    side = int(limit**0.5) + 5  # side*side combinations, far more than the limit, each label under it
    for i in range(side):
        for j in range(side):
            pairs.inc(a=f"a{i}", b=f"b{j}")
    series = [s for m in REGISTRY.collect() if m.name == "unit_pairs" for s in m.samples if s.name.endswith("_total")]
    assert len(series) <= limit + 1
    assert REGISTRY.get_sample_value("unit_pairs_total", {"a": "__other__", "b": "__other__"}) > 0
    assert sum(s.value for s in series) == side * side  # nothing is lost, only folded


def test_business_label_values_are_bounded_in_length():
    long = business.counter("unit_long_total", "Long.", ["v"])
    long.inc(v="x" * 100_000)
    values = [s.labels["v"] for m in REGISTRY.collect() if m.name == "unit_long" for s in m.samples]
    assert values and all(len(v) <= business.MAX_LABEL_LENGTH for v in values)
