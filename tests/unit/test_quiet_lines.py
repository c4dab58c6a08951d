"""One line per event (issue #32): Django's duplicate response lines dropped when LOG_DEDUPLICATE, no socket
repr, no uvicorn colour codes, SQL on one line in text, kombu's hostname warning once, no "(None)"."""

from __future__ import annotations

import logging
import socket
import types

from django_observe.conf import load_config
from django_observe.correlation import correlation_id_var
from django_observe.health import runner
from django_observe.logging.quiet import PROBE_ATTR, DuplicateDjangoLines, OncePerProcess
from django_observe.logging.setup import JSONFormatter, TextFormatter


def record(name: str, msg: str, level: int = logging.INFO, args: tuple = (), **extra) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_deduplicate_is_on_under_debug_only():
    assert load_config(types.SimpleNamespace(DEBUG=True), {}).log_deduplicate is True
    assert load_config(types.SimpleNamespace(DEBUG=False), {}).log_deduplicate is False


def test_django_request_lines_of_requests_we_log_are_dropped():
    dedupe = DuplicateDjangoLines()
    ours = types.SimpleNamespace(correlation_id="req_1")
    probe = types.SimpleNamespace(**{PROBE_ATTR: True})
    other = types.SimpleNamespace()
    assert not dedupe.filter(record("django.request", "Internal Server Error", status_code=500, request=ours))
    assert not dedupe.filter(record("django.request", "Service Unavailable", status_code=503, request=probe))
    assert dedupe.filter(record("django.request", "Not Found", status_code=404, request=other))
    assert dedupe.filter(record("django.request", "something else"))


def test_runserver_lines_are_dropped_while_the_request_id_is_bound():
    dedupe = DuplicateDjangoLines()
    token = correlation_id_var.set("req_2")
    try:
        assert not dedupe.filter(
            record("django.server", '"%s" %s %s', args=("GET / HTTP/1.1", 200, 5), status_code=200)
        )
    finally:
        correlation_id_var.reset(token)
    assert dedupe.filter(record("django.server", '"%s" %s %s', args=("GET /healthz HTTP/1.1", 200, 5), status_code=200))


def test_no_socket_repr_no_colour_codes():
    sock = socket.socket()
    try:
        line = TextFormatter().format(record("django.server", "code 400", request=sock, server_time="now"))
    finally:
        sock.close()
    assert "socket.socket" not in line and "server_time" in line
    line = JSONFormatter().format(record("uvicorn.error", "Started", color_message="\x1b[32mStarted\x1b[0m"))
    assert "color_message" not in line and "\\u001b" not in line


def test_sql_at_debug_is_one_line_in_text():
    sql = "SELECT a,\n       b\n  FROM t\n WHERE x = 1"
    line = TextFormatter().format(record("django.db.backends", "(0.001) %s; args=()", logging.DEBUG, (sql,)))
    assert "\n" not in line and "SELECT a, b FROM t WHERE x = 1" in line


def test_kombu_hostname_warning_once():
    once = OncePerProcess(("No hostname was supplied",))
    warning = "No hostname was supplied. Reverting to default 'localhost'"
    assert [once.filter(record("kombu.connection", warning, logging.WARNING)) for _ in range(3)] == [True, False, False]
    assert once.filter(record("kombu.connection", "another warning", logging.WARNING))


def test_health_warning_without_detail_has_no_none(caplog):
    spec = types.SimpleNamespace(id="cache")
    result = types.SimpleNamespace(id="cache", status=runner.FAIL, error="Cannot connect", detail=None, spec=spec)
    with caplog.at_level(logging.WARNING, logger="django_observe.health"):
        runner.HealthRunner._log_transition(None, result)
    assert caplog.messages == ["health check cache failed: Cannot connect"]
