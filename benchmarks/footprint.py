"""What each process pays before and besides the request path: memory, ``django.setup()`` time, modules.

    python -m benchmarks.footprint                 # the in-process table (3 rounds), writes results/footprint.*
    python -m benchmarks.footprint --quick         # one round, 200 requests (a smoke run)
    python -m benchmarks.footprint --servers       # also a gunicorn worker and a Celery prefork child
    python -m benchmarks.footprint --growth        # also the long runs: does memory grow? (minutes)
    python -m benchmarks.footprint --write-baseline  # record results/footprint-baseline.json (CI compares)

In-process: each configuration (benchmarks/project/settings.py) runs in a fresh process of its own, which
times ``django.setup()`` (wall clock, and CPU time, which the load of a shared machine moves less: the
targets are judged on it), serves 2,000 requests through Django's WSGI handler (``/ping`` and ``/db-cache`` in
turn) and reports its resident memory (``VmRSS``) and the modules loaded; rounds go round the configurations
and each figure is the median of its rounds.

``--servers``: the resident memory of a gunicorn sync worker after 1,000 requests and of a Celery prefork
child after 1,000 tasks (filesystem broker, no service needed), with and without django_observe (tracing
off). ``--growth``: the same worker from 1,000 to 50,000 requests over rotating routes, user agents, hostile
headers and correlation IDs; a Celery child from 1,000 to 10,000 tasks; the worker with tracing on exporting
to a collector that is down (a port nobody listens on), from 1,000 to 50,000 requests.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.server
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .configs import available, environment

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = RESULTS / "footprint-baseline.json"
CONFIGS = {
    "bare": "bare Django",
    "floor": "floor (the hand-written minimum)",
    "peers": "django-guid + django-structlog + django-prometheus",
    "observe": "**django_observe**, tracing off",
    "otel_raw": "raw OpenTelemetry Django instrumentor + SDK",
    "observe_otel": "**django_observe**, tracing on",
}
VIEWS = ("/ping", "/db-cache")


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process (``VmRSS`` of ``/proc/PID/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def families(modules=None) -> dict[str, int]:
    """``{top-level package: modules loaded}`` for the packages outside the standard library."""
    counts: collections.Counter[str] = collections.Counter()
    for name in modules if modules is not None else list(sys.modules):
        top = name.split(".", 1)[0]
        if top not in sys.stdlib_module_names and not top.startswith("_") and top != "__main__":
            counts[top] += 1
    return dict(sorted(counts.items()))


def child(requests: int, out: str) -> None:
    """One configuration's figures (``BENCH_CONFIG``), in this fresh process."""
    from . import inprocess

    start, cpu = time.perf_counter(), time.process_time()
    inprocess.setup_django()
    setup_ms = (time.perf_counter() - start) * 1000
    setup_cpu_ms = (time.process_time() - cpu) * 1000
    after_setup = len(sys.modules)
    calls = [inprocess.request_driver(view, setup=False) for view in VIEWS]
    for i in range(requests):
        status = calls[i % len(calls)]()
        if not status.startswith("200"):
            raise SystemExit(f"{VIEWS[i % len(calls)]} answered {status}")
    result = {
        "rss": rss_bytes(),
        "setup_ms": setup_ms,
        "setup_cpu_ms": setup_cpu_ms,
        "modules_after_setup": after_setup,
        "modules": len(sys.modules),
        "families": families(),
    }
    Path(out).write_text(json.dumps(result))


@contextlib.contextmanager
def _sink():
    """A local OTLP/HTTP sink that accepts every export (``run._Sink``), so traced configurations export as in
    production; yields its endpoint."""
    from .run import _Sink

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def migrate(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"migrate failed for {env['BENCH_CONFIG']}:\n{proc.stderr[-3000:]}")


def measure_once(env: dict[str, str], requests: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.footprint", "--child", str(requests), out.name],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{env['BENCH_CONFIG']}: exit {proc.returncode}\n{proc.stderr[-3000:]}")
        return json.loads(Path(out.name).read_text())


