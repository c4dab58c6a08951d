"""The Channels integration's pure parts: which correlation ID a handshake gets, and install/uninstall."""

import sys

import pytest

from django_observe.correlation import CorrelationPolicy
from django_observe.integrations import INTEGRATIONS
from django_observe.integrations import channels as ch

HEADERS = ("X-Correlation-ID", "X-Request-ID")


def _scope(headers=(), query=b""):
    return {"type": "websocket", "path": "/ws/", "headers": list(headers), "query_string": query}


def _id(scope):
    return ch.WebSocketObserver(CorrelationPolicy(), HEADERS).correlation_id(scope)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        (_scope([(b"x-correlation-id", b"ws-1")]), "ws-1"),
        (_scope([(b"x-request-id", b"ws-2")]), "ws-2"),
        (_scope(query=b"a=1&correlation_id=ws-3"), "ws-3"),
        # the header wins over the query string; the first configured header over the second
        (_scope([(b"x-correlation-id", b"ws-4")], b"correlation_id=ws-q"), "ws-4"),
        (_scope([(b"x-request-id", b"ws-second"), (b"x-correlation-id", b"ws-5")]), "ws-5"),
    ],
)
def test_an_acceptable_handshake_id_is_kept(scope, expected):
    assert _id(scope) == expected


@pytest.mark.parametrize(
    "scope",
    [
        _scope([(b"x-correlation-id", b"a" * 300 + b"\r\nINFO forged line")]),
        _scope([(b"x-correlation-id", b"x\x1b[2J")]),
        _scope([(b"x-correlation-id", b"token:s3cret")]),
        # secret shapes the default pattern allows (#34 finding 11): a JWT, an AWS key ID, a GitHub token
        _scope([(b"x-correlation-id", b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA")]),
        _scope(query=b"correlation_id=AKIAQWERTYUIOPASDFGH"),
        _scope([(b"x-request-id", b"ghp_0123456789abcdef0123456789abcdef0123")]),
        _scope([(b"x-correlation-id", "caf\u00e9".encode())]),
        _scope([(b"x-correlation-id", b"")]),
        # an invalid first header is replaced, not skipped for the next one (as on HTTP)
        _scope([(b"x-correlation-id", b"id with spaces"), (b"x-request-id", b"ws-ok")]),
        _scope(query=b"correlation_id=%0d%0aINFO+forged"),
        _scope(query=b"correlation_id=" + b"b" * 200),
        _scope(),
    ],
)
def test_a_hostile_or_missing_id_is_replaced_by_a_new_one(scope):
    value = _id(scope)
    assert value.startswith("req_") and len(value) == 28


def test_the_consumer_label_is_the_class_path():
    class RoomConsumer:
        pass

    assert (
        ch.consumer_name(RoomConsumer())
        == f"{__name__}.test_the_consumer_label_is_the_class_path.<locals>.RoomConsumer"
    )


def test_it_is_in_the_table_and_available_only_when_the_project_uses_channels(monkeypatch):
    from django.apps import apps

    (row,) = [row for row in INTEGRATIONS if row.name == "channels"]
    assert row.row is ch.integration  # deferred: the module is imported only for a project that uses Channels
    monkeypatch.delitem(sys.modules, "channels", raising=False)
    assert ch.integration.available(None) is False  # importable, but neither installed nor imported
    assert row.available(None) is False
    monkeypatch.setitem(sys.modules, "channels", object())
    assert ch.integration.available(None) is True
    assert row.available(None) is True
    monkeypatch.delitem(sys.modules, "channels")
    installed = apps.is_installed
    monkeypatch.setattr(apps, "is_installed", lambda name: name == "daphne" or installed(name))
    assert ch.integration.available(None) is True  # what Channels' installation guide lists


def test_a_line_about_a_tagged_exception_gets_its_connections_id_outside_the_connection():
    from django_observe.correlation import bind_correlation_id, reset_correlation_id, tag_exception
    from django_observe.logging.processors import add_correlation_id

    error = RuntimeError("the consumer failed")
    tag_exception(error, "ws-7")
    token = bind_correlation_id(None)
    try:
        tagged = add_correlation_id(None, "error", {"exc_info": (RuntimeError, error, None)})
        untagged = add_correlation_id(None, "error", {"exc_info": (ValueError, ValueError("x"), None)})
    finally:
        reset_correlation_id(token)
    assert tagged["correlation_id"] == "ws-7" and "correlation_id" not in untagged


def test_the_recorder_counts_a_connection_and_records_nothing_with_metrics_off():
    from prometheus_client import CollectorRegistry

    from django_observe.metrics.catalogue import build_catalogue
    from django_observe.metrics.recorders import WebSocketMetrics

    registry = CollectorRegistry()
    metrics = WebSocketMetrics(build_catalogue(registry=registry))
    labels = metrics.connection("chat.consumers.Room")
    metrics.opened(labels)
    metrics.received(labels)
    metrics.handled(labels, 0.002)
    metrics.sent(labels)
    assert registry.get_sample_value("websocket_server_active_connections", {"consumer": "chat.consumers.Room"}) == 1
    metrics.closed(labels, True, "4001")
    sample = registry.get_sample_value
    assert sample("websocket_server_active_connections", {"consumer": "chat.consumers.Room"}) == 0
    assert sample("websocket_server_connections_total", {"consumer": "chat.consumers.Room", "close_code": "4001"}) == 1
    assert sample("websocket_server_message_duration_seconds_count", {"consumer": "chat.consumers.Room"}) == 1
    off = WebSocketMetrics()
    assert off.connection("chat.consumers.Room") == ()
    off.opened(())
    off.closed((), True, "1000")  # nothing to record into, nothing raised
