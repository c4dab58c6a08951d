"""Instructions per request, counted by valgrind's callgrind: a cost figure that does not drift with load.

    python -m benchmarks.instructions                      # every configuration, both views
    python -m benchmarks.instructions --configs bare,observe --views /ping --write

Each configuration starts under ``valgrind --tool=callgrind --instr-atstart=no`` (start-up runs
uninstrumented, so a count takes seconds, not minutes), warms up, has instrumentation switched on with
``callgrind_control -i on``, then serves N requests inside ``sys.call_tracing``, the one function
collection is toggled on (``--toggle-collect``). Hash randomisation is off, so a count repeats within a
fraction of a percent; the wall clock plays no part.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .configs import available as installed

ROOT = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).resolve().parent / "results" / "instructions.json"
CONFIGS = ("bare", "floor", "observe", "observe_otel", "peers", "otel_raw")
VIEWS = ("/ping", "/db-cache")
_COLLECTED = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def available() -> bool:
    return shutil.which("valgrind") is not None and shutil.which("callgrind_control") is not None


def environment(config: str, db: str, options: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a counted process; ``options``: django_observe settings as environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LOG_", "DJANGO_OBSERVE"))}
    env.update(
        BENCH_CONFIG=config,
        BENCH_DB=db,
        DJANGO_SETTINGS_MODULE="benchmarks.project.settings",
        PYTHONPATH=str(ROOT),
        PYTHONHASHSEED="0",
        # tracing: spans go to a port nobody listens on, after the count (the batch exporter's thread
        # waits 5 s between exports, and start-up is uninstrumented).
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_TRACES_SAMPLER="always_on",
        METRICS_PORT="0",
        PROMETHEUS_METRICS_EXPORT_PORT_RANGE="",
        **(options or {}),
    )
    return env


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


def measure(
    configs: list[str], views: tuple[str, ...] = VIEWS, n: int = 200, options: dict[str, str] | None = None
) -> dict[str, dict[str, float]]:
    """``{config: {view: instructions per request}}``."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for config in configs:
            env = environment(config, str(Path(tmp) / f"{config}.sqlite3"), options)
            migrate(env)
            for view in views:
                results.setdefault(config, {})[view] = round(count(view, env, n))
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
    results = measure(configs, views, args.n, options)
    print("| configuration | " + " | ".join(f"`{v}` instructions/req" for v in views) + " | overhead over bare |")
    print("| --- | " + " | ".join("---:" for _ in views) + " | --- |")
    for config, row in results.items():
        extra = ", ".join(f"{overhead(results, config, v):+,.0f}" for v in views)
        print(f"| {config} | " + " | ".join(f"{row[v]:,.0f}" for v in views) + f" | {extra} |")
    for view in views:
        if "floor" in results and "observe" in results:
            ratio = overhead(results, "observe", view) / overhead(results, "floor", view)
            print(f"- `{view}` observe overhead / floor overhead: {ratio:.2f}")
    if args.write:
        BASELINE.parent.mkdir(parents=True, exist_ok=True)
        BASELINE.write_text(
            json.dumps({"python": sys.version.split()[0], "n": args.n, "instructions": results}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