def compile_sources() -> None:
    """Byte-compile django_observe and the benchmark project, as ``pip install`` does for an installed package:
    with ``PYTHONDONTWRITEBYTECODE`` set (as in this repository's environment) a source checkout would
    otherwise be compiled anew in every measured process, and ``django.setup()`` would count the compiler."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "django_observe"), str(ROOT / "benchmarks")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def inprocess(configs: list[str], rounds: int, requests: int) -> dict[str, dict]:
    """``{config: {rss, setup_ms, modules, families, rounds}}``, medians over ``rounds`` interleaved rounds."""
    compile_sources()
    samples: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp, _sink() as endpoint:
        envs = {
            c: environment(c, str(Path(tmp) / f"{c}.sqlite3"), otlp_endpoint=endpoint) for c in configs if available(c)
        }
        for config in set(configs) - set(envs):
            print(f"skip {config}: its packages are not installed", file=sys.stderr)
        for env in envs.values():
            migrate(env)
        for round_ in range(rounds):
            for config in list(envs)[:: 1 if round_ % 2 == 0 else -1]:
                samples.setdefault(config, []).append(measure_once(envs[config], requests))
    results = {}
    for config, runs in samples.items():
        results[config] = {
            "rss": statistics.median(r["rss"] for r in runs),
            "setup_ms": statistics.median(r["setup_ms"] for r in runs),
            "setup_cpu_ms": statistics.median(r["setup_cpu_ms"] for r in runs),
            "modules": statistics.median(r["modules"] for r in runs),
            "modules_after_setup": statistics.median(r["modules_after_setup"] for r in runs),
            "families": runs[0]["families"],
            "rounds": [{k: r[k] for k in ("rss", "setup_ms", "setup_cpu_ms", "modules")} for r in runs],
        }
    return results


def mb(value: float) -> str:
    return f"{value / 2**20:.1f} MB"


def table(results: dict[str, dict]) -> list[str]:
    lines = [
        "| configuration | RSS | over bare | `django.setup()` | x bare | CPU of `django.setup()` | x bare | modules |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    bare = results.get("bare")
    for config, label in CONFIGS.items():
        r = results.get(config)
        if r is None:
            continue
        over = f"{(r['rss'] - bare['rss']) / 2**20:+.1f} MB" if bare else "-"
        times = f"{r['setup_ms'] / bare['setup_ms']:.1f}x" if bare else "-"
        cpu = f"{r['setup_cpu_ms'] / bare['setup_cpu_ms']:.1f}x" if bare else "-"
        lines.append(
            f"| {label} | {mb(r['rss'])} | {over} | {r['setup_ms']:.0f} ms | {times} | {r['setup_cpu_ms']:.0f} ms "
            f"| {cpu} | {r['modules']:,.0f} |"
        )
    return lines


def targets(results: dict[str, dict], servers: dict | None = None) -> list[str]:
    """The issue's targets (#30), each with its measured value and whether it is met."""
    out = []

    def line(ok: bool, text: str) -> None:
        out.append(f"- {'met' if ok else 'NOT met'}: {text}")

    bare, obs, otel, raw = (results.get(c) for c in ("bare", "observe", "observe_otel", "otel_raw"))
    if bare and obs:
        over = obs["rss"] - bare["rss"]
        line(over <= 6 * 2**20, f"tracing off at most +6 MB over bare: {over / 2**20:+.1f} MB")
        ratio = obs["setup_cpu_ms"] / bare["setup_cpu_ms"]
        line(ratio <= 2, f"tracing off `django.setup()` at most 2x bare's (CPU time): {ratio:.2f}x")
    if bare and otel and raw:
        ours, theirs = otel["rss"] - bare["rss"], raw["rss"] - bare["rss"]
        line(
            ours <= 1.5 * theirs,
            f"tracing on at most 1.5x raw OpenTelemetry's memory over bare: {ours / 2**20:+.1f} MB vs "
            f"{theirs / 2**20:+.1f} MB ({ours / theirs:.2f}x)",
        )
        ratio = otel["setup_cpu_ms"] / raw["setup_cpu_ms"]
        line(ratio <= 2, f"tracing on `django.setup()` at most 2x raw OpenTelemetry's (CPU time): {ratio:.2f}x")
    for kind, figures in (servers or {}).items():
        if "observe" in figures and "bare" in figures:
            over = figures["observe"] - figures["bare"]
            line(over <= 8 * 2**20, f"{kind} within 8 MB of the same process without the app: {over / 2**20:+.1f} MB")
    return out


