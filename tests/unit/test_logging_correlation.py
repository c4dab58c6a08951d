import concurrent.futures
import io
import json
import logging
import os
import re
import sys

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from django_observe import correlation
from django_observe.logging import JSONFormatter, TextFormatter
from django_observe.logging import processors as p
from django_observe.logging.renderers import JSONRenderer, TextRenderer, escape
from tests import support

POLICY = correlation.CorrelationPolicy()


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("req_abc123", True),
        ("4bf92f3577b34da6a3ce929d0e0e4736", True),
        ("a.b:c-d_e", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("req abc", False),
        ("req\nabc", False),
        ("req\x1b[31m", False),
        ("req,abc", False),
        ("ré", False),
        (None, False),
        ("token:PLANTED8x", False),  # matches the pattern, but would write a secret on every line
        ("password:hunter2", False),
        ("session.id:abc", False),
        ("bypass:1", True),
    ],
)
def test_policy_accepts_only_the_allowlist(value, accepted):
    assert POLICY.accept(value) == (value if accepted else None)


def test_new_ids_look_like_the_seed_and_pass_the_policy():
    new = POLICY.new()
    assert re.fullmatch(r"req_[0-9a-f]{24}", new)
    assert POLICY.accept(new) == new
    assert POLICY.new() != new


def test_new_ids_are_unique_across_draws_and_threads():
    # 64 IDs come from one os.urandom call: many draws cross several refills, from eight threads at once.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [POLICY.new() for _ in range(500)], range(8)))
    ids = [cid for batch in batches for cid in batch]
    assert len(set(ids)) == len(ids) == 4000
    assert all(re.fullmatch(r"req_[0-9a-f]{24}", cid) for cid in ids)


