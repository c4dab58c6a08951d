"""``forking.forks_wait_for_first_call``: a fork waits for a first call under way (a background thread's first
run imports modules, and a module half-imported at the fork blocks the child forever), not for later calls,
and not longer than ``FORK_WAIT_SECONDS``. Real forks, in a subprocess (pytest's own threads stay out)."""

import subprocess
import sys

import pytest

from tests import support

PROBE = """
import os, sys, threading

from django_observe import forking

forking.FORK_WAIT_SECONDS = float(sys.argv[1])
entered, leave = threading.Event(), threading.Event()
finished = []


def body(n):
    entered.set()
    leave.wait()
    finished.append(n)


call = forking.forks_wait_for_first_call(body)


def fork_during(n):
    entered.clear()
    leave.clear()
    worker = threading.Thread(target=call, args=(n,))
    worker.start()
    entered.wait()
    threading.Timer(0.5, leave.set).start()  # the call ends half a second after the fork began
    pid = os.fork()
    if pid == 0:
        os._exit(len(finished))  # how many calls had returned when the child was forked
    _, status = os.waitpid(pid, 0)
    worker.join()
    return os.waitstatus_to_exitcode(status)


print(fork_during(1), fork_during(2), flush=True)
"""


def _run(wait: str) -> list[int]:
    support.require_fork()
    result = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", PROBE, wait],
        cwd=support.ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return [int(n) for n in result.stdout.split()]


def test_a_fork_waits_for_the_first_call_only():
    # First call: forked after it returned (1 call done). Second call: forked while it was still running.
    assert _run("30") == [1, 1]


def test_a_fork_does_not_wait_past_the_bound():
    # The bound is 0.1 s, the first call takes 0.5 s more: forked before it returned.
    assert _run("0.1") == [0, 1]


@pytest.mark.parametrize("returns", [True, False])
def test_the_wrapped_function_keeps_its_result_and_its_errors(returns):
    from django_observe import forking

    def fn(x):
        if not returns:
            raise ValueError(x)
        return x * 2

    call = forking.forks_wait_for_first_call(fn)
    for _ in range(2):  # the first call and a later one
        if returns:
            assert call(21) == 42
        else:
            with pytest.raises(ValueError, match="21"):
                call(21)
    assert forking._first_calls_under_way == []
