"""The observability tax per request, side by side on one machine.

    python -m benchmarks.run            # full run (several minutes), writes benchmarks/results/
    python -m benchmarks.run --quick    # smoke run (CI): tiny counts, no figures to trust

    python -m benchmarks.run --no-servers --no-extras --instructions   # in-process time and instructions

Configurations (benchmarks/project/settings.py): 1 bare Django, F the floor (one hand-written middleware,
benchmarks/project/floor.py), 2 django_observe (tracing off), 3 django-guid + django-structlog +
django-prometheus, 4 django_observe with tracing, 5 raw OpenTelemetry. Views: /ping (trivial) and /db-cache
(one query, one cache call). Servers: the WSGI handler in-process, and gunicorn (1 sync worker) and uvicorn
(1 worker) under wrk, each with its rounds interleaved across configurations and the median reported; with
``--instructions``, instructions per request counted by callgrind (benchmarks/instructions.py).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import instructions
from .configs import available, environment, uvicorn_command
from .ports import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
CONFIGS = {
    "bare": "1 bare Django",
    "floor": "F hand-written floor",
    "observe": "2 django_observe",
    "peers": "3 guid+structlog+prometheus",
    "observe_otel": "4 django_observe + tracing",
    "otel_raw": "5 raw OpenTelemetry",
}
VIEWS = ("/ping", "/db-cache")


class _Sink(http.server.BaseHTTPRequestHandler):
    """A local OTLP/HTTP sink: accepts every export, keeps nothing."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def sink_env(config: str, db: str, sink_port: int) -> dict[str, str]:
    """The configuration's environment, tracing to the local sink, its metrics on a port of its own."""
    return environment(config, db, otlp_endpoint=f"http://127.0.0.1:{sink_port}", metrics_port=str(free_port()))


def inprocess(config: str, view: str, env: dict, n: int, repeats: int) -> float:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, "-m", "benchmarks.inprocess", view, str(n), str(repeats), out.name],
            cwd=ROOT,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return statistics.median(json.loads(Path(out.name).read_text())["samples_us"])


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")


