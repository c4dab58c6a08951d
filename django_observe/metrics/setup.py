"""Wire metrics for this process from the configuration (called from ``AppConfig.ready``)."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import sys
from collections.abc import Mapping
from typing import Any

from .. import __version__
from ..conf import ObserveConfig
from . import exporter

# Nothing here may import prometheus_client at module level: it picks single- or multiprocess mode on import,
# and configure_metrics must set PROMETHEUS_MULTIPROC_DIR first.

__all__ = ["MetricsState", "configure_metrics", "get_state"]

logger = logging.getLogger("django_observe.metrics")


@dataclasses.dataclass
class MetricsState:
    catalogue: Any
    recorder: Any
    multiprocess_path: str | None
    collectors: list[Any]
    exporter: Any = None
    active_users: Any = None
    pool_recorder: Any = None


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
    config: ObserveConfig,
    *,
    role: str,
    celery_app: Any = None,
    health_runner: Any = None,
    databases: Mapping[str, Mapping[str, Any]] | None = None,
) -> MetricsState | None:
    """Create the catalogue, instrument requests, DB, cache, auth and Celery, and start the exporter.

    The exporter starts only in serving processes (``role`` ``web`` or ``worker``), never in commands.

    Args:
        databases: ``settings.DATABASES``, for the connection metrics.
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
    from .collectors.build_info import BuildInfoCollector
    from .collectors.celery import CeleryCollector
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
    from .collectors.base import ErrorsCollector, ScrapeErrors

    collectors: list[Any] = [BuildInfoCollector(config.metrics_namespace, __version__, config.service_version)]
    errors = ScrapeErrors()
    if celery_app is not None:
        from . import celery as celery_metrics

        celery_metrics.connect(catalogue, exemplars=config.otel_enabled, exemplar_store=store)
        collectors.append(CeleryCollector(celery_app, config.metrics_namespace, errors))
    if health_runner is not None:
        health_runner.listeners.append(_health_listener(catalogue))
    _state = MetricsState(catalogue, recorder, path, collectors)
    collectors.extend(_infrastructure(config, _state, errors, dict(databases or {})))
    collectors.append(ErrorsCollector(_prefix(config.metrics_namespace), errors))
    if role in ("web", "worker"):
        port = config.metrics_port if role == "web" else config.metrics_worker_port
        if port:
            app = exporter.make_app(path, config.metrics_token, config.metrics_allowed_ips, lambda: collectors)
            _state.exporter = exporter.Exporter(config.metrics_address, port, app, path)
            _state.exporter.start()
    return _state


def _prefix(namespace: str) -> str:
    return f"{namespace}_" if namespace else ""


def _infrastructure(config: ObserveConfig, state: MetricsState, errors: Any, databases: dict[str, Any]) -> list[Any]:
    """The scrape-time collectors the configuration asks for (and the per-process recorders they read)."""
    from .collectors.active_users import ActiveUsers, ActiveUsersCollector
    from .collectors.base import Deadline
    from .collectors.database import DatabaseCollector, PoolRecorder, pool_aliases
    from .collectors.disk import DiskCollector
    from .collectors.host import HostCollector
    from .collectors.process import ProcessesCollector
    from .collectors.redis import RedisCollector

    prefix = _prefix(config.metrics_namespace)
    deadline = Deadline(config.metrics_collector_timeout)
    found: list[Any] = []
    if config.metrics_db_connections:
        aliases = pool_aliases(databases)
        if aliases:
            state.pool_recorder = PoolRecorder(config.metrics_namespace, aliases)
            _record_pools_after_work(state.pool_recorder)
        server_side = DatabaseCollector(prefix, errors, deadline, databases)
        if server_side.aliases:  # PostgreSQL only
            found.append(server_side)
    if config.metrics_redis and config.redis_urls:
        found.append(RedisCollector(prefix, errors, deadline, config.redis_urls))
    if config.metrics_disk and config.metrics_disk_paths:
        found.append(DiskCollector(prefix, errors, deadline, config.metrics_disk_paths))
    if config.metrics_process:
        found.append(HostCollector(prefix, errors, deadline))
        if state.multiprocess_path is not None:
            found.append(ProcessesCollector(prefix, errors, deadline, state.multiprocess_path))
    if config.metrics_active_users:
        directory = (
            os.path.join(state.multiprocess_path, "active_users") if state.multiprocess_path is not None else None
        )
        state.active_users = ActiveUsers(config.metrics_active_users_window, directory)
        state.recorder.active_users = state.active_users
        found.append(ActiveUsersCollector(prefix, errors, deadline, state.active_users))
    return found


def _record_pools_after_work(recorder: Any) -> None:
    """Pool numbers are per process: each records its own after a request or a task (throttled)."""
    from django.core.signals import request_finished

    request_finished.connect(recorder.maybe_record, weak=False, dispatch_uid="django_observe_pool_metrics")
    try:
        from celery.signals import task_postrun
    except ImportError:
        return
    task_postrun.connect(recorder.maybe_record, weak=False, dispatch_uid="django_observe_pool_metrics")


def _health_listener(catalogue: Any):
    def record(result: Any) -> None:
        critical = "true" if result.spec.critical else "false"
        catalogue.health_status.labels(result.id, critical).set(0 if result.status == "fail" else 1)
        catalogue.health_duration.labels(result.id).set(result.duration_ms / 1000)

    return record
