"""Load: gunicorn (3 workers) with the full stack; counts, log lines and worker memory under a fixed load."""

import json
import re
import subprocess

import pytest
import requests

from tests import support, support_load
from tests import support_metrics as sm

pytestmark = pytest.mark.integration

ROUNDS, PER_ROUND = 6, 150  # 900 requests in all, loopback only


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def test_fixed_load_counts_every_request_once_and_memory_stays_flat(tmp_path):
    port = support.free_port()
    env = support.sqlite_env(
        tmp_path,
        LOG_FORMAT="json",
        METRICS_PORT=str(port),
        METRICS_MULTIPROC_DIR=str(tmp_path / "metrics"),
        HEALTH_CACHE_TTL="1",
    )
    token = support.manage("demo_token", env=env).stdout.strip().splitlines()[-1]
    auth = (("Authorization", f"Bearer {token}"),)
    mix = [
        support_load.Request("GET", "/api/ping"),
        support_load.Request("POST", "/api/chat", auth, b'{"message": "load"}'),
        support_load.Request("GET", "/no/such/page"),
        support_load.Request("GET", "/readyz"),
        support_load.Request("GET", "/api/work?marker=load"),
    ]
    with support.gunicorn(env, tmp_path / "web.log", workers=3) as server:
        support.wait_for_port("127.0.0.1", port, 20)
        workers = [
            int(p)
            for p in subprocess.run(
                ["pgrep", "-P", str(server.proc.pid)], capture_output=True, text=True
            ).stdout.split()
        ]
        memory = []
        sent = []
        for round_ in range(ROUNDS):
            plan = [mix[i % len(mix)] for i in range(PER_ROUND)]
            plan = [
                support_load.Request(r.method, r.path, (*r.headers, ("X-Correlation-ID", f"req_l{round_}_{i}")), r.body)
                for i, r in enumerate(plan)
            ]
            responses = support_load.send_all(server.port, plan, concurrency=6)
            sent.extend(responses)
            memory.append(sum(rss_kb(pid) for pid in workers))
        samples = sm.scrape(port)
        scrape_text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert token not in scrape_text, "no secret in metric labels"
    statuses = [r.status for r in sent]
    assert not [s for s in statuses if s >= 500], "no 5xx"
    assert statuses.count(404) == ROUNDS * PER_ROUND // len(mix)
    # Every request except the probes (answered before the middleware) is counted once in metrics ...
    counted = sm.value(samples, "http_server_request_duration_seconds_count")
    probes = sum(1 for r in sent if r.request.path == "/readyz")
    assert counted == len(sent) - probes
    # ... and logged once, on one valid JSON line with the request's own correlation ID.
    request_lines = []
    for line in server.output().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event["logger"] == "django_observe.request":
                request_lines.append(event)
    assert len(request_lines) == len(sent) - probes
    ids = [e["correlation_id"] for e in request_lines]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"req_l\d+_\d+", cid) for cid in ids)
    # Memory of the workers: the last rounds grow by less than 10% over the second (after warm-up).
    print(
        f"load: sent={len(sent)} 5xx=0 404={statuses.count(404)} probes={probes} counted={counted:.0f} "
        f"request_lines={len(request_lines)} workers_rss_kb={memory}"
    )
    assert memory[-1] < memory[1] * 1.10, memory
