"""timestamp_at(): the request line's timestamp from the monotonic reading the middleware takes anyway."""

import time
from datetime import UTC, datetime

from django_observe.logging import processors
from django_observe.logging.processors import format_timestamp, timestamp_at


def parse(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def test_agrees_with_the_wall_clock(monkeypatch):
    monkeypatch.setattr(processors, "_anchor", [(0, "")])
    for _ in range(3000):
        before = time.time()
        stamp = timestamp_at(time.perf_counter_ns())
        after = time.time()
        # Milliseconds are truncated, as format_timestamp() does; the clocks may differ by NTP's slew.
        assert int(before * 1000) / 1000 - 0.002 <= parse(stamp) <= after + 0.002, (before, stamp, after)


class Clocks:
    """Stand-in for the time module: a monotonic and a wall clock that the test moves."""

    def __init__(self, perf_ns: int, wall_ns: int):
        self.perf, self.wall = perf_ns, wall_ns

    def advance(self, ns: int) -> int:
        self.perf += ns
        self.wall += ns
        return self.perf

    def perf_counter_ns(self) -> int:
        return self.perf

    def time_ns(self) -> int:
        return self.wall

    gmtime = staticmethod(time.gmtime)
    strftime = staticmethod(time.strftime)


def test_crosses_seconds_and_follows_a_wall_clock_step(monkeypatch):
    monkeypatch.setattr(processors, "_anchor", [(0, "")])
    start = 1_764_590_400_998_000_000  # 2025-12-01T12:00:00.998Z
    clocks = Clocks(perf_ns=5_000_000_000, wall_ns=start)
    monkeypatch.setattr(processors, "time", clocks)
    seen = []
    for _ in range(6):  # 1 ms steps across the second
        seen.append(timestamp_at(clocks.advance(1_000_000)))
    assert seen == [
        "2025-12-01T12:00:00.999Z",
        "2025-12-01T12:00:01.000Z",
        "2025-12-01T12:00:01.001Z",
        "2025-12-01T12:00:01.002Z",
        "2025-12-01T12:00:01.003Z",
        "2025-12-01T12:00:01.004Z",
    ]
    for ms in range(5, 1000, 7):  # the whole second from one anchor, each the wall clock's own text
        reading = clocks.perf + 1_000_000 * (ms - 4)
        wall = clocks.wall + 1_000_000 * (ms - 4)
        assert timestamp_at(reading) == format_timestamp(wall / 1e9 + 1e-5)  # a float: 10 µs in, not at the edge
    # The wall clock is set an hour ahead: lines of the anchored second keep it, the next second shows the step.
    clocks.wall += 3600 * 10**9
    assert timestamp_at(clocks.advance(0)) == "2025-12-01T12:00:01.004Z"
    assert timestamp_at(clocks.advance(1_000_000_000)) == "2025-12-01T13:00:02.004Z"
    # A reading from before the anchor (another thread's, a little older) is converted on its own.
    assert timestamp_at(clocks.perf - 5_000_000) == "2025-12-01T13:00:01.999Z"
    assert timestamp_at(clocks.perf) == "2025-12-01T13:00:02.004Z"