# --- servers: a gunicorn worker and a Celery prefork child --------------------------------------------------


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _wait_child(pid: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = _children(pid)
        if kids:
            return kids[0]
        time.sleep(0.1)
    raise RuntimeError(f"process {pid} started no child")


HOSTILE_HEADERS = (
    ("X-Correlation-ID", "../../etc/passwd"),
    ("X-Correlation-ID", "x" * 4000),
    ("X-Request-ID", "'; DROP TABLE users; --"),
    ("traceparent", "00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-0000000000000000-01"),
    ("X-Forwarded-For", ", ".join(f"10.0.{i}.{i}" for i in range(60))),
    ("User-Agent", "\x00\x01\x7f" + "A" * 2000),
)


def _request(port: int, i: int, rotate: bool) -> None:
    """One request over a fresh connection (gunicorn's sync worker closes each one); with ``rotate``, a route,
    a user agent, a correlation ID and a hostile header that change from request to request."""
    import http.client

    headers = {}
    path = VIEWS[i % 2]
    if rotate:
        path = (f"/missing/{i}", f"/ping?q={i}", "/db-cache", f"/readyz?x={i}", "/ping")[i % 5]
        headers["User-Agent"] = f"bench-agent/{i} (rotating; {i * 7919 % 100003})"
        headers["X-Correlation-ID"] = f"cid-{i:012d}"
        name, value = HOSTILE_HEADERS[i % len(HOSTILE_HEADERS)]
        headers[f"{name}"] = value
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers=headers)
        connection.getresponse().read()
    finally:
        connection.close()


def gunicorn_worker(env: dict[str, str], checkpoints: tuple[int, ...], rotate: bool = False) -> dict[int, int]:
    """``{requests served: the worker's RSS}`` of a gunicorn sync worker (1 worker) at each checkpoint."""
    import signal

    from .ports import free_port, wait_port

    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "benchmarks.project.wsgi:application", "--workers", "1"]
    argv += ["--bind", f"127.0.0.1:{port}", "--log-level", "warning"]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    figures = {}
    try:
        wait_port(port)
        worker = _wait_child(proc.pid)
        served = 0
        for checkpoint in checkpoints:
            while served < checkpoint:
                _request(port, served, rotate)
                served += 1
            figures[checkpoint] = rss_bytes(worker)
    finally:
        # SIGKILL: the figures are taken, and django_observe's SIGTERM drain would keep the worker serving.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    return figures


def celery_child(env: dict[str, str], checkpoints: tuple[int, ...]) -> dict[int, int]:
    """``{tasks run: the prefork child's RSS}`` of a Celery worker (concurrency 1, filesystem broker)."""
    import signal

    with tempfile.TemporaryDirectory() as tmp:
        broker, staging, marks = Path(tmp) / "broker", Path(tmp) / "staging", Path(tmp) / "marks"
        for folder in (broker, staging, marks):
            folder.mkdir()
        env = {**env, "BENCH_CELERY_DIR": str(broker), "BENCH_MARKS": str(marks)}
        argv = [sys.executable, "-m", "celery", "-A", "benchmarks.project.celery_app", "worker"]
        argv += ["--pool", "prefork", "--concurrency", "1", "--loglevel", "WARNING", "--without-heartbeat"]
        argv += ["--without-gossip", "--without-mingle", "--prefetch-multiplier", "4"]
        log = open(Path(tmp) / "worker.log", "w")  # noqa: SIM115 (closed below)
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
        figures = {}
        try:
            worker = _wait_child(proc.pid)
            sent = 0
            for checkpoint in checkpoints:
                subprocess.run(
                    [sys.executable, "-m", "benchmarks.project.celery_app", str(sent), str(checkpoint)],
                    cwd=ROOT,
                    env={**env, "BENCH_CELERY_OUT": str(staging)},
                    check=True,
                )
                for message in sorted(staging.iterdir()):
                    message.rename(broker / message.name)
                mark = marks / str(checkpoint - 1)
                deadline = time.monotonic() + 600
                while not mark.exists():
                    if time.monotonic() > deadline or proc.poll() is not None:
                        output = (Path(tmp) / "worker.log").read_text()[-3000:]
                        raise RuntimeError(f"Celery did not run task {checkpoint - 1} (exit {proc.poll()}):\n{output}")
                    time.sleep(0.2)
                sent = checkpoint
                figures[checkpoint] = rss_bytes(worker)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            log.close()
    return figures


def servers(requests: int, tasks: int) -> dict[str, dict[str, int]]:
    """``{"gunicorn worker after N requests": {config: RSS}, "Celery prefork child after N tasks": ...}``."""
    compile_sources()
    out: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in ("bare", "observe"):
            env = environment(config, str(Path(tmp) / f"{config}.sqlite3"))
            migrate(env)
            key = f"gunicorn worker after {requests:,} requests"
            out.setdefault(key, {})[config] = gunicorn_worker(env, (requests,))[requests]
            key = f"Celery prefork child after {tasks:,} tasks"
            out.setdefault(key, {})[config] = celery_child(env, (tasks,))[tasks]
    return out


