"""The request line's direct path: taken only when a record would reach our stream handler and nothing
else, and writing exactly the line the logging path writes."""

import contextlib
import io
import json
import logging
import re
import urllib.parse

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from django_observe.logging import JSONFormatter, TextFormatter
from django_observe.logging.request_line import RequestLine


@pytest.fixture
def root_handler():
    """A StreamHandler on a buffer; write_line() makes it the root's one handler, as configure_logging does."""
    stream = io.StringIO()
    return logging.StreamHandler(stream), stream


@contextlib.contextmanager
def only_root_handler(handler):
    """``handler`` as the root logger's only handler, at INFO, as configure_logging sets it (pytest's own
    handlers and filters set aside, and put back)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.filters[:], root.level
    root.handlers[:], root.filters[:] = [handler], []
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.handlers[:], root.filters[:], level = saved
        root.setLevel(level)


def write_line(handler, status=200, path="/api/items/7?x=1", change=None):
    """One request line, with ``handler`` the root logger's only handler (pytest's own are set aside)."""
    with only_root_handler(handler):
        if change is not None:
            change(handler)
        request = RequestFactory().get(path, HTTP_USER_AGENT="curl/8.5")
        request.resolver_match = None
        line = RequestLine(flavor_fields=True)
        line.write(request, HttpResponse(status=status), 1_500_000, None, "req_abc")


def without_clock(value):
    """The line without its clock readings (timestamp and duration, whatever a flavour names them)."""
    if isinstance(value, str) and value.startswith("{"):
        value = json.loads(value)
    if isinstance(value, dict):
        clock = ("time", "duration", "latency")
        return {k: without_clock(v) for k, v in value.items() if not any(word in k for word in clock)}
    return value


def make_record_fails(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the direct path builds no LogRecord")

    monkeypatch.setattr(logging.getLogger("django_observe.request"), "makeRecord", refuse)


@pytest.mark.parametrize("flavor", ["default", "gcp", "datadog", "ecs"])
@pytest.mark.parametrize("status", [200, 404, 503])
def test_direct_line_equals_the_logging_path_line(root_handler, monkeypatch, flavor, status):
    handler, stream = root_handler
    handler.setFormatter(JSONFormatter(flavor=flavor, redact_keys=("path",)))
    with monkeypatch.context() as patch:
        make_record_fails(patch)
        write_line(handler, status)
    direct = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    handler.addFilter(lambda record: True)  # a filter: records must go through logging again
    write_line(handler, status)
    through_logging = stream.getvalue()
    assert direct.count("\n") == through_logging.count("\n") == 1
    assert without_clock(direct) == without_clock(through_logging)
    assert list(json.loads(direct)) == list(json.loads(through_logging))  # same keys, same order
    assert "[REDACTED]" in direct  # LOG_REDACT_KEYS (here: path) applies on the direct path too


def test_text_format_takes_the_direct_path_too(root_handler, monkeypatch):
    handler, stream = root_handler
    handler.setFormatter(TextFormatter())
    make_record_fails(monkeypatch)
    write_line(handler)
    assert " INFO [django_observe.request] GET /api/items/7 " in stream.getvalue()


@pytest.mark.parametrize(
    "change",
    [
        lambda handler: handler.setFormatter(logging.Formatter("%(message)s")),  # the project's own formatter
        lambda handler: handler.addFilter(lambda record: True),
        lambda handler: logging.getLogger().addHandler(logging.NullHandler()),  # a second handler (caplog)
        lambda handler: logging.getLogger().addFilter(lambda record: True),
        lambda handler: logging.getLogger("django_observe").addHandler(logging.NullHandler()),
        lambda handler: handler.setLevel(logging.ERROR),
    ],
)
def test_any_other_set_up_gets_a_record(root_handler, monkeypatch, change):
    handler, stream = root_handler
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("django_observe.request")
    records = []

    def make_record(*args, **kwargs):
        records.append(logging.Logger.makeRecord(logger, *args, **kwargs))
        return records[-1]

    monkeypatch.setattr(logger, "makeRecord", make_record)
    try:
        write_line(handler, change=change)
    finally:
        logging.getLogger("django_observe").handlers[:] = []
    assert len(records) == 1 and records[0].getMessage() == "GET /api/items/7"


TIMESTAMP = re.compile(r'^\{"timestamp":"[^"]*"')


class _Clock:
    """A stand-in for the time module in request_line: a fixed instant."""

    def __init__(self, wall=1764590400.1239):
        self.wall = wall

    def time(self):
        return self.wall


class _SpanContext:
    is_valid = True

    def __init__(self):
        self.trace_id, self.span_id = 0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7
        self.trace_flags = type("Flags", (), {"sampled": True})()


class _User:
    is_authenticated = True

    def __init__(self, pk):
        self.pk = pk


def _one_line(handler, path, *, uid=None, traced=False, queries=None, correlation_id="req_abc", status=200):
    from django.urls import ResolverMatch

    from django_observe.correlation import correlation_context
    from django_observe.queries import QueryStats
    from django_observe.requestinfo import SPAN_CONTEXT_ATTR

    with only_root_handler(handler):
        request = RequestFactory().get(path)
        request.resolver_match = ResolverMatch(lambda r: None, (), {}, route='api/<str:name>/"x"\\é')
        if uid is not None:
            request.user = _User(uid)
        if traced:
            setattr(request, SPAN_CONTEXT_ATTR, _SpanContext())
        stats = None
        if queries is not None:
            stats = QueryStats()
            for seconds in queries:
                stats.add("SELECT 1", seconds)
        with correlation_context(correlation_id) if correlation_id else contextlib.nullcontext():
            RequestLine().write(request, HttpResponse(status=status), 1_234_567, stats, correlation_id)


@pytest.mark.parametrize(
    "path", ["/ping", '/a"b', "/caf\u00e9", "/back\\slash", "/x%20y", "/tab\tx", "/key=value", "/a:b", "/\u2028"]
)
@pytest.mark.parametrize(
    "case",
    [
        {},
        {"uid": "42"},
        {"uid": 'na"me'},
        {"uid": "token=abc"},
        {"traced": True},
        {"queries": []},
        {"queries": [0.0123456, 0.000004, 1.5]},
        {"correlation_id": None},
        {"status": 404},
        {"status": 503, "traced": True, "uid": "7", "queries": [0.25]},
    ],
)
@pytest.mark.parametrize("otel", [False, True])
def test_the_written_json_line_is_the_formatter_chain_line_to_the_byte(root_handler, monkeypatch, path, case, otel):
    from django_observe.logging import request_line

    handler, stream = root_handler
    formatter = JSONFormatter(otel_enabled=otel)
    handler.setFormatter(formatter)
    monkeypatch.setattr(request_line, "time", _Clock())
    rendered = []
    real_render = formatter.render
    monkeypatch.setattr(formatter, "render", lambda *a, **k: rendered.append(1) or real_render(*a, **k))
    _one_line(handler, path, **case)
    written, chain_ran = stream.getvalue(), bool(rendered)
    stream.seek(0)
    stream.truncate()
    handler.addFilter(lambda record: True)  # through logging and the whole chain
    _one_line(handler, path, **case)
    # The chain's timestamp is its LogRecord's (logging's clock): the rest is compared byte for byte.
    assert TIMESTAMP.sub("", written) == TIMESTAMP.sub("", stream.getvalue())
    line = json.loads(written)
    assert line["duration_ms"] == 1.23 and line["timestamp"] == "2025-12-01T12:00:00.123Z"
    plain = not any(c in urllib.parse.unquote(path) for c in "=: ") and case.get("uid") != "token=abc"
    assert chain_ran == (not plain or (otel and not case.get("traced")))  # the chain ran only when needed


def test_hundredths_are_written_as_the_float_repr():
    import random

    from django_observe.logging.renderers import HUNDREDTHS

    rng = random.Random(7)
    for k in [*range(100_000), *(rng.randrange(10**15) for _ in range(20_000))]:
        assert f"{k // 100}{HUNDREDTHS[k % 100]}" == repr(k / 100)


def test_rendered_shapes_are_reused_and_started_over_without_changing_a_line(root_handler, monkeypatch):
    # One RequestLine serves many requests: the text it keeps per (method, path, route, status) must give the
    # line the logging path gives, on a repeat, for another status or method of the same path, for a path
    # only the formatter may write (kept as such), after the store filled up and started over, and for a
    # path too long to keep.
    from django.urls import ResolverMatch

    from django_observe.correlation import correlation_context
    from django_observe.logging import request_line

    monkeypatch.setattr(request_line, "_SHAPES_KEPT", 3)
    monkeypatch.setattr(request_line, "time", _Clock())
    handler, stream = root_handler
    handler.setFormatter(JSONFormatter())
    requests = [
        ("get", "/ping", 200),
        ("get", "/ping", 200),
        ("get", "/ping", 404),
        ("post", "/ping", 200),
        ("get", "/key=value", 200),
        ("get", "/key=value", 200),
        ("get", "/caf\u00e9", 503),
        ("get", "/ping", 200),
        ("get", "/other", 200),
        ("get", "/" + "long" * 100, 200),
    ]

    def lines(kept):
        with only_root_handler(handler):
            line = RequestLine()
            for method, path, status in requests:
                request = getattr(RequestFactory(), method)(path)
                request.resolver_match = ResolverMatch(lambda r: None, (), {}, route=path.strip("/") or "root")
                with correlation_context("req_abc"):
                    line.write(request, HttpResponse(status=status), 1_234_567, None, "req_abc")
                kept.append(len(line._shapes))
        written = stream.getvalue().splitlines()
        stream.seek(0)
        stream.truncate()
        return [TIMESTAMP.sub("", one) for one in written]

    kept = []
    direct = lines(kept)
    assert kept == [1, 1, 2, 3, 1, 1, 2, 3, 1, 1]  # started over when full; a long path is not kept
    handler.addFilter(lambda record: True)  # the same requests through logging and the whole chain
    assert direct == lines([])
    assert [json.loads("{" + one.lstrip(","))["status"] for one in direct] == [r[2] for r in requests]
