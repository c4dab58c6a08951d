"""The process's health runner, built once from the configuration by the app."""

from __future__ import annotations

from typing import Any

from ..conf import ObserveConfig
from .registry import build_specs
from .runner import HealthRunner

__all__ = ["configure", "get_runner"]

_runner: HealthRunner | None = None


def configure(config: ObserveConfig, *, databases: Any, caches: Any, celery_app: Any = None) -> HealthRunner:
    """Build the checks and the runner for this process (called from ``AppConfig.ready``).

    Raises:
        ImproperlyConfigured: a custom check or a check option is invalid.
    """
    global _runner
    specs = build_specs(config, databases=databases, caches=caches, celery_app=celery_app)
    _runner = HealthRunner(specs, ttl=config.health_cache_ttl)
    return _runner


def get_runner() -> HealthRunner:
    if _runner is None:
        from ..apps import configure_health

        configure_health()
    assert _runner is not None
    return _runner
