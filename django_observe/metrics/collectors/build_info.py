"""``build_info``: the versions of django_observe, the service, Django and Python (a constant, no dependency)."""

from __future__ import annotations

import platform
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

__all__ = ["BuildInfoCollector"]


class BuildInfoCollector:
    def __init__(self, namespace: str, version: str, service_version: str):
        import django

        self.name = f"{namespace}_build_info" if namespace else "build_info"
        self.labels = {
            "version": version,
            "service_version": service_version,
            "django": django.get_version(),
            "python": platform.python_version(),
        }

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, "django_observe, Django and Python versions.", labels=list(self.labels))
        family.add_metric(list(self.labels.values()), 1)
        yield family
