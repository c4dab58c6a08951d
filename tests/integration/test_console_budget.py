"""The console's cost per request, in instructions (callgrind): with it recording, the trivial view costs at most
10% more than with django_observe alone (#31). ``python -m benchmarks.console instructions`` prints the figures;
docs/console.md states them. No wall clock is involved."""

import pytest

from benchmarks import console, instructions
from tests import support

pytestmark = pytest.mark.integration


def test_the_console_adds_at_most_ten_percent_per_request():
    if not instructions.available():
        support.missing("valgrind (callgrind) is not installed")
    measured = console.instructions(n=100)
    assert measured["observe"] > 0 and measured["observe_console"] > measured["observe"], measured  # it records
    assert measured["ratio"] <= 1.10, (
        f"with the console recording, /ping costs {measured['observe_console']:,.0f} instructions per request, "
        f"{measured['ratio'] - 1:.1%} over {measured['observe']:,.0f} without it (at most 10%)"
    )
