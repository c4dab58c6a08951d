"""Several processes flush into one console database at once (gunicorn workers, Celery children, other hosts).

Each flush upserts its aggregate rows in one transaction. Two flushes that take the same rows' locks in
different orders deadlock on PostgreSQL; the server aborts one of them (``OperationalError``) and the batch
waits for the next flush. Found by the hostile corpus (four processes writing one console database). The
writes lock in one order, so concurrent flushes wait for each other instead.
"""

from __future__ import annotations

import json

import pytest

from tests.support import create_postgres_database, manage, project_env

pytestmark = pytest.mark.integration

# Two threads (each its own connection) write the same 60 keys, one in ascending, the other in descending
# order, starting each round together.
SCRIPT = """
import json, threading, time
from django.db import OperationalError, connections
from django_observe.console import store
from django_observe.console.recorder import Batch, Cell

KEYS = [f"/api/k{i:02d}" for i in range(60)]
ROUNDS = 25
barrier = threading.Barrier(2)
failures = []
now = time.time()

def batch(keys):
    b = Batch()
    for key in keys:
        cell = Cell()
        cell.count = 1
        cell.total = 2.0
        b.cells[("requests", key, int(now // 60))] = cell
        b.values[("server", key)] = {"pid": 1}
    return b

def writer(keys):
    try:
        for _ in range(ROUNDS):
            barrier.wait(timeout=30)
            try:
                store.write("console", batch(keys), now)
            except OperationalError as exc:
                failures.append(type(exc.__cause__ or exc).__name__)
    finally:
        connections.close_all()

threads = [threading.Thread(target=writer, args=(order,)) for order in (KEYS, KEYS[::-1])]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"failures": failures}))
"""


def test_concurrent_flushes_do_not_deadlock(tmp_path):
    url, drop = create_postgres_database()
    try:
        env = project_env(
            SQLITE_PATH=str(tmp_path / "db.sqlite3"),
            TESTPROJECT_VAR_DIR=str(tmp_path / "var"),
            TESTPROJECT_CONSOLE="1",
            CONSOLE_DATABASE_URL=url,
        )
        manage("migrate", "observe_console", "--database=console", "-v0", env=env)
        out = manage("shell", "-c", SCRIPT, env=env, timeout=180).stdout
        failures = json.loads(out.strip().splitlines()[-1])["failures"]
        assert failures == [], f"{len(failures)} of 50 flushes were aborted: {sorted(set(failures))}"
        count = manage(
            "shell",
            "-c",
            "from django_observe.console.models import Aggregate\n"
            "print(sum(a.count for a in Aggregate.objects.using('console').filter(type='requests', period=60)))",
            env=env,
        ).stdout.split()[-1]
        assert int(count) == 2 * 25 * 60, "every flush's counts added once"
    finally:
        drop()
