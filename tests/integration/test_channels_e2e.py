"""Channels end to end: a real daphne serves the test project's consumers, a real WebSocket client talks to them.

Each connection's lines carry its correlation ID (handshake header, query parameter, or a new one when the
header is hostile); the connection and message counters are exact after a known conversation; the OTLP receiver
gets one span per connection and one per handled message, in the handshake's trace.
"""

import pytest

from tests import support, support_metrics, support_otlp

pytestmark = pytest.mark.integration

SERVER, INTERNAL = 2, 1  # OTLP SpanKind values
ECHO = "testproject.demo.consumers.EchoConsumer"
AECHO = "testproject.demo.consumers.AsyncEchoConsumer"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
HOSTILE = "token:abc123secret"  # a secret in an ID: refused like on HTTP, never written


def _missing_libraries() -> None:
    for name in ("channels", "daphne", "websockets"):
        support.require_module(name)


def _conversation(url: str, open_connection_seen: list) -> None:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    # 1. sync consumer, ID in the header; closed by the consumer with 4001
    with connect(f"{url}/ws/echo/", additional_headers={"X-Correlation-ID": "ws-header-1"}) as ws:
        for text in ("hello", "again"):
            ws.send(text)
            assert ws.recv(timeout=30) == text
        open_connection_seen.append(support_metrics.scrape(open_connection_seen[0]))
        ws.send("bye")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
        assert ws.close_code == 4001
    # 2. async consumer, ID in the query string, a remote parent in the handshake; closed by the client
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    with connect(f"{url}/ws/aecho/?correlation_id=ws-query-2", additional_headers={"traceparent": traceparent}) as ws:
        ws.send("x")
        assert ws.recv(timeout=30) == "x"
    # 3. a hostile header: replaced by a new ID
    with connect(f"{url}/ws/echo/", additional_headers={"X-Correlation-ID": HOSTILE}) as ws:
        ws.send("hostile")
        assert ws.recv(timeout=30) == "hostile"
    # 4. the consumer raises: the server closes with 1011
    with connect(f"{url}/ws/echo/", additional_headers={"X-Correlation-ID": "ws-boom-4"}) as ws:
        ws.send("boom")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=30)
    # 5. rejected before accepting: the handshake gets 403
    with pytest.raises(InvalidStatus):
        connect(f"{url}/ws/echo/?reject=1", additional_headers={"X-Correlation-ID": "ws-reject-5"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    _missing_libraries()
    tmp = tmp_path_factory.mktemp("channels")
    metrics_port = support.free_port()
    with support_otlp.HttpReceiver() as receiver:
        env = support.project_env(
            TESTPROJECT_CHANNELS="1",
            LOG_FORMAT="json",
            METRICS_PORT=str(metrics_port),
            SQLITE_PATH=str(tmp / "db.sqlite3"),
            TESTPROJECT_VAR_DIR=str(tmp / "var"),
            **support.tracing_to(receiver.endpoint),
        )
        with support.daphne(env, tmp / "daphne.log") as server:
            support.wait_for_port("127.0.0.1", metrics_port, 20, server.proc)
            seen = [metrics_port]
            _conversation(f"ws://127.0.0.1:{server.port}", seen)

            def settled():
                samples = support_metrics.scrape(metrics_port)
                ended = support_metrics.value(samples, "websocket_server_connections_total")
                return samples if ended >= 5 else None

            samples = support.wait_until(settled, timeout=20, message="five connections ended")
            yield {"server": server, "samples": samples, "while_open": seen[1], "receiver": receiver}


def _lines(stack, correlation_id):
    return [e for e in support.json_lines(stack["server"].output()) if e.get("correlation_id") == correlation_id]


def test_every_line_of_a_connection_carries_its_correlation_id(stack):
    lines = _lines(stack, "ws-header-1")
    assert [e["message"] for e in lines] == ["websocket_connected", "echo", "echo", "echo", "websocket_closed"]
    closed = lines[-1]
    assert closed["consumer"] == ECHO and closed["path"] == "/ws/echo/"
    assert closed["close_code"] == "4001" and closed["messages_received"] == 3 and closed["messages_sent"] == 2
    assert closed["duration_ms"] > 0
    # the consumer's own lines (in a thread: a sync consumer) carry the trace of their message's span
    assert all(len(e["trace_id"]) == 32 for e in lines[1:4])
    assert len({e["span_id"] for e in lines[1:4]}) == 3

    query = _lines(stack, "ws-query-2")
    assert [e["message"] for e in query] == ["websocket_connected", "echo", "websocket_closed"]
    assert query[-1]["consumer"] == AECHO and query[-1]["close_code"] == "1000"

    boom = _lines(stack, "ws-boom-4")
    closed = next(e for e in boom if e["message"] == "websocket_closed")
    assert closed["close_code"] == "1011"
    assert closed["level"] == "ERROR" and closed["exception"][0]["type"] == "RuntimeError"
    # daphne's own line about the exception is written outside the connection, and still carries its ID
    assert boom[-1]["logger"] == "daphne.server" and boom[-1]["message"].startswith("Exception inside application")

    rejected = _lines(stack, "ws-reject-5")
    assert [(e["message"], e["close_code"]) for e in rejected] == [("websocket_closed", "rejected")]


def test_a_hostile_handshake_header_is_replaced_and_never_written(stack):
    output = stack["server"].output()
    assert HOSTILE not in output and "abc123secret" not in output
    echoes = [e for e in support.json_lines(output) if e.get("message") == "echo" and e.get("size") == len("hostile")]
    assert len(echoes) == 1 and echoes[0]["correlation_id"].startswith("req_")
    lines = _lines(stack, echoes[0]["correlation_id"])
    assert [e["message"] for e in lines] == ["websocket_connected", "echo", "websocket_closed"]


def test_metrics_count_connections_and_messages_exactly(stack):
    samples, value = stack["samples"], support_metrics.value
    assert value(stack["while_open"], "websocket_server_active_connections", consumer=ECHO) == 1
    assert value(samples, "websocket_server_active_connections") == 0
    for consumer, code, count in (
        (ECHO, "4001", 1),
        (ECHO, "1000", 1),
        (ECHO, "1011", 1),
        (ECHO, "rejected", 1),
        (AECHO, "1000", 1),
    ):
        assert value(samples, "websocket_server_connections_total", consumer=consumer, close_code=code) == count
    assert value(samples, "websocket_server_connections_total") == 5
    assert value(samples, "websocket_server_messages_received_total", consumer=ECHO) == 5
    assert value(samples, "websocket_server_messages_received_total", consumer=AECHO) == 1
    assert value(samples, "websocket_server_messages_sent_total", consumer=ECHO) == 3
    assert value(samples, "websocket_server_messages_sent_total", consumer=AECHO) == 1
    assert value(samples, "websocket_server_message_duration_seconds_count", consumer=ECHO) == 5
    assert value(samples, "websocket_server_message_duration_seconds_count", consumer=AECHO) == 1


def test_one_span_per_connection_and_per_message(stack):
    receiver = stack["receiver"]
    spans = support.wait_until(
        lambda: (found := list(receiver.spans)) and sum(s.kind == SERVER for s in found) >= 5 and found,
        timeout=20,
        message="five connection spans",
    )
    connections = {s.attributes["correlation_id"]: s for s in spans if s.name.startswith("WS ") and s.kind == SERVER}
    first = connections["ws-header-1"]
    assert first.name == f"WS {ECHO}" and first.attributes["websocket.close_code"] == "4001"
    messages = [s for s in spans if s.parent_span_id == first.span_id]
    assert [s.name for s in messages] == [f"WS {ECHO} receive"] * 3
    assert {s.kind for s in messages} == {INTERNAL} and {s.trace_id for s in messages} == {first.trace_id}
    lines = _lines(stack, "ws-header-1")
    assert {e["span_id"] for e in lines[1:4]} == {s.span_id for s in messages}
    assert connections["ws-query-2"].trace_id == TRACE_ID  # the handshake's traceparent is the parent
    boom = connections["ws-boom-4"]
    assert boom.status_code == 2 and boom.attributes["websocket.close_code"] == "1011"
    assert [s.status_code for s in spans if s.parent_span_id == boom.span_id] == [2]


def test_under_uvicorn_the_handshake_response_returns_the_correlation_id(tmp_path):
    _missing_libraries()
    from websockets.sync.client import connect

    env = support.project_env(TESTPROJECT_CHANNELS="1", LOG_FORMAT="json", SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    server = support.uvicorn(env, tmp_path / "uvicorn.log")
    server.argv[server.argv.index("testproject.asgi:application")] = "testproject.asgi_channels:application"
    with server:
        with connect(f"ws://127.0.0.1:{server.port}/ws/aecho/?correlation_id=ws-uvicorn-1") as ws:
            assert ws.response.headers["X-Correlation-ID"] == "ws-uvicorn-1"
            ws.send("hi")
            assert ws.recv(timeout=30) == "hi"
        with connect(f"ws://127.0.0.1:{server.port}/ws/aecho/") as ws:
            generated = ws.response.headers["X-Correlation-ID"]
        lines = support.wait_until(
            lambda: (
                [e for e in support.json_lines(server.output()) if e.get("message") == "websocket_closed"][1:]
                and support.json_lines(server.output())
            ),
            timeout=20,
            message="two websocket_closed lines",
        )
    assert generated.startswith("req_")
    closed = [e for e in lines if e.get("message") == "websocket_closed"]
    assert [e["correlation_id"] for e in closed] == ["ws-uvicorn-1", generated]
    ours = [e for e in lines if e["logger"] in ("django_observe.channels", "api.ws")]
    assert [e["message"] for e in ours if e.get("correlation_id") == "ws-uvicorn-1"] == [
        "websocket_connected",
        "echo",
        "websocket_closed",
    ]
