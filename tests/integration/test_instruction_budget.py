"""django_observe's cost per request, in instructions (callgrind), against the committed baseline.

The figure is django_observe's overhead, ``observe`` minus ``bare`` Django on the trivial view, so a Python
or Django patch release moves both sides and not the check. It fails when the overhead rises more than 10%
over ``benchmarks/results/instructions.json`` (in-process) and ``instructions-gunicorn.json`` (in a gunicorn
worker); after a deliberate change, record a new baseline with
``python -m benchmarks.instructions --write`` (``--gunicorn --configs bare,floor,observe --views /ping --write``
for the second; docs/performance.md). No wall clock is involved.
"""

import json

import pytest

from benchmarks import instructions
from tests import support

pytestmark = pytest.mark.integration

ALLOWED_RISE = 1.10


def _check(baseline_file, where, gunicorn=False):
    if not instructions.available():
        support.missing("valgrind (callgrind) is not installed")
    baseline = json.loads(baseline_file.read_text())
    recorded = baseline["instructions"]
    budget = (recorded["observe"]["/ping"] - recorded["bare"]["/ping"]) * ALLOWED_RISE

    measured = instructions.measure(["bare", "observe"], views=("/ping",), n=baseline["n"], gunicorn=gunicorn)

    overhead = instructions.overhead(measured, "observe", "/ping")
    assert overhead > 0, measured  # the counter counted something
    assert overhead <= budget, (
        f"{where} django_observe now adds {overhead:,.0f} instructions per request to bare Django on /ping; "
        f"the baseline allows {budget:,.0f} (+10% over {budget / ALLOWED_RISE:,.0f}): {measured}"
    )


def test_overhead_per_request_within_ten_percent_of_the_baseline():
    _check(instructions.BASELINE, "in-process")


def test_overhead_in_a_gunicorn_worker_within_ten_percent_of_the_baseline():
    # The production path: a real gunicorn sync worker, metrics in multiprocess mode, gunicorn's own handling
    # of the response (the correlation header included) counted with it.
    _check(instructions.GUNICORN_BASELINE, "in a gunicorn worker", gunicorn=True)
