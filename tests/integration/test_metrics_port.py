"""The metrics port in real processes: IPv4, IPv6 and dual-stack binding; bounded threads and idle timeouts."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys

import psutil
import pytest
import requests

from tests import support

pytestmark = pytest.mark.integration

# A process that serves only the metrics port, as a web or worker process does (one try, no lock).
EXPORTER = """
import sys, time
from django_observe.metrics import exporter
address, port, timeout, most = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
allowed = [net for net in sys.argv[5].split(",") if net]
app = exporter.make_app(None, None, allowed, lambda: [])
client_allowed = exporter.Access.build(None, allowed).client_allowed if allowed else None
server = exporter.Exporter(
    address, port, app, None, connection_timeout=timeout, max_connections=most, client_allowed=client_allowed
)
server.start()
while True:
    time.sleep(60)
"""


@contextlib.contextmanager
def exporter_process(address: str, timeout: float = 10.0, most: int = 16, allowed: str = ""):
    port = support.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", EXPORTER, address, str(port), str(timeout), str(most), allowed],
        cwd=support.ROOT,
        env={**os.environ, "PYTHONPATH": str(support.ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        host = "::1" if address.startswith(":") and not support.port_open("127.0.0.1", port) else "127.0.0.1"
        support.wait_until(
            lambda: proc.poll() is not None or support.port_open("127.0.0.1", port) or support.port_open(host, port),
            timeout=20,
            interval=0.05,
            message="metrics port open",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"exporter exited: {proc.stderr.read().decode(errors='replace')}")
        yield proc, port
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stderr.close()


def get(host: str, port: int, timeout: float = 5.0) -> requests.Response:
    literal = f"[{host}]" if ":" in host else host
    return requests.get(f"http://{literal}:{port}/metrics", timeout=timeout)


def test_unspecified_ipv6_address_serves_ipv6_and_ipv4_clients():
    support.require_ipv6()
    with exporter_process("::") as (_, port):
        over_ipv6 = get("::1", port)
        over_ipv4 = get("127.0.0.1", port)
    assert over_ipv6.status_code == 200 and "python_info" in over_ipv6.text
    assert over_ipv4.status_code == 200 and "python_info" in over_ipv4.text


def test_ipv6_loopback_address_binds():
    support.require_ipv6()
    with exporter_process("::1") as (_, port):
        assert get("::1", port).status_code == 200
        assert not support.port_open("127.0.0.1", port)


def test_ipv4_address_binds():
    with exporter_process("127.0.0.1") as (_, port):
        assert get("127.0.0.1", port).status_code == 200


def _connection_closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False  # connected, nothing sent by the server yet
    except OSError as exc:
        # Reset: closed by the server. Not connected yet (still in the SYN backlog): not closed.
        return exc.errno not in (107, 11)  # ENOTCONN, EAGAIN


def test_half_open_connections_neither_pile_up_threads_nor_stay_open():
    # The idle timeout is long enough that the scrape below is answered while half-open connections still hold
    # their threads: an ordering (some were still open when it answered), not a duration.
    timeout, most, half_open = 4.0, 16, 30
    with exporter_process("127.0.0.1", timeout=timeout, most=most) as (proc, port):
        assert get("127.0.0.1", port).status_code == 200
        process = psutil.Process(proc.pid)
        support.wait_until(lambda: process.num_threads() <= 2, timeout=30, message="warm-up request's thread gone")
        baseline = process.num_threads()
        sockets = []
        try:
            for _ in range(half_open):  # connect, send nothing
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                sockets.append(sock)
            counts = []

            def accepted() -> bool:
                counts.append(process.num_threads())
                return counts[-1] >= baseline + most // 2

            support.wait_until(accepted, timeout=30, interval=0.02, message="the half-open connections accepted")
            scrape = get("127.0.0.1", port, timeout=30)
            answered_while_held = not all(_connection_closed(s) for s in sockets)
            counts.append(process.num_threads())
            assert max(counts) <= baseline + most + 2, "more threads than the bound"
            assert scrape.status_code == 200 and "python_info" in scrape.text
            assert answered_while_held, "the scrape waited until every idle connection had timed out"

            support.wait_until(
                lambda: all(_connection_closed(s) for s in sockets),
                timeout=timeout * (half_open / most + 2) + 20,
                interval=0.1,
                message="the server closed every idle connection",
            )
            assert process.num_threads() <= baseline + most + 2
        finally:
            for sock in sockets:
                sock.close()
        support.wait_until(lambda: process.num_threads() <= baseline, timeout=30, message="threads back to baseline")


def test_clients_off_the_allowlist_are_refused_at_accept_time_and_hold_no_slot():
    """16 clients off METRICS_ALLOWED_IPS connect and send nothing (4 slots, a 30 s timeout); an allowed client's
    scrape is answered, and by then every one of them was already disconnected, unread. Before, they held
    every slot until their timeout and the allowed scrape waited in the backlog behind them."""
    with exporter_process("0.0.0.0", timeout=30.0, most=4, allowed="127.0.0.2/32") as (_, port):
        hostile = []
        try:
            for _ in range(16):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.setblocking(False)
                hostile.append(sock)
            allowed = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=("127.0.0.2", 0))
            with allowed:
                allowed.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                answer = b""
                while chunk := allowed.recv(65536):
                    answer += chunk
            closed = [_connection_closed(sock) for sock in hostile]
        finally:
            for sock in hostile:
                sock.close()
        assert answer.startswith(b"HTTP/1.0 200"), answer[:200]
        assert all(closed), f"{closed.count(False)} of 16 refused clients still held a connection"


def test_a_client_trickling_its_request_is_cut_off_at_the_timeout():
    timeout = 1.0
    with exporter_process("127.0.0.1", timeout=timeout, most=4) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            # One byte every 0.3 s: each arrives well within any per-read idle timeout, so only a deadline on
            # the whole request cuts the client off before its request is complete.
            request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
            sent = None
            for index, byte in enumerate(request):
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    sent = index
                    break
                sock.settimeout(0.3)
                try:
                    if sock.recv(1) == b"":
                        sent = index + 1
                        break
                except TimeoutError:
                    pass
        assert sent is not None, "the server kept reading a request trickled over 10 seconds"
        assert sent < len(request), "cut off only after the whole request was sent"


def test_gunicorn_metrics_port_on_the_unspecified_ipv6_address(tmp_path):
    support.require_ipv6()
    port = support.free_port()
    env = support.sqlite_env(
        tmp_path, METRICS_PORT=str(port), METRICS_ADDRESS="::", METRICS_MULTIPROC_DIR=str(tmp_path / "metrics")
    )
    with support.gunicorn(env, tmp_path / "web.log", workers=2) as server:
        support.wait_for_port("127.0.0.1", port, 20)
        assert requests.get(server.url + "/api/ping", timeout=5).status_code == 200
        over_ipv6 = get("::1", port)
        over_ipv4 = get("127.0.0.1", port)
    assert over_ipv6.status_code == 200 and "http_server_request_duration_seconds" in over_ipv6.text
    assert over_ipv4.status_code == 200 and "http_server_request_duration_seconds" in over_ipv4.text
