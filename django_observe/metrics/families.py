"""Families announced from the first scrape in multiprocess mode.

prometheus_client's ``MultiProcessCollector`` reports only the families some process has written a sample of,
and a labelled metric has none until a label set is used: right after start-up the request histogram and the
health gauges would be missing until the first request or probe. The single-process registry announces every
registered family (``# HELP``/``# TYPE``, no samples for a labelled family that has no series yet, which both
the Prometheus text format and OpenMetrics allow); :func:`announce` makes the multiprocess scrape do the same
for the catalogue's families, without announcing twice a family that has samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.metrics_core import Metric

__all__ = ["DeclaredFamilies", "announce"]


class DeclaredFamilies:
    """The families of ``metrics`` (name, help, type, unit), read once; collects nothing itself.

    Put among the scrape's extra collectors; the multiprocess scrape (``exporter.make_registry``) announces
    those no process has a sample of yet.
    """

    def __init__(self, metrics: Iterable[Any]):
        self.declared: tuple[tuple[str, str, str, str], ...] = tuple(
            (family.name, family.documentation, family.type, family.unit)
            for metric in metrics
            for family in metric.describe()
        )

    def collect(self) -> Iterable[Metric]:
        return ()


def announce(found: Iterable[Metric], declared: Iterable[tuple[str, str, str, str]]) -> Iterator[Metric]:
    """``found`` (the families read from the processes' files), then every ``declared`` family absent from it,
    empty: a scrape lists its ``# HELP`` and ``# TYPE`` lines and no sample."""
    seen: set[str] = set()
    for family in found:
        seen.add(family.name)
        yield family
    for name, documentation, typ, unit in declared:
        if name not in seen:
            seen.add(name)
            yield Metric(name, documentation, typ, unit)
