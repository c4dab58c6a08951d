"""Wire metrics for this process from the configuration (called from ``AppConfig.ready``)."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import sys
from typing import Any

from .. import __version__
from ..conf import ObserveConfig
from . import exporter

__all__ = ["MetricsState", "configure_metrics", "get_state"]

logger = logging.getLogger("django_observe.metrics")


@dataclasses.dataclass
class MetricsState:
    catalogue: Any
    recorder: Any
    multiprocess_path: str | None
    collectors: list[Any]
    exporter: Any = None


_state: MetricsState | None = None


def get_state() -> MetricsState | None:
    return _state


def _multiprocess_wanted(role: str) -> bool:
    if os.environ.get(exporter.ENV):
        return True
    if role == "worker":
        return True
    return role == "web" and ("gunicorn.arbiter" in sys.modules or multiprocessing.parent_process() is not None)


def configure_metrics(
    config: ObserveConfig, *, role: str, celery_app: Any = None, health_runner: Any = None
) -> MetricsState | None:
    """Create the catalogue, instrument requests, DB, cache, auth and Celery, and start the exporter.

    The exporter starts only in serving processes (``role`` ``web`` or ``worker``), never in commands.
    """
    global _state
    if not config.metrics_enabled:
        return None
    if _state is not None:
        return _state
    path = None
    if _multiprocess_wanted(role):
        path = os.environ.get(exporter.ENV) or exporter.multiprocess_dir(config.metrics_multiproc_dir, role)
        if not exporter.enable_multiprocess(path):
            path = None
    from .auth import install_auth_instrumentation
    from .backends import install_cache_instrumentation
    from .catalogue import build_catalogue
    from .collectors import BuildInfoCollector, CeleryCollector
    from .http import RequestRecorder

    catalogue = build_catalogue(config.metrics_namespace, config.metrics_buckets, config.metrics_max_label_values)
    store = None
    if config.otel_enabled and path is not None:
        from .exemplars import ExemplarStore

        store = ExemplarStore(path)
    recorder = RequestRecorder(
        catalogue,
        frozenset({"django_observe", *config.metrics_exclude_apps}),
        exemplars=config.otel_enabled,
        exemplar_store=store,
    )
    install_auth_instrumentation(catalogue)
    if config.metrics_cache:
        install_cache_instrumentation(catalogue)
    collectors: list[Any] = [BuildInfoCollector(config.metrics_namespace, __version__, config.service_version)]
    if celery_app is not None:
        from . import celery as celery_metrics

        celery_metrics.connect(catalogue, exemplars=config.otel_enabled, exemplar_store=store)
        collectors.append(CeleryCollector(celery_app, config.metrics_namespace))
    if health_runner is not None:
        health_runner.listeners.append(_health_listener(catalogue))
    _state = MetricsState(catalogue, recorder, path, collectors)
    if role in ("web", "worker"):
        port = config.metrics_port if role == "web" else config.metrics_worker_port
        if port:
            app = exporter.make_app(path, config.metrics_token, config.metrics_allowed_ips, lambda: collectors)
            _state.exporter = exporter.Exporter(config.metrics_address, port, app, path)
            _state.exporter.start()
    return _state


def _health_listener(catalogue: Any):
    def record(result: Any) -> None:
        critical = "true" if result.spec.critical else "false"
        catalogue.health_status.labels(result.id, critical).set(0 if result.status == "fail" else 1)
        catalogue.health_duration.labels(result.id).set(result.duration_ms / 1000)

    return record
