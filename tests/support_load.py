"""A bounded load generator: sends exactly the planned requests to a loopback server, N at a time."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.client
import threading
import time
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


@dataclasses.dataclass(frozen=True)
class Response:
    request: Request
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


def send_all(port: int, plan: Sequence[Request], concurrency: int = 8, timeout: float = 10.0) -> list[Response]:
    """Send every request in ``plan`` (each exactly once) over keep-alive connections; return in plan order."""
    if not 0 < len(plan) <= 100_000:
        raise ValueError("plan must hold 1..100000 requests")
    local = threading.local()

    def connection() -> http.client.HTTPConnection:
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        return local.conn

    def one(request: Request) -> Response:
        for attempt in (1, 2):
            conn = connection()
            start = time.perf_counter()
            try:
                conn.request(request.method, request.path, body=request.body, headers=dict(request.headers))
                raw = conn.getresponse()
                body = raw.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest):
                # A server may close an idle keep-alive connection; the request was not processed.
                conn.close()
                local.conn = None
                if attempt == 2:
                    raise
                continue
            if raw.getheader("Connection", "").lower() == "close":
                conn.close()
                local.conn = None
            return Response(
                request, raw.status, {k.lower(): v for k, v in raw.getheaders()}, body, time.perf_counter() - start
            )
        raise AssertionError("unreachable")

    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, plan))
