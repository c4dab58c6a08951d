"""``target_info``: the service identity as a metric, as OpenMetrics and OpenTelemetry's Prometheus mapping do.

``target_info{service_name, service_version, deployment_environment_name} 1`` on the metrics port. It carries
no ``service_instance_id``: the port serves the aggregate of every worker of the group, and a per-process id
would add one series per worker (and one more each time a worker is recycled) for a value that is the same.
The OTLP resource carries the instance (``django_observe.metrics.otlp``).
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from ...identity import ServiceIdentity

__all__ = ["TargetInfoCollector"]


def _label(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", key)


class TargetInfoCollector:
    """One ``target_info`` series whose labels are the identity (and the extra resource attributes)."""

    def __init__(self, identity: ServiceIdentity):
        attributes = {k: v for k, v in identity.resource_attributes(instance="-").items() if k != "service.instance.id"}
        self.labels = {_label(k): v for k, v in attributes.items()}

    def collect(self) -> Any:
        family = GaugeMetricFamily("target_info", "Target metadata: the service identity.", labels=list(self.labels))
        family.add_metric(list(self.labels.values()), 1)
        yield family
