"""The exit budget (django_observe.shutdown.Budget) at interpreter shutdown: the SDK's providers shut down
from ``atexit``, where Python 3.12+ starts no new thread; the export still runs and nothing is printed."""

import subprocess
import sys

from django_observe import shutdown
from tests import support

PROBE = """
import atexit
from django_observe.shutdown import Budget, begin

def at_exit():
    begin()
    print("result:", Budget("spans", "http://collector").call(lambda: "delivered", count=3, default="dropped"))

atexit.register(at_exit)
"""


def test_an_export_called_from_atexit_still_runs():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=support.ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "result: delivered" in result.stdout
    assert "Traceback" not in result.stderr and "can't create new thread" not in result.stderr, result.stderr


def test_a_call_returns_its_value_and_an_error_counts_as_not_delivered():
    budget = shutdown.Budget("log records", "http://collector")
    assert budget.call(lambda x: x * 2, 21) == 42

    def broken():
        raise ConnectionError("collector down")

    assert budget.call(broken, count=5, default="nothing") == "nothing"
    assert budget.dropped == 0  # not exiting: an ordinary failed export, which the SDK reports itself
