"""The metrics multiprocess directory full, read-only, or filled by recycled workers (issue #34 finding 1),
under real gunicorn.

Before: a full directory (a 300 KB tmpfs with 8 KB free) killed every worker with SIGBUS on its first request,
in a loop (0 requests answered); a read-only one made every worker fail to boot; every recycled worker left
its files behind (82 files, 12.9 MB after 2,000 requests with ``--max-requests 50``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import support, support_load
from tests import support_metrics as sm

pytestmark = pytest.mark.integration

STORAGE_ERROR = "metrics storage: cannot"


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "300k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        support.missing("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave: int) -> None:
    """Fill the filesystem of ``path`` up to ``leave`` free bytes."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"x" * 4096)
    finally:
        os.close(fd)
    stat = os.statvfs(path)
    free = stat.f_bavail * stat.f_frsize
    if free < leave:
        os.truncate(path / "filler", os.path.getsize(path / "filler") - (leave - free))


def scrape_when_served(port: int) -> dict:
    """A scrape of the metrics port; the worker serving it may be being recycled, a sibling takes over."""
    result: dict = {}

    def scraped() -> bool:
        with contextlib.suppress(requests.RequestException):
            result.update(sm.scrape(port))
            return True
        return False

    support.wait_until(scraped, timeout=60, message="a scrape of the metrics port")
    return result


def booted_workers(output: str) -> int:
    return output.count("Booting worker with pid")


def serve(tmp_path: Path, metrics_dir: Path, requests: int, extra: tuple[str, ...] = (), before=None):
    """Run gunicorn (2 workers) with ``metrics_dir``, send ``requests`` pings; returns (statuses, output,
    scrape of the metrics port)."""
    port = support.free_port()
    env = support.sqlite_env(tmp_path, METRICS_PORT=str(port), METRICS_MULTIPROC_DIR=str(metrics_dir))
    with support.gunicorn(env, tmp_path / "web.log", workers=2, extra=extra) as server:
        if before is not None:
            before(server)
        plan = [support_load.Request("GET", "/api/ping")] * requests
        responses = support_load.send_all(server.port, plan, concurrency=4, timeout=120)
        scraped = scrape_when_served(port)
        output = server.output()
    return [r.status for r in responses], output, scraped


def test_a_full_metrics_directory_degrades_metrics_and_keeps_serving(tmp_path):
    with tmpfs(tmp_path / "metrics") as metrics_dir:
        fill(metrics_dir, leave=8 * 1024)
        statuses, output, scraped = serve(tmp_path, metrics_dir, 200)
    served = statuses.count(200)
    booted = booted_workers(output)
    print(f"full metrics directory: {served} of {len(statuses)} requests served, {booted} workers booted")
    assert served == len(statuses) == 200
    assert booted_workers(output) == 2, "no worker died (SIGBUS) and was replaced"
    errors = [line for line in output.splitlines() if STORAGE_ERROR in line]
    assert 1 <= len(errors) <= 3, errors  # once per process that could not write (2 workers, maybe the master)
    assert sm.value(scraped, "metrics_storage_degraded") == 1


def test_a_read_only_metrics_directory_keeps_serving(tmp_path):
    with tmpfs(tmp_path / "metrics", size="4m") as metrics_dir:
        subprocess.run(["mount", "-o", "remount,ro", str(metrics_dir)], check=True)
        statuses, output, scraped = serve(tmp_path, metrics_dir, 200)
    served = statuses.count(200)
    print(f"read-only metrics directory: {served} of {len(statuses)} requests served")
    assert served == len(statuses) == 200
    assert booted_workers(output) == 2
    assert any(STORAGE_ERROR in line for line in output.splitlines())
    assert sm.value(scraped, "http_server_request_duration_seconds_count") > 0  # the serving process's own


