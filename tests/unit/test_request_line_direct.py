"""The request line's direct path: taken only when a record would reach our stream handler and nothing
else, and writing exactly the line the logging path writes."""

import io
import json
import logging
import time

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


def write_line(handler, status=200, path="/api/items/7?x=1", change=None):
    """One request line, with ``handler`` the root logger's only handler (pytest's own are set aside)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.filters[:], root.level
    root.handlers[:], root.filters[:] = [handler], []
    root.setLevel(logging.INFO)
    try:
        if change is not None:
            change(handler)
        request = RequestFactory().get(path, HTTP_USER_AGENT="curl/8.5")
        request.resolver_match = None
        RequestLine(flavor_fields=True).write(request, HttpResponse(status=status), time.perf_counter_ns(), None)
    finally:
        root.handlers[:], root.filters[:], level = saved
        root.setLevel(level)


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
