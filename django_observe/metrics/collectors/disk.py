"""Used and total bytes of the filesystems holding ``METRICS_DISK_PATHS``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from prometheus_client.core import Metric

from .base import Deadline, Family, ScrapeCollector, ScrapeErrors, gauge

__all__ = ["DiskCollector"]


class DiskCollector(ScrapeCollector):
    """``disk_used_bytes{path}`` and ``disk_total_bytes{path}`` of the filesystems holding the paths."""

    collector = "disk"

    def __init__(
        self,
        prefix: str,
        errors: ScrapeErrors,
        deadline: Deadline,
        paths: Sequence[str],
        *,
        cache_seconds: float = 1.0,
    ):
        super().__init__(prefix, errors, deadline, cache_seconds=cache_seconds)
        self.paths = tuple(dict.fromkeys(paths))

    def families(self) -> list[Family]:
        p = self.prefix
        return [
            gauge(f"{p}disk_used_bytes", "Bytes used on the filesystem holding the path.", ["path"]),
            gauge(
                f"{p}disk_total_bytes",
                "Bytes usable on the filesystem holding the path (used + available to unprivileged users).",
                ["path"],
            ),
        ]

    def read(self) -> Sequence[Metric]:
        used, total = self.families()
        for path in self.paths:
            try:
                stat = os.statvfs(path)
            except OSError as exc:
                self.errors.failed(self.collector, exc, path)
                continue
            used_bytes = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
            # Like df: reserved root blocks are neither used nor available.
            used.add_metric([path], used_bytes)
            total.add_metric([path], used_bytes + stat.f_bavail * stat.f_frsize)
        return [used, total]