def test_recycled_workers_files_are_merged_and_counts_kept(tmp_path):
    metrics_dir = tmp_path / "metrics"
    requests, max_requests = 400, 40
    port = support.free_port()
    env = support.sqlite_env(tmp_path, METRICS_PORT=str(port), METRICS_MULTIPROC_DIR=str(metrics_dir))
    with support.gunicorn(env, tmp_path / "web.log", workers=2, extra=("--max-requests", str(max_requests))) as server:
        plan = [support_load.Request("GET", "/api/ping")] * 100
        for _ in range(requests // 100):
            # A generous timeout: both workers may be rebooting at once on a loaded machine.
            statuses = {r.status for r in support_load.send_all(server.port, plan, concurrency=4, timeout=120)}
            assert statuses == {200}
        scraped = scrape_when_served(port)  # a scrape merges the files of dead workers
        files = glob.glob(str(metrics_dir / "*" / "*.db"))
        size = sum(os.path.getsize(f) for f in files)
        booted = booted_workers(server.output())
    count = sm.value(scraped, "http_server_request_duration_seconds_count", route="api/ping")
    print(
        f"--max-requests {max_requests}, {requests} requests: {booted} workers booted, {len(files)} metric files "
        f"({size / 1e6:.2f} MB) left, ping count {count:.0f}"
    )
    assert booted >= requests // max_requests  # workers were recycled many times
    assert count == requests  # merging kept every count
    # Live processes' files (2 workers + the master: counter, histogram, livesum and other gauges) plus one
    # merged file per type and gauge mode.
    assert len(files) <= 3 * 4 + 6, sorted(os.path.basename(f) for f in files)


def test_the_cardinality_bound_holds_across_recycled_workers(tmp_path):
    """Issue #34 finding 7: the guard was per process, so every recycled worker admitted its own
    ``METRICS_MAX_LABEL_VALUES`` values (400 distinct business-label values exported after 2,000 requests
    with ``--max-requests 50``, limit 200). Real gunicorn, 2 workers recycled every 50 requests, 600 chat
    requests each with its own ``model`` (the ``llm_tokens_total{model,kind}`` business counter)."""
    limit, total, max_requests = 20, 600, 50
    metrics_dir = tmp_path / "metrics"
    port = support.free_port()
    env = support.sqlite_env(
        tmp_path,
        METRICS_PORT=str(port),
        METRICS_MULTIPROC_DIR=str(metrics_dir),
        METRICS_MAX_LABEL_VALUES=str(limit),
    )
    support.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; from testproject.demo.models import ApiToken; "
        "ApiToken.objects.create(key='cardinality-token', user=get_user_model().objects.create(username='c'))",
        env=env,
    )
    headers = (("Authorization", "Bearer cardinality-token"), ("Content-Type", "application/json"))
    plan = [
        support_load.Request("POST", "/api/chat", headers, f'{{"message": "hi", "model": "model-{i}"}}'.encode())
        for i in range(total)
    ]
    with support.gunicorn(env, tmp_path / "web.log", workers=2, extra=("--max-requests", str(max_requests))) as server:
        statuses = [r.status for r in support_load.send_all(server.port, plan, concurrency=2, timeout=120)]
        scraped = scrape_when_served(port)
        booted = booted_workers(server.output())
    models = {dict(labels)["model"] for (name, labels), _ in scraped.items() if name == "llm_tokens_total" and labels}
    overflow = sm.value(scraped, "metrics_label_overflow_total", metric="llm_tokens")
    counted = sm.value(scraped, "llm_tokens_total")  # no Celery worker runs: prompt tokens only
    print(
        f"--max-requests {max_requests}, {total} requests with distinct model values, limit {limit}: "
        f"{booted} workers booted, {len(models)} llm_tokens_total series, overflow {overflow:.0f}, "
        f"tokens counted {counted:.0f}"
    )
    assert statuses.count(202) == total, sorted(set(statuses))
    assert booted >= total // max_requests  # workers were recycled many times
    assert len(models) <= limit + 1  # the admitted values and __other__, for the whole service
    assert "__other__" in models
    assert overflow == total - limit
    assert counted == total  # nothing lost: one token per message, in its own series or in __other__
