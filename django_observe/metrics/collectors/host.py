"""Host memory (``/proc/meminfo``), usable CPUs and the container's cgroup v2 memory limit."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from prometheus_client.core import Metric

from .base import Deadline, Family, ScrapeCollector, ScrapeErrors, gauge

__all__ = ["HostCollector", "cpu_cores", "read_meminfo"]


def read_meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """``/proc/meminfo`` in bytes (``MemTotal``, ``MemAvailable``, ...)."""
    info = {}
    with open(path, encoding="ascii") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                info[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return info


def cpu_cores(cgroup: str = "/sys/fs/cgroup") -> float:
    """CPUs this process may use: its affinity, capped by a cgroup v2 quota (``cpu.max``)."""
    cores = float(len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else float(os.cpu_count() or 1)
    with contextlib.suppress(OSError, ValueError), open(os.path.join(cgroup, "cpu.max"), encoding="ascii") as fh:
        quota, period = fh.read().split()[:2]
        if quota != "max":
            cores = min(cores, int(quota) / int(period))
    return cores


class HostCollector(ScrapeCollector):
    """``host_memory_total_bytes``, ``host_memory_available_bytes`` (``/proc/meminfo``), ``host_cpu_cores``.

    In a container ``/proc/meminfo`` shows the node; the cgroup v2 limit and usage are added as
    ``cgroup_memory_limit_bytes`` and ``cgroup_memory_used_bytes`` when a limit is set.
    """

    collector = "host"

    def __init__(
        self,
        prefix: str,
        errors: ScrapeErrors,
        deadline: Deadline,
        meminfo: str = "/proc/meminfo",
        cgroup: str = "/sys/fs/cgroup",
        *,
        cache_seconds: float = 1.0,
    ):
        super().__init__(prefix, errors, deadline, cache_seconds=cache_seconds)
        self.meminfo, self.cgroup = meminfo, cgroup

    def families(self) -> list[Family]:
        p = self.prefix
        return [
            gauge(f"{p}host_memory_total_bytes", "Memory of the host (MemTotal)."),
            gauge(f"{p}host_memory_available_bytes", "Memory available for new work on the host (MemAvailable)."),
            gauge(f"{p}host_cpu_cores", "CPUs this process may use (affinity, capped by a cgroup quota)."),
            gauge(f"{p}cgroup_memory_limit_bytes", "Memory limit of the container (cgroup v2 memory.max)."),
            gauge(f"{p}cgroup_memory_used_bytes", "Memory used by the container (cgroup v2 memory.current)."),
        ]

    def read(self) -> Sequence[Metric]:
        total, available, cores, limit, used = self.families()
        info = read_meminfo(self.meminfo)
        total.add_metric([], info["MemTotal"])
        available.add_metric([], info.get("MemAvailable", info.get("MemFree", 0)))
        cores.add_metric([], cpu_cores(self.cgroup))
        families: list[Metric] = [total, available, cores]
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(self.cgroup, "memory.max"), encoding="ascii") as fh:
                raw = fh.read().strip()
            if raw != "max":
                with open(os.path.join(self.cgroup, "memory.current"), encoding="ascii") as fh:
                    current = int(fh.read().strip())
                limit.add_metric([], int(raw))
                used.add_metric([], current)
                families += [limit, used]
        return families
