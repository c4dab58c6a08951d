"""Keep the benchmark harness working (tiny counts; no timing is asserted)."""

import json
import subprocess

import pytest

from tests import support

pytestmark = pytest.mark.integration


def test_benchmark_harness_smoke(tmp_path):
    support.require_binary("wrk")
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [support.PYTHON, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        cwd=support.ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"bare", "observe", "peers"} <= set(report["results"])
    for config, views in report["results"].items():
        for view in ("/ping", "/db-cache"):
            entry = views[view]
            assert entry["inprocess_us"] > 0, (config, view)
            assert entry["gunicorn"]["rps"] > 0 and entry["uvicorn"]["rps"] > 0, (config, view)
    extras = report["extras"]
    assert {"cached", "uncached", "cached_20_concurrent", "redis_dead_timeout_1s"} <= set(extras["readyz"])
    assert extras["readyz"]["cached_20_concurrent"]["statuses"] == [200]
    assert extras["readyz"]["redis_dead_timeout_1s"]["statuses"] == [503]
    assert extras["scrape"]["series"] > 50, "the scrape returned the catalogue"
    assert set(extras["log_line_us"]) >= {"json", "text"}
    markdown = out.with_suffix(".md").read_text()
    assert "| 1 bare Django | `/ping` |" in markdown and "| cached |" in markdown
