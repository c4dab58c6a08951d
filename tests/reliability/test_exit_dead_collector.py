"""Bounded exit (issue #34 finding 5): with an OTLP collector that accepts connections and never answers,
SIGTERM to gunicorn ends with every worker leaving on its own, within the graceful timeout, and one line per
exporter saying what was dropped.

Before: each exporter waited for its own timeout and retries, one after another; the workers outlived the
graceful timeout and the master SIGKILLed them (31.5 s with gunicorn's default 30 s).
"""

from __future__ import annotations

import re
import signal
import socket
import threading
import time

import pytest

from tests import support, support_load

pytestmark = pytest.mark.integration

GRACEFUL_TIMEOUT = 20


class BlackHole:
    """A TCP server on loopback that accepts, reads and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.conns: list[socket.socket] = []
        self.stopped = threading.Event()

    def __enter__(self) -> BlackHole:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            threading.Thread(target=self._swallow, args=(conn,), daemon=True).start()

    def _swallow(self, conn: socket.socket) -> None:
        conn.settimeout(0.5)
        while not self.stopped.is_set():
            try:
                if not conn.recv(65536):
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        for conn in self.conns:
            conn.close()
        self.sock.close()


def test_sigterm_with_a_hung_collector_exits_within_the_graceful_timeout(tmp_path):
    with BlackHole() as collector:
        env = support.sqlite_env(
            tmp_path,
            OTEL_ENABLED="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
            OTEL_BSP_SCHEDULE_DELAY="200",
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_METRIC_EXPORT_INTERVAL="1000",
            METRICS_PORT=str(support.free_port()),
        )
        server = support.gunicorn(
            env, tmp_path / "web.log", workers=2, extra=("--graceful-timeout", str(GRACEFUL_TIMEOUT))
        )
        server.start()
        try:
            plan = [support_load.Request("GET", "/api/ping")] * 60
            assert {r.status for r in support_load.send_all(server.port, plan, concurrency=4)} == {200}
            support.wait_until(lambda: collector.accepted >= 2, timeout=30, message="exporters reached the collector")
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(timeout=GRACEFUL_TIMEOUT * 3)
            took = time.monotonic() - started
        finally:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
        output = server.output()
    dropped = re.findall(r"exit: (\d+) ([a-z ]+) dropped", output)
    print(f"SIGTERM with a hung collector: gunicorn exited in {took:.1f}s (code {code}); dropped: {dropped}")
    assert "SIGKILL" not in output, output[-3000:]  # no worker outlived the graceful timeout
    assert "Shutting down: Master" in output
    assert code == 0
    assert any(what == "spans" for _, what in dropped), output[-3000:]