def growth(quick: bool) -> dict[str, dict[int, int]]:
    """RSS at checkpoints of long runs: django_observe with tracing off (a gunicorn worker, a Celery prefork
    child), and with tracing on exporting to a collector that is down (a port nobody listens on)."""
    requests = (1000, 3000, 5000) if quick else (1000, 3000, 10000, 50000)
    tasks = (1000, 2000) if quick else (1000, 3000, 10000)
    traced = (1000, 3000, 5000) if quick else (1000, 3000, 10000, 50000)
    out: dict[str, dict[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = environment("observe", str(Path(tmp) / "observe.sqlite3"))
        migrate(env)
        out["gunicorn worker, rotating routes, agents, hostile headers, correlation IDs"] = gunicorn_worker(
            env, requests, rotate=True
        )
        out["Celery prefork child"] = celery_child(env, tasks)
        env = environment("observe_otel", str(Path(tmp) / "otel.sqlite3"))  # the default endpoint: port 9
        migrate(env)
        out["gunicorn worker, tracing on, collector down (same requests)"] = gunicorn_worker(env, traced, rotate=True)
    return out


def growth_lines(results: dict[str, dict]) -> list[str]:
    """One row per long run: RSS at each checkpoint, growth from the first and from the second checkpoint."""
    lines = [
        "| long run | RSS at each checkpoint | first to last | second to last |",
        "| --- | --- | ---: | ---: |",
    ]
    for label, figures in results.items():
        points = sorted((int(k), v) for k, v in figures.items())
        cells = ", ".join(f"{mb(r)} after {n:,}" for n, r in points)
        first, second = (points[-1][1] - points[0][1]) / 2**20, (points[-1][1] - points[1][1]) / 2**20
        lines.append(f"| {label} | {cells} | {first:+.1f} MB | {second:+.1f} MB |")
    return lines


def check(baseline: dict, measured: dict[str, dict]) -> list[str]:
    """What ``measured`` does worse than ``baseline``: a module family it did not load, or more than 10% more
    memory (scaled by bare Django's RSS, so another Python or Django version compares fairly)."""
    problems = []
    scale = measured["bare"]["rss"] / baseline["bare"]["rss"] if "bare" in measured else 1.0
    # A family bare Django loads in this run (another Django version's dependency) is not ours.
    django_own = set(measured.get("bare", {}).get("families", ()))
    for config, r in measured.items():
        base = baseline.get(config)
        if base is None or config == "bare":
            continue
        new = sorted(set(r["families"]) - set(base["families"]) - django_own)
        if new:
            problems.append(f"{config}: loads module families the baseline does not: {', '.join(new)}")
        allowed = base["rss"] * scale * 1.10
        if r["rss"] > allowed:
            problems.append(f"{config}: RSS {mb(r['rss'])} > {mb(allowed)} (baseline {mb(base['rss'])} + 10%)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs=2, metavar=("REQUESTS", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="one round, 200 requests")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--requests", type=int)
    parser.add_argument("--servers", action="store_true", help="a gunicorn worker and a Celery prefork child")
    parser.add_argument("--growth", action="store_true", help="the long runs (minutes)")
    parser.add_argument("--out", default=str(RESULTS / "footprint.json"))
    parser.add_argument("--write-baseline", action="store_true", help=f"record {BASELINE.name}")
    args = parser.parse_args(argv)
    if args.child:
        child(int(args.child[0]), args.child[1])
        return 0
    rounds = args.rounds or (1 if args.quick else 3)
    requests = args.requests or (200 if args.quick else 2000)
    configs = [c for c in args.configs.split(",") if c]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configurations {sorted(unknown)}; choose from {list(CONFIGS)}")
    results = inprocess(configs, rounds, requests)
    report: dict = {"python": sys.version.split()[0], "requests": requests, "rounds": rounds, "results": results}
    if args.servers:
        report["servers"] = servers(100 if args.quick else 1000, 100 if args.quick else 1000)
    if args.growth:
        report["growth"] = growth(args.quick)
    lines = [f"Python {report['python']}, {requests:,} requests, median of {rounds} round(s).", "", *table(results)]
    for kind, figures in report.get("servers", {}).items():
        lines.append(
            f"- {kind}: without the app {mb(figures['bare'])}, with django_observe {mb(figures['observe'])} "
            f"({(figures['observe'] - figures['bare']) / 2**20:+.1f} MB)"
        )
    lines += ["", *targets(results, report.get("servers"))]
    if "growth" in report:
        lines += ["", *growth_lines(report["growth"])]
    markdown = "\n".join([*lines, ""])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    Path(args.out).with_suffix(".md").write_text(markdown)
    if args.write_baseline:
        keep = {c: {"rss": r["rss"], "modules": r["modules"], "families": r["families"]} for c, r in results.items()}
        BASELINE.write_text(json.dumps({"python": report["python"], "results": keep}, indent=2) + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
