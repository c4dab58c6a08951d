"""Wire metrics for this process from the configuration (called from ``AppConfig.ready``)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..conf import ObserveConfig
from ..identity import ServiceIdentity
from ..requestinfo import OWN_APP
from . import exporter

if TYPE_CHECKING:
    from prometheus_client.registry import Collector, CollectorRegistry

    from ..health.runner import HealthRunner
    from .catalogue import Catalogue
    from .collectors.active_users import ActiveUsers
    from .collectors.database import PoolRecorder
    from .exemplars import ExemplarStore
    from .genai import LLMMetrics
    from .http import RequestRecorder
    from .model_operations import ModelOperations
    from .otlp import MetricsPusher

# Nothing here may import prometheus_client at module level: it picks single- or multiprocess mode on import,
# and configure_metrics must set PROMETHEUS_MULTIPROC_DIR first.

__all__ = ["MetricsState", "build_metrics", "prepare_multiprocess", "start_exporter", "state_of"]

logger = logging.getLogger("django_observe.metrics")


@dataclasses.dataclass(eq=False)
class MetricsState:
    """Metrics in this process.

    Attributes:
        catalogue: every metric django_observe records.
        recorder: the request histogram recorder ``ObserveMiddleware`` calls.
        llm: the ``llm_call`` recorder (``gen_ai_client_*``).
        multiprocess_path: the multiprocess directory, or None in single-process mode.
        collectors: scrape-time collectors (build info, Celery, infrastructure, collector errors).
        registry: where the catalogue's metrics are registered.
        owned: other metrics created for this state (business metrics), unregistered by :meth:`close`.
        exporter: the thread serving the metrics port, when this process serves it.
        active_users: the active-users window (``METRICS_ACTIVE_USERS``), else None.
        pool_recorder: connection-pool numbers per process (``METRICS_DB_CONNECTIONS``, pooled aliases), else None.
        exemplar_store: the exemplars of multiprocess mode with tracing on, else None.
        otlp: the OTLP metrics pusher, when this process pushes.
        model_operations: ``db_model_operations_total`` (``METRICS_MODELS``), else None.
    """

    catalogue: Catalogue
    recorder: RequestRecorder
    llm: LLMMetrics
    multiprocess_path: str | None
    collectors: list[Collector]
    registry: CollectorRegistry
    owned: list[Collector] = dataclasses.field(default_factory=list)
    exporter: exporter.Exporter | None = None
    active_users: ActiveUsers | None = None
    pool_recorder: PoolRecorder | None = None
    exemplar_store: ExemplarStore | None = None
    otlp: MetricsPusher | None = None  # the OTLP metrics pusher, when this process pushes
    model_operations: ModelOperations | None = None

    def close(self) -> None:
        """Unregister everything this state put in the registry (a rebuilt runtime registers anew)."""
        for metric in [*self.catalogue.metrics(), *self.owned, *self.collectors]:
            with contextlib.suppress(KeyError, ValueError):
                self.registry.unregister(metric)

    def reopen(self) -> None:
        """Register the catalogue again after :meth:`close` (a rebuild that failed keeps this state)."""
        for metric in [*self.catalogue.metrics(), *self.owned]:
            with contextlib.suppress(ValueError):
                self.registry.register(metric)


def _multiprocess_wanted(role: str) -> bool:
    if os.environ.get(exporter.ENV):
        return True
    if role == "worker":
        return True
    return role == "web" and ("gunicorn.arbiter" in sys.modules or multiprocessing.parent_process() is not None)


def prepare_multiprocess(config: ObserveConfig, role: str) -> str | None:
    """Point prometheus_client at this process group's multiprocess directory, if this process needs one.

    Must run before anything imports ``prometheus_client.values`` (it picks single- or multiprocess mode on
    import): ``django_observe/apps.py`` calls it when Django imports the app, before the apps listed after
    ``django_observe`` (django-prometheus creates its metrics on import). Idempotent; returns the directory,
    or None in single-process mode.
    """
    if not config.metrics_enabled or not _multiprocess_wanted(role):
        return None
    try:
        path = exporter.inherited_dir(config.metrics_multiproc_dir) or exporter.multiprocess_dir(
            config.metrics_multiproc_dir, role
        )
    except OSError as exc:
        # A read-only or full base directory: this process records its own samples (single-process mode)
        # and keeps serving; the metrics port then shows only the serving process's.
        logger.error(
            "metrics storage: cannot use the multiprocess directory under %s (%s); this process keeps serving "
            "with single-process metrics (the scrape shows only the serving process). Point "
            "METRICS_MULTIPROC_DIR at a writable directory.",
            config.metrics_multiproc_dir or exporter.default_base(),
            exc.strerror or exc,
        )
        return None
    if path is None or not exporter.enable_multiprocess(path):
        return None
    from . import storage

    storage.compact(path, exporter.alive)
    return path


def build_metrics(
    config: ObserveConfig,
    *,
    role: str,
    celery_app: Any = None,
    health_runner: HealthRunner | None = None,
    databases: Mapping[str, Mapping[str, Any]] | None = None,
    registry: Any = None,
    identity: ServiceIdentity | None = None,
) -> MetricsState | None:
    """Create the catalogue, the recorders and the collectors; patches nothing (the integrations do, from
    ``django_observe.integrations``, and record into what this builds).

    The exporter is started by :func:`start_exporter`. Returns None with ``METRICS_ENABLED`` off.

    Args:
        role: ``web``, ``worker`` or ``command``; serving processes use multiprocess mode when forked.
        celery_app: the project's Celery app, for the Celery collector.
        health_runner: its results become ``health_check_*`` gauges.
        databases: ``settings.DATABASES``, for the connection metrics.
        registry: where to register the metrics (default: prometheus_client's ``REGISTRY``; tests pass
            a fresh ``CollectorRegistry``).
        identity: the service identity of ``build_info`` and ``target_info``.
    """
    if not config.metrics_enabled:
        return None
    path = prepare_multiprocess(config, role)
    from prometheus_client import REGISTRY

    registry = REGISTRY if registry is None else registry
    from .catalogue import build_catalogue
    from .collectors.build_info import BuildInfoCollector
    from .genai import LLMMetrics
    from .http import RequestRecorder

    catalogue = build_catalogue(
        config.metrics_namespace,
        config.metrics_buckets,
        config.metrics_max_label_values,
        registry=registry,
        directory=path,  # the cardinality budgets are shared by the processes of the group there
    )
    store = None
    if config.otel_enabled and path is not None:
        from .exemplars import ExemplarStore

        store = ExemplarStore(path)
        task_duration = catalogue.celery_task_duration_shape  # recorded by integrations.celery
        store.declare(task_duration.name, task_duration.labelnames, task_duration.upper_bounds)
    recorder = RequestRecorder(
        catalogue,
        frozenset({OWN_APP, *config.metrics_exclude_apps}),
        exemplars=config.otel_enabled,
        exemplar_store=store,
    )
    from .collectors.base import ErrorsCollector, ScrapeErrors
    from .collectors.target_info import TargetInfoCollector

    identity = identity or ServiceIdentity.from_config(config)
    collectors: list[Any] = [
        BuildInfoCollector(config.metrics_namespace, __version__, identity.version),
        TargetInfoCollector(identity),
    ]
    errors = ScrapeErrors()
    if celery_app is not None:
        from .collectors.celery import CeleryCollector

        collectors.append(
            CeleryCollector(
                celery_app, config.metrics_namespace, errors, cache_seconds=config.metrics_collector_cache_seconds
            )
        )
    if health_runner is not None:
        health_runner.listeners.append(_health_listener(catalogue))
    state = MetricsState(catalogue, recorder, LLMMetrics(catalogue), path, collectors, registry, exemplar_store=store)
    _model_operations(config, state)
    collectors.extend(_infrastructure(config, state, errors, dict(databases or {})))
    collectors.append(ErrorsCollector(_prefix(config.metrics_namespace), errors))
    if path is not None:
        from .families import DeclaredFamilies
        from .storage import StorageCollector

        collectors.append(StorageCollector(config.metrics_namespace, path))
        # Announced from the first scrape, as the single-process registry does (families.announce).
        collectors.append(DeclaredFamilies(catalogue.metrics()))
    return state


def state_of(metrics: object) -> MetricsState | None:
    """A runtime's ``metrics`` part (typed by ``runtime.Metrics``) as the :class:`MetricsState` it is; None
    with metrics off.

    Raises:
        TypeError: it is something else.
    """
    if metrics is not None and not isinstance(metrics, MetricsState):
        raise TypeError(f"expected a MetricsState, got {type(metrics).__name__}")
    return metrics


def start_exporter(state: MetricsState, config: ObserveConfig, role: str) -> None:
    """Serve the metrics port from this process (web: ``METRICS_PORT``, worker and beat: ``METRICS_WORKER_PORT``)."""
    if role not in ("web", "worker", "beat"):  # beat serves the worker port (its own pod or host)
        return
    port = config.metrics_port if role == "web" else config.metrics_worker_port
    if not port:
        return
    collectors = state.collectors
    app = exporter.make_app(
        state.multiprocess_path, config.metrics_token, config.metrics_allowed_ips, lambda: collectors
    )
    state.exporter = exporter.Exporter(
        config.metrics_address,
        port,
        app,
        state.multiprocess_path,
        connection_timeout=config.metrics_connection_timeout,
        max_connections=config.metrics_max_connections,
        # Checked when a connection is accepted, before its request is read (the app checks it again).
        client_allowed=(
            exporter.Access.build(None, config.metrics_allowed_ips).client_allowed
            if config.metrics_allowed_ips
            else None
        ),
    )
    state.exporter.start()


def _prefix(namespace: str) -> str:
    return f"{namespace}_" if namespace else ""


def _infrastructure(config: ObserveConfig, state: MetricsState, errors: Any, databases: dict[str, Any]) -> list[Any]:
    """The scrape-time collectors the configuration asks for (and the per-process recorders they read); each
    collector's module is imported only when the configuration asks for it."""
    from .collectors.base import Deadline

    prefix = _prefix(config.metrics_namespace)
    deadline = Deadline(config.metrics_collector_timeout)
    cache = config.metrics_collector_cache_seconds
    found: list[Any] = []
    if config.metrics_db_connections:
        from .collectors.database import DatabaseCollector, PoolRecorder, pool_aliases

        aliases = pool_aliases(databases)
        if aliases:
            state.pool_recorder = PoolRecorder(config.metrics_namespace, aliases)
            _record_pools_after_work(state.pool_recorder)
        server_side = DatabaseCollector(prefix, errors, deadline, databases, cache_seconds=cache)
        if server_side.aliases:  # PostgreSQL only
            found.append(server_side)
    if config.metrics_redis and config.redis_urls:
        from .collectors.redis import RedisCollector

        found.append(RedisCollector(prefix, errors, deadline, config.redis_urls, cache_seconds=cache))
    if config.metrics_disk and config.metrics_disk_paths:
        from .collectors.disk import DiskCollector

        found.append(DiskCollector(prefix, errors, deadline, config.metrics_disk_paths, cache_seconds=cache))
    if config.metrics_process:
        from .collectors.host import HostCollector
        from .collectors.process import ProcessesCollector

        found.append(HostCollector(prefix, errors, deadline, cache_seconds=cache))
        if state.multiprocess_path is not None:
            found.append(ProcessesCollector(prefix, errors, deadline, state.multiprocess_path, cache_seconds=cache))
    if config.metrics_migrations:
        from .collectors.migrations import MigrationsCollector, migration_aliases

        aliases = migration_aliases(databases)
        if aliases:
            found.append(MigrationsCollector(prefix, errors, deadline, aliases))
    if config.metrics_active_users:
        from .collectors.active_users import ActiveUsers, ActiveUsersCollector

        directory = (
            os.path.join(state.multiprocess_path, "active_users") if state.multiprocess_path is not None else None
        )
        state.active_users = ActiveUsers(config.metrics_active_users_window, directory)
        state.recorder.active_users = state.active_users
        found.append(ActiveUsersCollector(prefix, errors, deadline, state.active_users, cache_seconds=cache))
    return found


def _model_operations(config: ObserveConfig, state: MetricsState) -> None:
    """The model operation counter (its signal receiver is connected by the wiring, for the installed runtime)."""
    from .model_operations import NAME, ModelOperations

    if config.metrics_models:
        guard = state.catalogue.guard(f"{NAME}_total", "model")
        state.model_operations = ModelOperations(config.metrics_namespace, state.registry, guard)
        state.owned.append(state.model_operations.counter)


def _record_pools_after_work(recorder: Any) -> None:
    """Pool numbers are per process: each records its own after a request (throttled); Celery tasks too
    (``integrations.celery``)."""
    from django.core.signals import request_finished

    request_finished.disconnect(dispatch_uid="django_observe_pool_metrics")
    request_finished.connect(recorder.maybe_record, weak=False, dispatch_uid="django_observe_pool_metrics")


def _health_listener(catalogue: Any):
    def record(result: Any) -> None:
        critical = "true" if result.spec.critical else "false"
        catalogue.health_status.labels(result.id, critical).set(0 if result.status == "fail" else 1)
        catalogue.health_duration.labels(result.id).set(result.duration_ms / 1000)

    return record
