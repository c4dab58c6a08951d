"""Instructions per request, counted by valgrind's callgrind: a cost figure that does not drift with load.

    python -m benchmarks.instructions                      # every configuration, both views
    python -m benchmarks.instructions --configs bare,observe --views /ping --write
    python -m benchmarks.instructions --configs bare,floor,observe --views /ping --gunicorn
    python -m benchmarks.instructions --configs bare,floor,observe --views /ping --uvicorn

With ``--gunicorn`` the count is taken in a real gunicorn sync worker instead (benchmarks/gunicorn_count.py):
every request's whole user-space cost in the worker, gunicorn's own part (parsing, the response headers,
the close) included, served over loopback one connection at a time. ``--uvicorn`` counts a uvicorn worker's
every thread (valgrind runs them one at a time, so the count is the work, not the contention for the GIL).

Each configuration starts under ``valgrind --tool=callgrind --instr-atstart=no`` (start-up runs
uninstrumented, so a count takes seconds, not minutes), warms up, has instrumentation switched on with
``callgrind_control -i on``, then serves N requests inside ``sys.call_tracing``, the one function
collection is toggled on (``--toggle-collect``). Hash randomisation is off, so a count repeats within a
fraction of a percent; the wall clock plays no part.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .configs import available as installed
from .configs import environment, uvicorn_command
from .ports import free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).resolve().parent / "results" / "instructions.json"
GUNICORN_BASELINE = Path(__file__).resolve().parent / "results" / "instructions-gunicorn.json"
CONFIGS = ("bare", "floor", "observe", "observe_otel", "peers", "otel_raw")
VIEWS = ("/ping", "/db-cache")
_COLLECTED = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )


def count(view: str, env: dict[str, str], n: int = 200, timeout: float = 120) -> float:
    """Instructions per request of ``view`` for the configuration in ``env``."""
    with tempfile.TemporaryDirectory() as tmp:
        flag, out = str(Path(tmp) / "flag"), str(Path(tmp) / "callgrind.out")
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--collect-atstart=no",
            "--toggle-collect=sys_call_tracing",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.inprocess",
            view,
            str(n),
            "count",
            flag,
        ]
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        try:
            while not os.path.exists(flag + ".ready"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{env['BENCH_CONFIG']} {view}: the counted process did not start\n")
                time.sleep(0.05)
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
            Path(flag + ".go").touch()
            _, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"{env['BENCH_CONFIG']} {view}: exit {proc.returncode}\n{stderr[-2000:]}")
        match = _COLLECTED.search(Path(out).read_text())
        if match is None:
            raise RuntimeError(f"no summary in {out}")
        return int(match.group(1)) / n


def count_gunicorn(view: str, env: dict[str, str], n: int = 200, warmup: int = 100, timeout: float = 300) -> float:
    """Instructions per request of ``view`` in a gunicorn sync worker for the configuration in ``env``."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=sys_call_tracing",
            f"--callgrind-out-file={tmp}/callgrind.%p",
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:benchmarks.gunicorn_count",
            "benchmarks.project.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
        ]
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**env, "BENCH_WARMUP": str(warmup)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            wait_port(port, timeout=timeout)
            deadline = time.monotonic() + timeout
            for _ in range(warmup + n):
                # One connection per request, as gunicorn's sync worker closes each one.
                connection = http.client.HTTPConnection(
                    "127.0.0.1", port, timeout=max(1.0, deadline - time.monotonic())
                )
                connection.request("GET", view)
                response = connection.getresponse()
                response.read()
                connection.close()
                if response.status != 200:
                    raise RuntimeError(f"{env['BENCH_CONFIG']} {view}: status {response.status}")
            os.killpg(proc.pid, signal.SIGTERM)  # the worker writes its counts as it exits
            _, stderr = proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        counts = [
            int(m.group(1)) for f in Path(tmp).glob("callgrind.*") for m in [_COLLECTED.search(f.read_text())] if m
        ]
        counted = [c for c in counts if c > 0]  # the arbiter's file counts nothing
        if len(counted) != 1:
            raise RuntimeError(f"{env['BENCH_CONFIG']} {view}: counts {counts}\n{stderr[-2000:]}")
        return counted[0] / n