def _cpus() -> tuple[set[int], set[int]]:
    """``(wrk's CPUs, the servers' CPUs)``: with two or more, wrk gets the first and the servers the rest, so
    the scheduler does not move either onto the other's core mid-window (on 2 cores that spread one
    configuration's windows by 30%)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return set(cpus), set(cpus)
    return {cpus[0]}, set(cpus[1:])


def _pinned(cpus: set[int]):
    return lambda: os.sched_setaffinity(0, cpus)


def wrk(*args: str) -> str:
    """``wrk -t1 -c4 ARGS`` on its own CPU; its output."""
    return subprocess.run(
        ["wrk", "-t1", "-c4", *args], capture_output=True, text=True, check=True, preexec_fn=_pinned(_cpus()[0])
    ).stdout


def start_server(server: str, env: dict) -> tuple[subprocess.Popen, int]:
    """One worker of ``server`` (gunicorn, 1 sync worker; uvicorn, 1 worker) on a free port, ready."""
    port = free_port()
    if server == "gunicorn":
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "benchmarks.project.wsgi:application",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ]
    else:
        argv = uvicorn_command(port)
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_pinned(_cpus()[1]),
    )
    try:
        wait_port(port)
    except BaseException:
        stop_server(proc)
        raise
    return proc, port


def stop_server(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, 15)
    proc.wait(timeout=20)


def wrk_rate(url: str, seconds: float, label: str) -> float:
    """Requests/s of one wrk window (``wrk -t1 -c4``)."""
    rate, out = 0.0, ""
    # A window in which no request completed (a server pausing longer than a --quick run's one second) is
    # measured again, longer, rather than reported as zero.
    for duration in (seconds, seconds * 3, seconds * 9):
        out = wrk(f"-d{duration}s", url)
        if "Non-2xx" in out:
            raise RuntimeError(f"{label}: non-2xx responses\n{out}")
        rate = float(_WRK_RPS.search(out).group(1))
        if rate > 0:
            return rate
    raise RuntimeError(f"{label}: no request completed\n{out}")


def served(
    server: str, view: str, envs: dict[str, dict], seconds: float, repeats: int
) -> dict[str, tuple[float, float, list[float]]]:
    """``{config: (median requests/s, implied µs per request, each round's requests/s)}`` of one server worker
    per configuration under wrk. Every configuration's server runs at once (idle but for its own window) and
    the windows go round the configurations, forwards and backwards in turn, so a machine's load drifting over
    minutes, or within one round, falls on all of them alike."""
    running: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for config, env in envs.items():
            running[config] = start_server(server, env)
        urls = {config: f"http://127.0.0.1:{port}{view}" for config, (_, port) in running.items()}
        for url in urls.values():
            wrk("-d1s", url)  # warm up
        rates: dict[str, list[float]] = {config: [] for config in urls}
        for round_ in range(repeats):
            for config, url in list(urls.items())[:: 1 if round_ % 2 == 0 else -1]:
                rates[config].append(wrk_rate(url, seconds, f"{config} {server} {view}"))
    finally:
        for proc, _ in running.values():
            stop_server(proc)
    return {config: (statistics.median(r), 1e6 / statistics.median(r), r) for config, r in rates.items()}


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def table(results: dict) -> str:
    lines = [
        "| configuration | view | in-process µs/req | instructions/req | gunicorn req/s (µs) | uvicorn req/s (µs) |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for config, label in CONFIGS.items():
        for view in VIEWS:
            r = results.get(config, {}).get(view)
            if not r:
                continue
            cells = [f"{r['inprocess_us']:.1f}", f"{r['instructions']:,.0f}" if "instructions" in r else "-"]
            for server in ("gunicorn", "uvicorn"):
                cells.append(f"{r[server]['rps']:.0f} ({r[server]['us']:.0f})" if server in r else "-")
            lines.append(f"| {label} | `{view}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratios(results: dict) -> list[str]:
    out = []

    def value(config, view, key="inprocess_us"):
        return results.get(config, {}).get(view, {}).get(key)

    for view in VIEWS:
        bare, floor, obs, peers, otel, raw = (value(c, view) for c in CONFIGS)
        if bare and obs:
            out.append(f"- `{view}` tax of 2 over 1: {100 * (obs - bare) / bare:.1f}% ({obs - bare:+.1f} µs)")
        if bare and obs and floor:
            out.append(
                f"- `{view}` overhead 2/F (django_observe over the floor): {(obs - bare) / (floor - bare):.2f}x "
                f"({obs - bare:.1f} µs vs {floor - bare:.1f} µs)"
            )
        ibare, ifloor, iobs = (value(c, view, "instructions") for c in ("bare", "floor", "observe"))
        if ibare and ifloor and iobs:
            out.append(
                f"- `{view}` overhead 2/F in instructions: {(iobs - ibare) / (ifloor - ibare):.2f}x "
                f"({iobs - ibare:,.0f} vs {ifloor - ibare:,.0f} per request)"
            )
        if bare and obs and peers:
            out.append(
                f"- `{view}` overhead 2/3: {(obs - bare) / (peers - bare):.2f} "
                f"({obs - bare:.1f} µs vs {peers - bare:.1f} µs)"
            )
        if bare and otel and raw:
            out.append(
                f"- `{view}` overhead 4/5: {(otel - bare) / (raw - bare):.2f} "
                f"({otel - bare:.1f} µs vs {raw - bare:.1f} µs)"
            )
    for server in ("gunicorn", "uvicorn"):
        for view in VIEWS:
            for config, label in (("observe", "django_observe"), ("floor", "the floor")):
                bare, obs = (results.get(c, {}).get(view, {}).get(server) for c in ("bare", config))
                if bare and obs:
                    # The same round's windows run a few seconds apart: their ratio is steadier than the
                    # ratio of medians when the machine's speed drifts.
                    paired = statistics.median(o / b for o, b in zip(obs["rounds"], bare["rounds"], strict=True))
                    out.append(
                        f"- {server} `{view}`: {label} serves {100 * obs['rps'] / bare['rps']:.1f}% of bare req/s "
                        f"(median of the rounds' ratios {100 * paired:.1f}%)"
                    )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts (CI)")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--no-servers", action="store_true", help="in-process only")
    parser.add_argument("--out", default=str(RESULTS / "latest.json"))
    parser.add_argument("--repeats", type=int, help="repeated runs per measurement (median reported)")
    parser.add_argument("--seconds", type=int, help="wrk duration per run")
    parser.add_argument("--instructions", action="store_true", help="also count instructions per request (valgrind)")
    parser.add_argument("--no-extras", action="store_true", help="skip /readyz, scrape and log-line measurements")
    parser.add_argument("--only-extras", action="store_true", help="only /readyz, scrape and log-line measurements")
    args = parser.parse_args(argv)
    n, repeats, seconds = (200, 1, 1) if args.quick else (3000, 7, 5)
    repeats, seconds = args.repeats or repeats, args.seconds or seconds
    wanted = [c for c in args.configs.split(",") if c]
    unknown = set(wanted) - set(CONFIGS)
    if unknown:
        parser.error(f"unknown configurations {sorted(unknown)}; choose from {list(CONFIGS)}")
    servers = () if args.no_servers or not shutil.which("wrk") else ("gunicorn", "uvicorn")

    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        envs = {}
        for config in [] if args.only_extras else wanted:
            if not available(config):
                print(f"skip {config}: its packages are not installed", file=sys.stderr)
                continue
            env = envs[config] = sink_env(config, str(Path(tmp) / f"{config}.sqlite3"), sink.server_address[1])
            subprocess.run(
                [sys.executable, "-m", "django", "migrate", "-v0"],
                cwd=ROOT,
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
        # In-process rounds interleaved (every configuration and view once per round), so that the load of a
        # shared machine falls on all of them alike; each figure is the median of its rounds.
        samples: dict = {}
        for _ in range(repeats):
            for config, env in envs.items():
                for view in VIEWS:
                    samples.setdefault((config, view), []).append(inprocess(config, view, env, n, 1))
        for (config, view), values in samples.items():
            results.setdefault(config, {}).setdefault(view, {})["inprocess_us"] = statistics.median(values)
        for server in servers:
            for view in VIEWS:
                measured = served(server, view, envs, seconds, repeats if not args.quick else 1)
                for config, (rps, us, rounds) in measured.items():
                    results[config][view][server] = {"rps": rps, "us": us, "rounds": rounds}
                print(f"{server:9} {view:10} { {c: round(r) for c, (r, _, _) in measured.items()} }", file=sys.stderr)
        if args.instructions and instructions.available() and envs:
            counted = instructions.measure(list(envs), VIEWS, n=50 if args.quick else 200)
            for config, row in counted.items():
                for view, value in row.items():
                    results[config][view]["instructions"] = value
        extras_results = {}
        if not args.no_extras:
            from . import extras

            db = str(Path(tmp) / "extras.sqlite3")
            env = sink_env("observe", db, sink.server_address[1])
            subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            extras_results = extras.run(env, args.quick)
    sink.shutdown()
    report = {
        "machine": machine(),
        "quick": args.quick,
        "n": n,
        "repeats": repeats,
        "results": results,
        "extras": extras_results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    lines = [f"Machine: {report['machine']}", "", table(results), "", *ratios(results)]
    if extras_results:
        from . import extras

        lines += extras.markdown(extras_results)
    markdown = "\n".join([*lines, ""])
    Path(args.out).with_suffix(".md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