def test_a_forked_child_never_hands_out_its_parents_ids():
    support.require_fork()
    # gunicorn and Celery fork their workers from a parent that may already have drawn IDs: the child must not
    # take the rest of the parent's pool (each worker would repeat the same IDs).
    POLICY.new()  # the pool now holds this process's next IDs
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next IDs, to the parent
        try:
            os.write(write, " ".join(POLICY.new() for _ in range(8)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split()
    os.waitpid(pid, 0)
    parent = [POLICY.new() for _ in range(128)]
    assert len(child) == 8
    assert not set(child) & set(parent)


def test_a_prefix_with_a_space_or_control_character_is_refused():
    # Every ID the policy returns goes into the response header unchecked (ObserveMiddleware._finish).
    for prefix in ("id ", "id\t", "id\x7f", "id\r\n"):
        with pytest.raises(ValueError, match="no spaces or control characters"):
            correlation.CorrelationPolicy(r"(?s).{1,128}", prefix)


def test_custom_pattern_still_refuses_control_characters_and_spaces():
    loose = correlation.CorrelationPolicy(r".{1,128}", "id-")
    assert loose.accept("anything/goes!") == "anything/goes!"
    assert loose.accept("bad\nline") is None
    assert loose.accept("two words") is None
    assert loose.accept("api_key=abc123") is None


def test_context_binds_and_restores():
    assert correlation.get_correlation_id() is None
    with correlation.correlation_context("req_outer"):
        with correlation.correlation_context() as inner:
            assert correlation.get_correlation_id() == inner != "req_outer"
        assert correlation.get_correlation_id() == "req_outer"
    assert correlation.get_correlation_id() is None


def test_wrap_with_context_carries_the_id_into_a_thread_pool():
    with correlation.correlation_context("req_pool"), concurrent.futures.ThreadPoolExecutor(2) as pool:
        seen_plain = pool.submit(correlation.get_correlation_id).result()
        seen_wrapped = pool.submit(correlation.wrap_with_context(correlation.get_correlation_id)).result()
    assert seen_plain is None
    assert seen_wrapped == "req_pool"


def test_redaction_processor():
    event = {
        "message": "login password=hunter2",
        "password": "x",
        "api_key": "k",
        "Authorization": "Bearer t",
        "tokens_used": 173,
        "user_id": "u1",
        "dsn": "postgres://a:b@h/db",
        "url": "redis://:pw@h:6379",
    }
    out = p.SecretRedactor(("user_id",))(None, "info", dict(event))
    assert out["password"] == out["api_key"] == out["Authorization"] == out["dsn"] == "[REDACTED]"
    assert out["user_id"] == "[REDACTED]"  # an extra key
    assert out["tokens_used"] == 173
    assert "hunter2" not in out["message"] and "pw" not in out["url"]


def test_trace_context_is_a_no_op_when_disabled():
    assert p.TraceContextAdder(False)(None, "info", {"a": 1}) == {"a": 1}


def test_json_renderer_orders_the_head_and_keeps_one_line():
    line = JSONRenderer()(
        None,
        "info",
        {"x": 1, "message": "a\nb", "level": "INFO", "timestamp": "t", "logger": "l", "correlation_id": "c"},
    )
    assert "\n" not in line
    assert list(json.loads(line)) == ["timestamp", "level", "logger", "message", "correlation_id", "x"]


def test_text_renderer_matches_the_seed_line():
    line = TextRenderer()(
        None,
        "info",
        {
            "timestamp": "2026-03-05T14:30:00.123Z",
            "level": "INFO",
            "logger": "api.chat",
            "message": "Chat request processed",
            "correlation_id": "req_abc123",
            "duration_ms": 1250,
        },
    )
    assert line == "2026-03-05 14:30:00 INFO [api.chat] Chat request processed (req_abc123) - 1250ms"


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_escape_never_leaves_a_line_break_or_escape(text):
    out = escape(text)
    assert not re.search(r"[\x00-\x1f\x7f\u2028\u2029\x85]", out)


def record(msg, level=logging.INFO, **extra):
    rec = logging.LogRecord("api.chat", level, __file__, 1, msg, None, None)
    rec.__dict__.update(extra)
    return rec


def test_json_formatter_on_a_stdlib_record():
    with correlation.correlation_context("req_abc123"):
        line = JSONFormatter().format(record("Chat request processed", user_id="user_456", duration_ms=1250))
    event = json.loads(line)
    assert event["level"] == "INFO" and event["logger"] == "api.chat"
    assert event["message"] == "Chat request processed"
    assert event["correlation_id"] == "req_abc123"
    assert event["user_id"] == "user_456" and event["duration_ms"] == 1250
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["timestamp"])


def test_json_formatter_structures_exceptions_without_locals():
    secret = "hunter2"  # noqa: F841 - a local the exception frame holds
    try:
        raise ValueError("bad token=abc")
    except ValueError:
        rec = record("failed", logging.ERROR)
        rec.exc_info = sys.exc_info()
    event = json.loads(JSONFormatter().format(rec))
    assert event["exception"][0]["type"] == "ValueError"
    assert event["exception"][0]["value"] == "bad token=[REDACTED]"
    assert "hunter2" not in json.dumps(event)


def test_text_formatter_cannot_be_forged():
    line = TextFormatter().format(record("hi\n2026-03-05 14:30:00 INFO [api.auth] admin ok\x1b[2J", who="a\rb"))
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line.endswith("admin ok\\x1b[2J who=a\\rb")


def test_structlog_and_stdlib_share_one_output():
    from django_observe.logging.setup import configure_structlog

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    log = logging.getLogger("test.shared")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    configure_structlog(otel_enabled=False)
    try:
        with correlation.correlation_context("req_shared"):
            log.info("from stdlib")
            structlog.get_logger("test.shared").info("from structlog", agent_id="a1")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["from stdlib", "from structlog"]
    assert all(line["correlation_id"] == "req_shared" and line["logger"] == "test.shared" for line in lines)
    assert lines[1]["agent_id"] == "a1"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CORRELATION_ID_PATTERN": "(["}, "must be a valid regular expression"),
        ({"CORRELATION_HEADERS": "X Bad"}, "HTTP header names"),
        ({"CORRELATION_ID_PREFIX": "id-", "CORRELATION_ID_PATTERN": "id.{24}"}, "CORRELATION_ID_PATTERN"),
        ({"CORRELATION_ID_PREFIX": "id ", "CORRELATION_ID_PATTERN": ".{1,128}"}, "spaces or control characters"),
        ({"CORRELATION_ID_PREFIX": "id\t", "CORRELATION_ID_PATTERN": "(?s).{1,128}"}, "spaces or control characters"),
        ({"LOG_CONFIGURE": "maybe"}, '"auto", "on", "off"'),
    ],
)
def test_invalid_logging_options(env, message):
    import types

    from django_observe import conf

    with pytest.raises(conf.InvalidConfiguration, match=re.escape(message)):
        conf.load_config(types.SimpleNamespace(DEBUG=False), environ=env)
