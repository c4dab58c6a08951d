"""The measurements beside the per-request tax (run by ``benchmarks/run.py``; ``--quick`` shrinks them).

- ``/readyz`` latency under gunicorn: sequential with the results cached and uncached, 200 concurrent
  probes, and one dependency dead (a Redis that accepts connections and never answers);
- scrape time of the metrics port for the full catalogue under gunicorn multiprocess (4 workers);
- cost of one log line per format, in-process, to a null stream;
- cost of the request-path pieces added for exemplars and query counting, in-process.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from .ports import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def _summary(ms: list[float]) -> dict:
    return {"n": len(ms), "p50_ms": _pct(ms, 50), "p99_ms": _pct(ms, 99), "max_ms": max(ms)}


def _get(url: str, timeout: float = 10) -> tuple[int, float]:
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    return status, (time.perf_counter() - start) * 1000


@contextlib.contextmanager
def _gunicorn(env: dict, workers: int = 2, threads: int = 16):
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "benchmarks.project.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    argv += ["--workers", str(workers), "--threads", str(threads), "--log-level", "warning"]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


@contextlib.contextmanager
def _silent_redis():
    """A Redis that is not there: it accepts connections (backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    try:
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    finally:
        sock.close()


def readyz(env: dict, quick: bool) -> dict:
    n, burst_size = (20, 20) if quick else (500, 200)
    out = {}
    for label, overrides in (("cached", {}), ("uncached", {"HEALTH_CACHE_TTL": "0"})):
        with _gunicorn({**env, **overrides}) as url:
            for _ in range(5):
                _get(url + "/readyz")
            samples = [_get(url + "/readyz") for _ in range(n)]
            assert {s for s, _ in samples} == {200}, samples[:3]
            out[label] = _summary([ms for _, ms in samples])
            with concurrent.futures.ThreadPoolExecutor(burst_size) as pool:
                burst = list(pool.map(lambda _: _get(url + "/readyz", 30), range(burst_size)))
            out[f"{label}_{burst_size}_concurrent"] = _summary([ms for _, ms in burst])
            out[f"{label}_{burst_size}_concurrent"]["statuses"] = sorted({s for s, _ in burst})
    with _silent_redis() as redis_url:
        dead = {**env, "REDIS_URLS": redis_url, "HEALTH_TIMEOUT": "1", "HEALTH_CACHE_TTL": "0"}
        with _gunicorn(dead) as url:
            samples = [_get(url + "/readyz", 30) for _ in range(3 if quick else 10)]
            out["redis_dead_timeout_1s"] = _summary([ms for _, ms in samples])
            out["redis_dead_timeout_1s"]["statuses"] = sorted({s for s, _ in samples})
    return out


def scrape(env: dict, quick: bool) -> dict:
    metrics_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        mp_env = {**env, "METRICS_PORT": str(metrics_port), "METRICS_MULTIPROC_DIR": tmp}
        with _gunicorn(mp_env, workers=4, threads=1) as url:
            wait_port(metrics_port)
            for i in range(40 if quick else 400):
                _get(url + ("/ping", "/db-cache", "/readyz", f"/missing/{i % 20}")[i % 4])
            metrics = f"http://127.0.0.1:{metrics_port}/metrics"
            _get(metrics)
            samples = [_get(metrics)[1] for _ in range(5 if quick else 30)]
            with urllib.request.urlopen(metrics, timeout=10) as response:
                body = response.read()
    return {**_summary(samples), "bytes": len(body), "series": body.count(b"\n") - body.count(b"\n#")}


def log_lines(quick: bool) -> dict:
    """µs per ``logger.info`` with three extra fields, formatted and written to a null stream."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.project.settings")
    from django_observe.logging import setup as log_setup

    n = 2000 if quick else 50000
    out = {}
    formats = [("json", {}), ("text", {})]
    from django_observe.logging.flavours import FLAVORS as flavors

    formats += [("json", {"flavor": f}) for f in flavors if f != "default"]
    for fmt, extra_kwargs in formats:
        log_setup.configure_logging(level="info", fmt=fmt, otel_enabled=False, handlers=True, **extra_kwargs)
        root = logging.getLogger()
        for handler in root.handlers:
            handler.setStream(io.StringIO()) if hasattr(handler, "setStream") else None
        logger = logging.getLogger("bench.logs")
        fields = {"user_id": "42", "model": "gpt", "tokens_used": 1250}
        for _ in range(200):
            logger.info("Chat request processed", extra=fields)
        start = time.perf_counter_ns()
        for _ in range(n):
            logger.info("Chat request processed", extra=fields)
            if _ % 1000 == 0:
                for handler in root.handlers:
                    stream = getattr(handler, "stream", None)
                    if isinstance(stream, io.StringIO):
                        stream.seek(0)
                        stream.truncate()
        label = fmt if not extra_kwargs else f"json ({extra_kwargs['flavor']})"
        out[label] = round((time.perf_counter_ns() - start) / n / 1000, 2)
    logging.getLogger().handlers.clear()
    return out


def request_path_pieces(quick: bool) -> dict:
    """µs per call of what exemplars and query counting add to one observation."""
    from django_observe.queries import QueryCounter

    n = 20000 if quick else 500000
    out = {}
    stats = QueryCounter(enabled=True, threshold=10).new()
    sql = 'SELECT "auth_user"."id" FROM "auth_user" WHERE "auth_user"."id" = %s LIMIT 21'
    start = time.perf_counter_ns()
    for _ in range(n):
        stats.add(sql, 0.0001)
    out["query_count_per_statement_us"] = round((time.perf_counter_ns() - start) / n / 1000, 3)
    with tempfile.TemporaryDirectory() as tmp:
        from django_observe.metrics.exemplars import ExemplarStore

        store = ExemplarStore(tmp)
        store.declare("h", ("method", "route", "status_code"), (0.005, 0.01, 0.1, 1.0, float("inf")))
        labels = ("GET", "api/ping", "200")
        trace, span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
        start = time.perf_counter_ns()
        for i in range(n):
            store.record("h", labels, (i % 100) / 1000, trace, span)
        out["exemplar_record_us"] = round((time.perf_counter_ns() - start) / n / 1000, 3)
        start = time.perf_counter_ns()
        for _ in range(100):
            store.flush()
        out["exemplar_flush_us"] = round((time.perf_counter_ns() - start) / 100 / 1000, 1)
    return out


def run(env: dict, quick: bool) -> dict:
    results = {}
    for name, fn in (
        ("readyz", lambda: readyz(env, quick)),
        ("scrape", lambda: scrape(env, quick)),
        ("log_line_us", lambda: log_lines(quick)),
        ("request_path_us", lambda: request_path_pieces(quick)),
    ):
        results[name] = fn()
        print(f"{name:16} {results[name]}", file=sys.stderr)
    return results


def markdown(results: dict) -> list[str]:
    lines = [
        "",
        "| `/readyz` (gunicorn, 2 workers × 16 threads) | n | p50 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, r in results.get("readyz", {}).items():
        lines.append(f"| {label} | {r['n']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} |")
    s = results.get("scrape")
    if s:
        lines += [
            "",
            f"Scrape of the full catalogue, gunicorn multiprocess (4 workers): p50 {s['p50_ms']:.1f} ms, "
            f"p99 {s['p99_ms']:.1f} ms, {s['bytes']} bytes, {s['series']} samples.",
        ]
    logs = results.get("log_line_us")
    if logs:
        lines += [
            "",
            "Log line (µs, three extra fields, to a null stream): "
            + ", ".join(f"{k} {v}" for k, v in logs.items())
            + ".",
        ]
    pieces = results.get("request_path_us")
    if pieces:
        lines += ["", "Request-path pieces (µs per call): " + ", ".join(f"{k} {v}" for k, v in pieces.items()) + "."]
    return lines
