"""Health endpoints and checks, built on django-health-check's ``HealthCheck``."""

from .checks import (
    Cache,
    CeleryBroker,
    CeleryQueues,
    CeleryWorkers,
    Database,
    Disk,
    Memory,
    Migrations,
    Observation,
    Redis,
)
from .drain import is_draining, start_draining

__all__ = [
    "Cache",
    "CeleryBroker",
    "CeleryQueues",
    "CeleryWorkers",
    "Database",
    "Disk",
    "Memory",
    "Migrations",
    "Observation",
    "Redis",
    "is_draining",
    "start_draining",
]
