"""The console's recorder: in-memory aggregation, bounds, folding into period buckets, percentiles."""

import pytest

from django_observe.console import recorder as rec
from django_observe.console.charts import line_chart
from django_observe.console.recorder import (
    BINS,
    BOUNDS_MS,
    Batch,
    ConsoleOptions,
    ConsoleRecorder,
    exception_group,
    normalize_sql,
    percentile,
)
from django_observe.console.store import fold

NOW = 1_800_000_000.0  # a fixed clock: minute boundaries are known


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


def recorder(**options):
    r = ConsoleRecorder(ConsoleOptions(**options), clock=Clock())
    r.flusher = object()  # no thread in unit tests
    return r


def test_requests_aggregate_by_endpoint_and_minute_with_a_histogram():
    r = recorder()
    for ms in (3, 7, 7, 2000):
        r.add("request", "GET api/ping", ms, histogram=True)
    r.add("request", "GET api/ping", 1, errors=1, histogram=True, at=NOW + 60)
    batch = r.take()
    minute = int(NOW // 60)
    cell = batch.cells[("request", "GET api/ping", minute)]
    assert (cell.count, cell.total, cell.peak, cell.errors) == (4, 2017, 2000, 0)
    assert cell.hist[0] == 1 and cell.hist[1] == 2 and cell.hist[BOUNDS_MS.index(2500)] == 1
    assert batch.cells[("request", "GET api/ping", minute + 1)].errors == 1
    assert not r.take()  # swapped out


def test_memory_is_bounded_and_overflow_counted():
    r = recorder(max_keys=10, max_entries=2)
    for i in range(15):
        r.add("query", f"SELECT {i}")
    for i in range(5):
        r.entry("request", {"i": i})
    batch = r.take()
    assert len(batch.cells) == 10
    assert len(batch.entries["request"]) == 2
    assert batch.overflow == 5 + 3


def test_fold_writes_one_row_per_period_and_skips_buckets_outside_their_window():
    batch = Batch()
    r = recorder()
    r.add("request", "GET a", 10.0, histogram=True)  # now
    r.add("request", "GET a", 30.0, histogram=True, at=NOW - 2 * 3600)  # too old for the 1h period
    batch = r.take()
    rows = fold(batch, NOW)
    periods = sorted({size for size, *_ in rows})
    assert periods == [60, 360, 1440, 10080]
    assert sum(c.count for (size, *_), c in rows.items() if size == 60) == 1
    assert sum(c.count for (size, *_), c in rows.items() if size == 10080) == 2
    for size, bucket, _, _ in rows:
        assert bucket % size == 0


def test_percentiles_come_from_merged_buckets():
    hist = [0] * BINS
    hist[BOUNDS_MS.index(10)] = 90  # 5-10 ms
    hist[BOUNDS_MS.index(1000)] = 10  # 600-1000 ms
    assert 5 <= percentile(hist, 0.5) <= 10
    assert 600 <= percentile(hist, 0.95) <= 1000
    assert percentile([0] * BINS, 0.5) is None
    slow = [0] * BINS
    slow[-1] = 3
    assert percentile(slow, 0.99) == BOUNDS_MS[-1]


def test_sql_is_normalized_without_literals():
    sql = "SELECT * FROM t WHERE name = 'hunter2' AND id IN (%s, %s, %s) AND n > 42 AND x = 'it''s'"
    assert normalize_sql(sql) == "SELECT * FROM t WHERE name = ? AND id IN (...) AND n > ? AND x = ?"
    assert "hunter2" not in normalize_sql(sql)
    assert normalize_sql('SELECT "t1"."c2" FROM "t1"') == 'SELECT "t1"."c2" FROM "t1"'
    assert normalize_sql('RELEASE SAVEPOINT "s140623175187328_x12"') == 'RELEASE SAVEPOINT "s?_x?"'


def test_exceptions_group_by_type_and_innermost_location():
    def boom():
        raise ValueError("token=abc123")

    groups = set()
    for _ in range(2):
        try:
            boom()
        except ValueError as exc:
            groups.add(exception_group(exc))
    ((kind, location),) = groups
    assert kind == "ValueError" and location.endswith(
        f"{__file__.rsplit('/', 1)[-1]}:{boom.__code__.co_firstlineno + 1}"
    )


def test_exception_occurrences_are_redacted():
    r = recorder()
    try:
        raise RuntimeError("failed with password=hunter2")
    except RuntimeError as exc:
        r.exception(exc, correlation_id="req_1", where="GET api/x")
    (entry,) = r.take().entries["exception"]
    assert "hunter2" not in entry["message"] and "hunter2" not in entry["traceback"]


def test_stored_texts_use_the_projects_keys_and_routes_and_leave_llm_error_texts_out():
    """The console stores what the log lines write (#34 Done-when: the console in the hostile corpus)."""
    from django_observe.llm.content import WITHHELD, WithheldTexts

    r = recorder(redact_keys=("ssn", "invite/<code>/accept/"))
    r.withheld = WithheldTexts()
    prompt_error = RuntimeError("Error code: 400 - 'summarise the nightingale memo' violates the policy")
    r.withheld.add(prompt_error)
    for error in (RuntimeError("lookup failed for ssn=123-45-6789 on /invite/c0de5ecret/accept/"), prompt_error):
        try:
            raise error
        except RuntimeError as exc:
            r.exception(exc, correlation_id="req_1", where="GET api/x")
    r.job("t", "q", 1.0, failed=True, wait_ms=None, correlation_id="req_1", error=prompt_error)
    entries = r.take().entries
    stored = repr(entries)
    assert "123-45-6789" not in stored and "c0de5ecret" not in stored and "nightingale" not in stored, stored
    assert entries["exception"][1]["message"] == WITHHELD


class FakeRequest:
    path = "/api/items/1"

    def __init__(self):
        self.__dict__["resolver_match"] = None


def test_a_slow_request_is_kept_with_its_timeline_and_n_plus_one():
    r = recorder(slow_request_ms=100, repeated_query_threshold=2)
    r.begin()
    for _ in range(3):
        r.query("SELECT * FROM t WHERE id = %s", 0.001, 0)
    r.end(
        FakeRequest(), 200, 150_000_000, "req_abc", route="api/items/<int:pk>", method="GET", user="7", exception=None
    )
    batch = r.take()
    (kept,) = batch.entries["request"]
    assert kept["correlation_id"] == "req_abc" and kept["reason"] == "slow" and kept["repeats"] == 3
    assert [e[0] for e in kept["timeline"]] == ["query"] * 3
    kinds = {kind for kind, _, _ in batch.cells}
    assert {"request", "all", "user", "n_plus_one", "query", "slow_request"} <= kinds
    assert rec.scope_var.get() is None


def test_a_fast_successful_request_is_only_counted():
    r = recorder()
    r.begin()
    r.end(FakeRequest(), 200, 1_000_000, "req_x", route="api/ping", method="GET", user=None, exception=None)
    batch = r.take()
    assert "request" not in batch.entries
    assert {kind for kind, _, _ in batch.cells} == {"request", "all"}


def test_the_console_does_not_record_its_own_pages():
    r = recorder()
    request = FakeRequest()
    request._observe_console = True
    r.end(request, 200, 1_000_000, "req_x", route="observe/", method="GET", user="1", exception=None)
    assert not r.take()


def test_charts_have_no_inline_style_and_name_each_series():
    svg = str(line_chart("Latency", [0, 60, 120], [("p50", [1, None, 3]), ("p95", [2, 3, 4])], unit=" ms"))
    assert "style=" not in svg and "<script" not in svg
    assert "series-0" in svg and "series-1" in svg and ">p95<" in svg


@pytest.mark.parametrize(
    ("user", "allowed"),
    [
        ({"is_authenticated": False}, False),
        ({"is_superuser": True}, True),
        ({"is_staff": True, "perm": True}, True),
        ({"is_staff": True, "perm": False}, False),
        ({"is_staff": False, "perm": True}, False),
        ({"is_superuser": True, "is_active": False}, False),
    ],
)
def test_default_permission_rule(user, allowed):
    from django_observe.console.views import default_rule

    class User:
        is_authenticated = user.get("is_authenticated", True)
        is_active = user.get("is_active", True)
        is_superuser = user.get("is_superuser", False)
        is_staff = user.get("is_staff", False)

        def has_perm(self, name):
            return user.get("perm", False) and name == "observe_console.view_console"

    class Request:
        pass

    request = Request()
    request.user = User()
    assert default_rule(request) is allowed


def test_console_settings_are_validated():
    from types import SimpleNamespace

    from django_observe.conf import InvalidConfiguration, load_config

    with pytest.raises(InvalidConfiguration, match="CONSOLE_TRACE_URL"):
        load_config(SimpleNamespace(DEBUG=False, DJANGO_OBSERVE={"CONSOLE_TRACE_URL": "jaeger"}), environ={})
    with pytest.raises(InvalidConfiguration, match="CONSOLE_RETENTION_DAYS"):
        load_config(SimpleNamespace(DEBUG=False, DJANGO_OBSERVE={"CONSOLE_RETENTION_DAYS": 30}), environ={})
    config = load_config(
        SimpleNamespace(DEBUG=False, DJANGO_OBSERVE={"CONSOLE_TRACE_URL": "http://jaeger:16686/trace/{trace_id}"}),
        environ={},
    )
    assert ConsoleOptions.from_config(config).trace_url == "http://jaeger:16686/trace/{trace_id}"


def test_the_console_database_must_be_an_alias(settings):
    from django_observe.console.checks import check_console_database
    from django_observe.runtime import current

    config = current().config
    assert check_console_database() == []
    import dataclasses

    from django_observe import runtime as runtime_module

    original = current()
    runtime_module.install(dataclasses.replace(original, config=dataclasses.replace(config, console_database="nope")))
    try:
        (error,) = check_console_database()
        assert error.id == "observe_console.E001" and '"nope"' in error.msg and '"default"' in error.msg
    finally:
        runtime_module.install(original)


def test_outbound_cache_llm_and_jobs_are_aggregated_by_their_keys():
    r = recorder()
    r.begin()
    r.outbound("GET", "http://api.example.com:8080/v1/x?token=abc", 200, 0, 12.0)
    r.outbound("GET", "http://api.example.com:8080/v1/y", None, 0, 30.0)
    r.cache("default", "get", True, 0, 0.1)
    r.cache("default", "get", False, 0, 0.1)
    r.cache("default", "set", None, 0, 0.1)

    class Call:
        request_model, response_model, provider = "claude-x", "claude-x-1", "anthropic"
        input_tokens, output_tokens, error_type, cost = 100, 20, None, 0.25

    r.llm_call(Call(), 1.5)
    r.enqueue("app.tasks.send", "mail")
    try:
        raise RuntimeError("smtp password=hunter2")
    except RuntimeError as exc:
        r.job("app.tasks.send", "mail", 40.0, failed=True, wait_ms=5.0, correlation_id="req_9", error=exc)
    scope = rec.scope_var.get()
    batch = r.take()
    cells = {(kind, key): cell for (kind, key, _), cell in batch.cells.items()}
    outbound = cells[("outbound", "api.example.com:8080")]
    assert (outbound.count, outbound.errors, outbound.peak) == (2, 1, 30.0)
    cache = cells[("cache", "default")]
    assert (cache.count, cache.value) == (2, 1.0)  # reads and hits: a set is not a read
    llm, tokens = cells[("llm", "anthropic/claude-x-1")], cells[("llm_tokens", "anthropic/claude-x-1")]
    assert (llm.count, llm.value, tokens.count, tokens.value) == (1, 0.25, 100, 20.0)
    job = cells[("job", "app.tasks.send")]
    assert (job.count, job.errors, cells[("job_wait", "app.tasks.send")].total) == (1, 1, 5.0)
    (failed,) = batch.entries["job"]
    assert failed["correlation_id"] == "req_9" and "hunter2" not in failed["error"] and failed["exception_group"]
    assert [e[0] for e in scope.timeline] == ["outbound", "outbound", "cache", "cache", "cache", "llm", "task"]
    assert all("token=abc" not in e[1] for e in scope.timeline)  # hosts only, never URLs


def test_log_lines_are_kept_only_inside_a_request_and_redacted():
    import logging

    r = recorder()
    record = logging.LogRecord("app", logging.WARNING, __file__, 1, "login with password=%s", ("hunter2",), None)
    r.log(record, record.getMessage())  # no request: nothing
    scope = r.begin()
    r.log(record, record.getMessage())
    assert len(scope.logs) == 1 and "hunter2" not in scope.logs[0]["message"]


def test_the_console_is_quiet_about_its_own_statements():
    r = recorder()
    token = rec.quiet.set(True)
    try:
        r.query("SELECT 1", 0.001, 0)
    finally:
        rec.quiet.reset(token)
    assert not r.take()


def test_patching_on_import_beside_the_outbound_propagation(tmp_path, monkeypatch):
    """The console's patch and integrations.http_clients' wait for the same first import through the one
    finder; both run, once."""
    import sys

    from django_observe.integrations import _patching
    from django_observe.integrations import console as hooks

    (tmp_path / "fakeclient_console.py").write_text("class Transport:\n    def send(self):\n        return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(hooks.importlib.util, "find_spec", lambda name: object())
    ran = []
    _patching.after_import("fakeclient_console", lambda: ran.append("propagation"), owner="http_clients")
    hooks._after_import("fakeclient_console", "fakeclient_console", lambda: ran.append("console"))
    try:
        import fakeclient_console  # noqa: F401
    finally:
        sys.modules.pop("fakeclient_console", None)
    assert sorted(ran) == ["console", "propagation"]


def test_trace_links_follow_the_template():
    from django_observe.console.views import trace_link

    trace = "0af7651916cd43dd8448eb211c80319c"
    assert trace_link("http://jaeger:16686/trace/{trace_id}", trace) == f"http://jaeger:16686/trace/{trace}"
    assert trace_link(None, trace) is None
    assert trace_link("http://jaeger:16686/trace/{trace_id}", "") is None


def test_django_tasks_runs_are_recorded_with_failures_and_queue_wait():
    import datetime

    from django_observe.console import recorder as recorder_module
    from django_observe.integrations import console as hooks

    r = recorder_module.activate(ConsoleOptions())

    class NoThread:
        def stop(self):
            pass

    r.flusher = NoThread()
    try:
        enqueued = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)

        class Task:
            module_path = "app.tasks.report"
            queue_name = "reports"

        class Error:
            exception_class_path = "builtins.ValueError"
            traceback = "Traceback ...\nValueError: token=abc123"

        class Result:
            id = "r1"
            task = Task()
            enqueued_at = enqueued
            started_at = enqueued + datetime.timedelta(milliseconds=250)
            status = "FAILED"
            errors = [Error()]

        hooks._tasks_started(task_result=Result())
        hooks._tasks_finished(task_result=Result())
        batch = r.take()
    finally:
        recorder_module.deactivate()
    cells = {(kind, key): cell for (kind, key, _), cell in batch.cells.items()}
    assert cells[("job", "app.tasks.report")].errors == 1
    assert cells[("job_wait", "app.tasks.report")].total == 250.0
    (failed,) = batch.entries["job"]
    assert failed["kind"] == "django.tasks" and failed["queue"] == "reports" and "abc123" not in failed["error"]


class FakeStore:
    """The flush's store: fails while ``down``, and answers a batch id it saw before as written already."""

    def __init__(self):
        self.down = False
        self.unanswered = False
        self.ids = []
        self.counted = 0

    def write(self, alias, batch, now, batch_id):
        if self.down:
            raise OSError("database down")
        if batch_id in self.ids:
            return False
        self.ids.append(batch_id)
        self.counted += sum(c.count for (kind, _, _), c in batch.cells.items() if kind == "all")
        if self.unanswered:  # committed, but the answer never came back
            self.unanswered = False
            raise OSError("connection lost after commit")
        return True

    def trim(self, *args):
        pass

    def discard_connection(self, alias):
        pass

    def release_connection(self, alias):
        pass


def flush_setup(monkeypatch, **options):
    from django_observe.console import flusher as flusher_module

    fake = FakeStore()
    monkeypatch.setattr(flusher_module, "_store", lambda: fake)
    r = recorder(**options)
    return r, flusher_module.Flusher(r), fake


def test_batches_wait_for_the_database_and_are_written_once(monkeypatch):
    r, flusher, fake = flush_setup(monkeypatch)
    r.add("all", "", 1.0, count=10)
    assert flusher.flush()
    fake.down = True
    r.add("all", "", 1.0, count=10)
    assert not flusher.flush() and not flusher.flush()
    fake.down = False
    r.add("all", "", 1.0, count=10)
    fake.unanswered = True  # the retried batch commits, but the flush hears an error
    assert not flusher.flush()
    assert flusher.flush()
    assert fake.counted == 30 and not flusher.pending


def test_a_forked_child_never_flushes_its_parents_flusher(monkeypatch):
    # gunicorn and Celery fork after the parent recorded: the child inherits the parent's Flusher (with its
    # pending batches and their ids) and the atexit hook that stops it. Run in the child, that stop wrote the
    # parent's batches a second time (or raced the parent for their ids: an IntegrityError under load).
    import os

    from tests import support

    support.require_fork()
    r, flusher, fake = flush_setup(monkeypatch)
    fake.down = True
    r.add("all", "", 1.0, count=5)
    assert not flusher.flush() and flusher.pending  # held for the parent's next flush
    fake.down = False
    pid = os.fork()
    if pid == 0:  # the child: what its inherited atexit hook does
        flusher.stop()
        os._exit(0 if fake.ids == [] and flusher.pending else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child wrote its parent's batches"
    assert flusher.flush() and fake.counted == 5  # the parent still writes them, once


def test_an_outage_longer_than_the_bound_is_counted_not_held(monkeypatch):
    r, flusher, fake = flush_setup(monkeypatch, max_keys=10, max_entries=1)
    fake.down = True
    for minute in range(30):
        for key in range(10):
            r.add("request", f"GET r{key}", 1.0, at=NOW + 60 * minute)
        flusher.flush()
    held = sum(len(b.cells) for _, b in flusher.pending)
    assert held <= 4 * (10 + 1)
    assert flusher._spilled > 0
    fake.down = False
    r.add("request", "GET r0", 1.0)
    assert flusher.flush()
    assert flusher._spilled == 0  # the count of what did not fit went out with the next batch
