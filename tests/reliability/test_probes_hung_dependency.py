"""Liveness never waits for readiness (issue #34 finding 4): a SIGSTOPped Redis and 8 readiness pollers
against gunicorn (2 sync workers); /healthz is answered while the Redis check is provably still blocked.

Before: every /readyz waited for the hung check (single flight, but each waiter held a sync worker), so both
workers were held and /healthz queued behind them (p50 1.77 s, max 3.9 s with a 2 s check timeout; here the
timeout is 20 s, so /healthz would come after the check's "Timed out" line).
"""

from __future__ import annotations

import http.client
import os
import signal
import statistics
import threading
import time

import pytest

from tests import support

pytestmark = pytest.mark.integration

POLLERS = 8
TIMED_OUT = "health check redis failed"


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_liveness_is_answered_while_a_readiness_check_hangs(tmp_path):
    with support.throwaway_redis() as redis:
        env = support.sqlite_env(tmp_path, REDIS_URLS=redis.url, HEALTH_TIMEOUT="20", HEALTH_CACHE_TTL="0")
        with support.gunicorn(env, tmp_path / "web.log", workers=2) as server:
            for _ in range(4):  # both workers have a passing result
                assert get(server.port, "/readyz") == 200
            os.kill(redis.proc.pid, signal.SIGSTOP)
            answered: list[int] = []  # statuses of the /readyz sent after Redis stopped
            done = threading.Event()

            def poll() -> None:
                while not done.is_set():
                    answered.append(get(server.port, "/readyz"))

            pollers = [threading.Thread(target=poll, daemon=True) for _ in range(POLLERS)]
            try:
                for thread in pollers:
                    thread.start()
                # /readyz sent after Redis stopped have been answered: their workers started the (blocked) refresh.
                support.wait_until(
                    lambda: len(answered) >= 2 * POLLERS,
                    timeout=60,
                    message="readiness answered while Redis is stopped",
                )
                latencies, statuses = [], []
                for _ in range(20):
                    started = time.monotonic()
                    statuses.append(get(server.port, "/healthz"))
                    latencies.append(time.monotonic() - started)
                after_liveness = server.output()
                readyz_answered = len(answered)
                # The refresh was blocked all along: its timeout line comes after every /healthz answer.
                support.wait_until(lambda: TIMED_OUT in server.output(), timeout=90, message="the check timed out")
            finally:
                done.set()
                os.kill(redis.proc.pid, signal.SIGCONT)
                for thread in pollers:
                    thread.join(timeout=60)
    print(
        f"hung Redis, {POLLERS} readiness pollers: /healthz p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {len(latencies)}; {readyz_answered} /readyz answered "
        "while the check was blocked"
    )
    assert statuses == [200] * 20
    assert TIMED_OUT not in after_liveness, "every /healthz was answered before the hung check timed out"
    assert readyz_answered >= 2 * POLLERS  # readiness kept answering (from the last result)