def count_uvicorn(view: str, env: dict[str, str], n: int = 200, warmup: int = 100, timeout: float = 300) -> float:
    """Instructions per request of ``view`` in a uvicorn worker (every thread of the process: the event loop and
    asgiref's executor threads) for the configuration in ``env``: the counters are zeroed after the warm-up and
    dumped after ``n`` more requests on one keep-alive connection."""
    with tempfile.TemporaryDirectory() as tmp:
        port, out = free_port(), str(Path(tmp) / "callgrind.out")
        argv = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            *uvicorn_command(port),
        ]
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

        def control(*args: str) -> None:
            subprocess.run(["callgrind_control", *args, str(proc.pid)], check=True, capture_output=True)

        def serve(count: int) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            for _ in range(count):
                connection.request("GET", view)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"{env['BENCH_CONFIG']} {view}: status {response.status}")
            connection.close()

        try:
            wait_port(port, timeout=timeout)
            control("-i", "on")
            serve(warmup)
            control("-z")
            serve(n)
            control("-d")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        counts = [
            int(m.group(1)) for f in Path(tmp).glob("callgrind.out.*") for m in [_COLLECTED.search(f.read_text())] if m
        ]
        if len(counts) != 1:
            raise RuntimeError(f"{env['BENCH_CONFIG']} {view}: counts {counts}")
        return counts[0] / n


def measure(
    configs: list[str],
    views: tuple[str, ...] = VIEWS,
    n: int = 200,
    options: dict[str, str] | None = None,
    gunicorn: bool = False,
    uvicorn: bool = False,
) -> dict[str, dict[str, float]]:
    """``{config: {view: instructions per request}}``; ``gunicorn``/``uvicorn``: in that server's worker, not
    in-process."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            env = environment(config, str(Path(tmp) / f"{config}.sqlite3"), options=options)
            migrate(env)
            for view in views:
                if gunicorn:
                    counted = count_gunicorn(view, env, n)
                elif uvicorn:
                    counted = count_uvicorn(view, env, n)
                else:
                    counted = count(view, env, n)
                results.setdefault(config, {})[view] = round(counted)
    return results


def overhead(results: dict[str, dict[str, float]], config: str, view: str) -> float:
    """Instructions per request ``config`` adds to bare Django."""
    return results[config][view] - results["bare"][view]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--views", default=",".join(VIEWS))
    parser.add_argument("-n", type=int, default=200, help="requests counted")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a django_observe option")
    parser.add_argument("--write", action="store_true", help=f"record as the baseline ({BASELINE.name})")
    parser.add_argument(
        "--multiprocess", action="store_true", help="metrics in multiprocess mode, as in a gunicorn worker"
    )
    parser.add_argument(
        "--gunicorn", action="store_true", help=f"count in a gunicorn sync worker (baseline: {GUNICORN_BASELINE.name})"
    )
    parser.add_argument(
        "--uvicorn", action="store_true", help="count in a uvicorn worker, every thread (no baseline: not for CI)"
    )
    args = parser.parse_args(argv)
    if not available():
        parser.error("valgrind (with callgrind_control) is not installed")
    configs = [c for c in args.configs.split(",") if c and installed(c)]
    if "bare" not in configs:
        configs.insert(0, "bare")
    views = tuple(v for v in args.views.split(",") if v)
    options = dict(item.split("=", 1) for item in args.set)
    if args.multiprocess:
        options["BENCH_MULTIPROCESS"] = "1"
    if args.gunicorn and args.multiprocess:
        parser.error("--gunicorn is multiprocess already")
    if args.uvicorn and (args.gunicorn or args.write):
        parser.error("--uvicorn goes with neither --gunicorn nor --write")
    results = measure(configs, views, args.n, options, gunicorn=args.gunicorn, uvicorn=args.uvicorn)
    print("| configuration | " + " | ".join(f"`{v}` instructions/req" for v in views) + " | overhead over bare |")
    print("| --- | " + " | ".join("---:" for _ in views) + " | --- |")
    for config, row in results.items():
        extra = ", ".join(f"{overhead(results, config, v):+,.0f}" for v in views)
        print(f"| {config} | " + " | ".join(f"{row[v]:,.0f}" for v in views) + f" | {extra} |")
    for view in views:
        if "floor" in results and "observe" in results:
            ratio = overhead(results, "observe", view) / overhead(results, "floor", view)
            print(f"- `{view}` observe overhead / floor overhead: {ratio:.2f}")
        if (args.gunicorn or args.uvicorn) and "observe" in results:
            share = results["bare"][view] / results["observe"][view]
            print(f"- `{view}` bare / observe instructions in the worker: {share:.1%}")
    if args.write:
        BASELINE.parent.mkdir(parents=True, exist_ok=True)
        (GUNICORN_BASELINE if args.gunicorn else BASELINE).write_text(
            json.dumps({"python": sys.version.split()[0], "n": args.n, "instructions": results}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
