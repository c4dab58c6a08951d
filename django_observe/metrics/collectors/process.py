"""prometheus_client's process metrics, summed over the live processes of a multiprocess group (``/proc``)."""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Sequence

from prometheus_client.core import CounterMetricFamily, Metric

from .base import Deadline, Family, ScrapeCollector, ScrapeErrors, gauge

__all__ = ["ProcessesCollector", "group_pids", "read_process"]


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_process(pid: int, proc: str = "/proc") -> tuple[float, int, int, int] | None:
    """``(cpu seconds, resident bytes, virtual bytes, open fds)`` of a live process, or None if it is gone."""
    try:
        with open(f"{proc}/{pid}/stat", encoding="ascii", errors="replace") as fh:
            fields = fh.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    virtual, resident = int(fields[20]), int(fields[21]) * _PAGE_SIZE
    try:
        fds = len(os.listdir(f"{proc}/{pid}/fd"))
    except OSError:
        fds = 0
    return cpu, resident, virtual, fds


def group_pids(path: str) -> set[int]:
    """Pids of the process group of a multiprocess directory: its name (the master) and every file's pid."""
    pids = {os.getpid()}
    base = os.path.basename(os.path.normpath(path))
    if base.isdigit():
        pids.add(int(base))
    for name in glob.glob(os.path.join(path, "*.db")):
        pid = os.path.basename(name)[:-3].rsplit("_", 1)[-1]
        if pid.isdigit():
            pids.add(int(pid))
    return pids


class ProcessesCollector(ScrapeCollector):
    """prometheus_client's process metrics, summed over the live processes of a multiprocess group.

    ``process_cpu_seconds_total`` stays monotonic while the scraping process lives: the last CPU time seen of
    a process that exited is kept (its CPU between the last scrape and its exit is lost).
    """

    collector = "process"
    covers_process_metrics = True

    def __init__(
        self,
        prefix: str,
        errors: ScrapeErrors,
        deadline: Deadline,
        path: str,
        proc: str = "/proc",
        *,
        cache_seconds: float = 1.0,
    ):
        super().__init__(prefix, errors, deadline, cache_seconds=cache_seconds)
        self.path, self.proc = path, proc
        self._last_cpu: dict[int, float] = {}
        self._exited_cpu = 0.0
        self._lock = threading.Lock()

    def families(self) -> list[Family]:
        p = self.prefix
        return [
            CounterMetricFamily(
                f"{p}process_cpu_seconds", "User and system CPU time of the live processes of the group, summed."
            ),
            gauge(f"{p}process_resident_memory_bytes", "Resident memory of the live processes of the group, summed."),
            gauge(f"{p}process_virtual_memory_bytes", "Virtual memory of the live processes of the group, summed."),
            gauge(f"{p}process_open_fds", "Open file descriptors of the live processes of the group, summed."),
            gauge(f"{p}process_group_processes", "Live processes in the group (master, workers)."),
        ]

    def read(self) -> Sequence[Metric]:
        cpu, resident, virtual, fds, count = self.families()
        seen: dict[int, tuple[float, int, int, int]] = {}
        for pid in group_pids(self.path):
            sample = read_process(pid, self.proc)
            if sample is not None:
                seen[pid] = sample
        with self._lock:
            for pid, last in self._last_cpu.items():
                if pid not in seen:
                    self._exited_cpu += last
            self._last_cpu = {pid: sample[0] for pid, sample in seen.items()}
            cpu.add_metric([], self._exited_cpu + sum(s[0] for s in seen.values()))
        resident.add_metric([], sum(s[1] for s in seen.values()))
        virtual.add_metric([], sum(s[2] for s in seen.values()))
        fds.add_metric([], sum(s[3] for s in seen.values()))
        count.add_metric([], len(seen))
        return [cpu, resident, virtual, fds, count]
