"""The metrics port in real processes: IPv4, IPv6 and dual-stack binding; bounded threads and idle timeouts."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

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
app = exporter.make_app(None, None, (), lambda: [])
server = exporter.Exporter(address, port, app, None, connection_timeout=timeout, max_connections=most)
server.start()
while True:
    time.sleep(60)
"""


def ipv6_loopback() -> bool:
    """Whether this machine can bind ::1 at all (containers without IPv6 cannot)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextlib.contextmanager
def exporter_process(address: str, timeout: float = 10.0, most: int = 16):
    port = support.free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", EXPORTER, address, str(port), str(timeout), str(most)],
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
    if not ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1 cannot be bound)")
    with exporter_process("::") as (_, port):
        over_ipv6 = get("::1", port)
        over_ipv4 = get("127.0.0.1", port)
    assert over_ipv6.status_code == 200 and "python_info" in over_ipv6.text
    assert over_ipv4.status_code == 200 and "python_info" in over_ipv4.text


def test_ipv6_loopback_address_binds():
    if not ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1 cannot be bound)")
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
    timeout, most, half_open = 1.0, 16, 30
    with exporter_process("127.0.0.1", timeout=timeout, most=most) as (proc, port):
        assert get("127.0.0.1", port).status_code == 200
        process = psutil.Process(proc.pid)
        support.wait_until(lambda: process.num_threads() <= 2, timeout=5, message="warm-up request's thread gone")
        baseline = process.num_threads()
        sockets = []
        try:
            for _ in range(half_open):  # connect, send nothing
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex(("127.0.0.1", port))
                sockets.append(sock)
            # Long enough for the kernel to retransmit any SYN it dropped (after 1 s), so every one gets through.
            peak, deadline = baseline, time.monotonic() + 2.5
            while time.monotonic() < deadline:
                peak = max(peak, process.num_threads())
                time.sleep(0.02)
            assert peak <= baseline + most + 2
            assert peak >= baseline + most // 2, "the half-open connections were not even accepted"

            started = time.monotonic()
            scrape = get("127.0.0.1", port, timeout=timeout * 4 + 5)
            assert scrape.status_code == 200 and "python_info" in scrape.text
            assert time.monotonic() - started < timeout * 4 + 5

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
        support.wait_until(lambda: process.num_threads() <= baseline, timeout=10, message="threads back to baseline")


def test_a_client_trickling_its_request_is_cut_off_at_the_timeout():
    timeout = 1.0
    with exporter_process("127.0.0.1", timeout=timeout, most=4) as (_, port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            started = time.monotonic()
            closed_after = None
            for byte in b"GET /metrics HTTP/1.1\r\nHost: x\r\n":
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed_after = time.monotonic() - started
                    break
                sock.settimeout(0.3)
                try:
                    if sock.recv(1) == b"":
                        closed_after = time.monotonic() - started
                        break
                except TimeoutError:
                    pass
        assert closed_after is not None, "the server kept reading a request trickled over 10 seconds"
        assert closed_after < timeout + 1.5


def test_gunicorn_metrics_port_on_the_unspecified_ipv6_address(tmp_path):
    if not ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1 cannot be bound)")
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
