"""Scraping and parsing Prometheus exposition, and a real Prometheus server for the tests."""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests import support


def scrape(port: int, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` from a metrics port."""
    response = requests.get(f"http://127.0.0.1:{port}/metrics", headers=headers, timeout=10)
    response.raise_for_status()
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(v for (n, lbls), v in samples.items() if n == name and set(labels.items()) <= set(lbls))


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


def per_process(multiproc_dir: Path, name: str, **labels: str) -> dict[int, float]:
    """``{pid: value}``: the samples called ``name`` (labels including ``labels``) that each process wrote.

    Read from the multiprocess files (``<kind>_<pid>.db`` under ``METRICS_MULTIPROC_DIR``/<group pid>), so a test
    sees which worker served what, not only the merged total a scrape gives.
    """
    from prometheus_client.multiprocess import MultiProcessCollector

    counts: dict[int, float] = {}
    for path in sorted(Path(multiproc_dir).glob("*/*_*.db")):
        pid = path.stem.rsplit("_", 1)[-1]
        if not pid.isdigit():
            continue  # livesum/liveall gauges and the like name the pid too; others are not per process
        metrics = MultiProcessCollector._accumulate_metrics(MultiProcessCollector._read_metrics([str(path)]), True)
        total = sum(
            sample.value
            for metric in metrics
            for sample in metric.samples
            if sample.name == name and set(labels.items()) <= set(sample.labels.items())
        )
        if total:
            counts[int(pid)] = counts.get(int(pid), 0.0) + total
    return counts


@contextlib.contextmanager
def prometheus(targets: dict[str, int], interval: str = "1s", rule_files: tuple[Path, ...] = ()) -> Iterator[str]:
    """A real Prometheus (Debian's package) scraping ``{job: port}`` on loopback, evaluating ``rule_files``;
    yields its URL."""
    binary = support.require_binary("prometheus")
    port = support.free_port()
    with tempfile.TemporaryDirectory(prefix="observe-prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        jobs = "\n".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{target}']"
            for job, target in targets.items()
        )
        rules = "".join(f"  - {path}\n" for path in rule_files)
        config.write_text(
            f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + f"scrape_configs:\n{jobs}\n"
        )
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            support.wait_for_port("127.0.0.1", port, 30, proc)
            url = f"http://127.0.0.1:{port}"
            support.wait_until(
                lambda: requests.get(f"{url}/-/ready", timeout=5).status_code == 200,
                timeout=30,
                message="prometheus ready",
            )
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def query(url: str, expr: str) -> list[dict]:
    response = requests.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def promtool_query(url: str, expr: str) -> str:
    binary = support.require_binary("promtool")
    result = subprocess.run([binary, "query", "instant", url, expr], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout
