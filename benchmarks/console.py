"""The console's costs (docs/console.md, "What it costs").

    python -m benchmarks.console instructions      # /ping: instructions per request, observe vs observe_console
    python -m benchmarks.console flush             # the flush thread's CPU per recorded request
    python -m benchmarks.console render [--database-url postgres://postgres@127.0.0.1:5432/DB]
                                                   # 7 days x 50 routes x 100 req/s seeded, overview render, table sizes

``instructions`` counts with callgrind exactly as ``benchmarks.instructions`` does (the in-process WSGI
handler, only the requests counted; the flush thread is not on a request's path and is not counted there).
``flush`` serves N requests in-process with the console recording, then times the flush that writes them
(CPU time of the flushing thread) and divides by N. ``render`` seeds the data through the recorder and
``store.write`` (the flush thread's own write path) with a simulated clock, one batch per simulated hour,
then renders the overview for each period as a superuser and reports the server time and the table sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env(config: str, db: str, **extra: str) -> dict[str, str]:
    from .configs import environment

    return environment(config, db, options=extra)


def instructions(n: int = 200) -> dict[str, float]:
    from .instructions import count, migrate

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in ("observe", "observe_console"):
            # callgrind's collection is per process, not per thread: a flush during the counted requests would
            # be counted as theirs. The flush is measured on its own (``flush``), so it waits here.
            env = _env(config, f"{tmp}/{config}.sqlite3", CONSOLE_FLUSH_SECONDS="3600")
            migrate(env)
            out[config] = count("/ping", env, n=n)
    out["ratio"] = out["observe_console"] / out["observe"]
    return out


def _setup(db: str, database_url: str | None = None) -> None:
    os.environ.update(_env("observe_console", db, CONSOLE_FLUSH_SECONDS="3600"))
    if database_url:
        os.environ["BENCH_DATABASE_URL"] = database_url
    os.environ["LOG_LEVEL"] = "warning"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def flush(n: int = 2000) -> dict[str, float]:
    """CPU microseconds the flush spends per recorded request (one batch of ``n`` requests, 5 routes)."""
    with tempfile.TemporaryDirectory() as tmp:
        _setup(f"{tmp}/flush.sqlite3")
        from django.test import Client

        from django_observe.console.flusher import Flusher
        from django_observe.console.recorder import active

        recorder = active()
        assert recorder is not None
        flusher = Flusher(recorder)
        client = Client()
        client.get("/ping")
        flusher.flush()  # warm: tables and connection
        results = []
        for _ in range(5):
            for _ in range(n):
                client.get("/ping")
            start = time.thread_time()
            flusher.flush()
            results.append((time.thread_time() - start) / n * 1e6)
        if recorder.flusher is not None:  # the thread the first request started: flush now, not at exit
            recorder.flusher.stop()
        return {"requests_per_batch": n, "flush_cpu_us_per_request": round(statistics.median(results), 3)}


def seed(routes: int = 50, rate: float = 100.0, days: int = 7) -> dict[str, float]:
    """Seven days of traffic through the recorder and the flush's write path, with a simulated clock."""
    from django_observe.console import store
    from django_observe.console.recorder import ConsoleOptions, ConsoleRecorder, quiet

    quiet.set(True)  # the seeding's own statements are not traffic

    now = time.time()
    clock = {"t": now - days * 86400}
    recorder = ConsoleRecorder(ConsoleOptions(max_keys=1_000_000, max_entries=100_000), clock=lambda: clock["t"])
    per_minute = int(rate * 60 / routes)  # requests per route per minute
    latencies = (3.0, 8.0, 20.0, 60.0, 180.0, 700.0, 2500.0)
    weights = (0.30, 0.30, 0.20, 0.12, 0.05, 0.025, 0.005)
    started = time.perf_counter()
    writes = 0
    for hour in range(days * 24):
        base = now - days * 86400 + hour * 3600
        for minute in range(60):
            at = base + minute * 60
            for r in range(routes):
                key = f"GET api/route-{r:02d}/<int:pk>"
                for ms, weight in zip(latencies, weights, strict=True):
                    count = max(int(per_minute * weight), 1)
                    recorder.add("request", key, ms, count=count, histogram=True, at=at)
                    recorder.add("all", "", ms, count=count, histogram=True, at=at)
                recorder.add(
                    "query",
                    f'SELECT "t{r}"."id" FROM "t{r}" WHERE "t{r}"."owner_id" = %s',
                    1.5,
                    count=per_minute,
                    at=at,
                )
                recorder.add("user", str(r * 7 % 40), 30.0, count=per_minute // 10, at=at)
            recorder.add("exception", f"ValueError at app/views.py:{minute % 10}", at=at)
            recorder.add("cache", "default", value=30.0, count=40, at=at)
            recorder.add("outbound", "api.example.com", 120.0, histogram=True, count=20, at=at)
            recorder.add("job", "app.tasks.send_mail", 40.0, histogram=True, count=10, at=at)
            if minute % 6 == 0:  # one kept (slow) request per route every 6 minutes: 84,000 in 7 days
                for r in range(routes):
                    recorder.entry("request", _kept(at, r))
                recorder.entry("exception", _occurrence(at, minute))
        clock["t"] = base + 3600
        store.write("default", recorder.take(), clock["t"])
        store.trim("default", clock["t"], 7)  # as the flush thread does (once a minute there)
        writes += 1
    store.trim("default", now, 7)
    return {"seed_seconds": round(time.perf_counter() - started, 1), "batches": writes}


def _kept(at: float, route: int) -> dict[str, object]:
    timeline = [
        ("query", f'SELECT "t{route}"."id" FROM "t{route}" WHERE "t{route}"."id" = %s', i * 50.0, 40.0)
        for i in range(20)
    ]
    return {
        "correlation_id": f"req_{int(at):x}{route:04x}",
        "at": at,
        "method": "GET",
        "route": f"api/route-{route:02d}/<int:pk>",
        "path": f"/api/route-{route:02d}/1",
        "status": 200,
        "duration_ms": 1200.0,
        "reason": "slow",
        "user_id": "7",
        "trace_id": "",
        "exception_group": "",
        "repeats": 20,
        "timeline": timeline,
        "logs": [{"at_ms": 1.0, "level": "INFO", "logger": "app", "message": "working"}],
        "dropped": 0,
    }


def _occurrence(at: float, minute: int) -> dict[str, object]:
    from django_observe.console.recorder import key_hash

    label = f"ValueError at app/views.py:{minute % 10}"
    return {
        "group": key_hash("exception", label),
        "at": at,
        "type": "ValueError",
        "location": f"app/views.py:{minute % 10}",
        "message": "bad value",
        "traceback": "Traceback (most recent call last):\n" + '  File "app/views.py", line 1, in view\n' * 20,
        "correlation_id": f"req_{int(at):x}",
        "where": "GET api/route-01/<int:pk>",
    }


def _sizes() -> dict[str, object]:
    from django.db import connection

    from django_observe.console.models import Aggregate, ExceptionOccurrence, FailedJob, KeptRequest, Value

    sizes: dict[str, object] = {}
    for model in (Aggregate, KeptRequest, ExceptionOccurrence, FailedJob, Value):
        table = model._meta.db_table
        rows = model.objects.count()
        size = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_total_relation_size(%s)", [table])
                size = cursor.fetchone()[0]
        sizes[table] = {"rows": rows, "bytes": size}
    return sizes


def render(database_url: str | None, repeat: int = 7) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        _setup(f"{tmp}/render.sqlite3", database_url)
        result: dict[str, object] = dict(seed())
        from django.contrib.auth.models import AnonymousUser
        from django.test import RequestFactory

        from django_observe.console.views import overview

        class Root(AnonymousUser):
            is_authenticated = True
            is_active = True
            is_superuser = True

        factory = RequestFactory()
        for period in ("1h", "6h", "24h", "7d"):
            times = []
            for _ in range(repeat):
                request = factory.get(f"/observe/?period={period}")
                request.user = Root()
                request.session = {}
                start = time.perf_counter()
                response = overview(request)
                times.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, response.status_code
            result[f"overview_{period}_ms"] = round(statistics.median(times), 1)
        result["tables"] = _sizes()
        from django_observe.console.recorder import active

        recorder = active()
        if recorder is not None and recorder.flusher is not None:
            recorder.flusher.stop()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("instructions", "flush", "render"))
    parser.add_argument("--database-url", default=None, help="PostgreSQL for render (default: SQLite)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.what == "instructions":
        print(json.dumps(instructions(), indent=2))
        return
    if not args.inner:  # flush and render set Django up: in a fresh process
        argv = [sys.executable, "-m", "benchmarks.console", args.what, "--inner"]
        if args.database_url:
            argv += ["--database-url", args.database_url]
        raise SystemExit(subprocess.call(argv, cwd=ROOT))
    result = flush() if args.what == "flush" else render(args.database_url)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
