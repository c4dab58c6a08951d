"""A child forked while another thread of the parent holds one of the locks every process takes (wrapt's
post-import-hook lock on each import with tracing on, prometheus_client's multiprocess value lock on each metric
update) does not block forever on its first import or metric update. Found in a Celery prefork pool beside a
CPU-bound process: the parent's OTLP metrics pusher was importing on its first export when the pool forked, and
both children stopped at the first import of their first task."""

import pytest

from tests import support

pytestmark = pytest.mark.integration

PROBE = """
import os, signal, sys, threading, time

import django

django.setup()

from prometheus_client import Counter
from wrapt import importer

from django_observe import forking

counter = Counter("fork_probe", "a metric updated in a forked child")
assert any(type(f).__name__ == "ImportHookFinder" for f in sys.meta_path), "no post-import hook registered"
locks = {"import": importer._post_import_hooks_lock, "metric update": forking.multiprocess_value_lock()}
assert locks["metric update"] is not None, "prometheus_client is not in multiprocess mode"


def in_child(which):
    signal.alarm(5)  # blocked: killed by SIGALRM
    if which == "import":
        import colorsys  # a module nothing has imported yet: the import goes through wrapt's finder
    else:
        counter.inc()
    os._exit(0)


for which, lock in locks.items():
    held = threading.Event()

    def hold(lock=lock, held=held):
        with lock:
            held.set()
            time.sleep(0.5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    pid = os.fork()
    if pid == 0:
        in_child(which)
    _, status = os.waitpid(pid, 0)
    holder.join()
    print(f"{which}: exit {os.waitstatus_to_exitcode(status)}", flush=True)
"""


def test_a_child_forked_while_a_thread_holds_the_import_or_metric_lock_goes_on(tmp_path):
    support.require_fork()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = support.project_env(
        SQLITE_PATH=str(tmp_path / "db.sqlite3"),
        TESTPROJECT_VAR_DIR=str(tmp_path / "var"),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        OTEL_ENABLED="true",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",  # nothing listens: nothing is exported
        PYTHONWARNINGS="ignore::DeprecationWarning",  # fork() in a multi-threaded process (3.12+)
    )
    result = support.run_python(PROBE, env=env)
    # -14: the child was still blocked when its 5 s alarm fired
    assert result.stdout.splitlines() == ["import: exit 0", "metric update: exit 0"], result.stderr[-3000:]


FIRST_PUSH_PROBE = """
import os, signal, sys, threading

sys.path.insert(0, sys.argv[1])
sys.first_push_importing = threading.Event()

from django_observe.identity import ServiceIdentity
from django_observe.metrics.otlp import MetricsPusher
from django_observe.otlp_exporters import otlp_exporter


def collect():
    import imported_by_first_push  # noqa: F401  (sets the event, then takes a second to finish)
    return []


# Nothing listens: nothing is exported.
exporter = otlp_exporter("metrics", "http://127.0.0.1:9", "http/protobuf", timeout=1)
MetricsPusher(None, collect, ServiceIdentity(), exporter, 0.05).start()
assert sys.first_push_importing.wait(30), "the first push did not start"
pid = os.fork()
if pid == 0:
    signal.alarm(5)  # blocked: killed by SIGALRM
    import imported_by_first_push  # noqa: F401,F811
    os._exit(0)
_, status = os.waitpid(pid, 0)
print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)
"""


def test_a_child_forked_during_the_first_push_does_not_block_on_a_module_it_was_importing(tmp_path):
    """CPython does not reinitialise a module's import lock in the child: a module the parent's pusher was
    executing at the fork is left half-imported there, its lock held by a thread the child does not have. The
    fork waits for the pusher's first push instead (it imports about 50 modules)."""
    support.require_fork()
    (tmp_path / "imported_by_first_push.py").write_text(
        "import sys, time\nsys.first_push_importing.set()\ntime.sleep(1.0)\n"
    )
    env = support.project_env(PYTHONWARNINGS="ignore::DeprecationWarning")
    result = support.run_python(FIRST_PUSH_PROBE, str(tmp_path), env=env)
    assert result.stdout.splitlines() == ["exit 0"], result.stderr[-3000:]  # -14: blocked until the alarm
