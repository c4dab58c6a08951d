"""Builds the runtime from the validated configuration and applies it to the process.

``AppConfig.ready()`` calls :func:`start`; tests and Django's ``setting_changed`` signal call :func:`rebuild`.
This is the one module that imports every subsystem; nothing imports it but ``apps.py`` and tests.

Data flow: ``settings`` + environment -> ``conf.load_config()`` -> frozen ``ObserveConfig`` ->
:func:`build_runtime` hands each subsystem its part (health runner, metrics state, tracing state, query
counter, outbound policy) -> ``runtime.install()``; then :func:`_apply` does what touches the process
(logging handlers, Celery receivers, library patches, the metrics port).
"""

from __future__ import annotations

import logging
import types
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from . import conf, process, queries, runtime, sqlcomment
from .correlation import CorrelationPolicy
from .health import drain
from .health.registry import build_specs, find_celery_app
from .health.runner import HealthRunner
from .identity import ServiceIdentity
from .integrations import celery as celery_integration
from .integrations import django_tasks as django_tasks_integration
from .integrations import http_clients
from .logging import configure_logging
from .metrics import otlp as otlp_metrics
from .metrics.model_operations import install_model_instrumentation
from .metrics.setup import build_metrics, prepare_multiprocess, start_exporter
from .runtime import Runtime
from .tracing.contrib import uninstrument_django
from .tracing.setup import configure_tracing, instrument_libraries

__all__ = [
    "MIDDLEWARE",
    "RELOADING_SETTINGS",
    "build_runtime",
    "install_middleware",
    "prepare",
    "rebuild",
    "start",
]

logger = logging.getLogger("django_observe")

MIDDLEWARE = "django_observe.middleware.ObserveMiddleware"
# A change of any of these rebuilds the runtime (Django's setting_changed: override_settings, tests).
RELOADING_SETTINGS = frozenset({"DJANGO_OBSERVE", "LOG_LEVEL", "LOG_FORMAT", "OTEL_ENABLED"})


def install_middleware(django_settings: Any) -> None:
    """Put ``ObserveMiddleware`` first in ``MIDDLEWARE`` unless the project lists it already."""
    middleware = list(django_settings.MIDDLEWARE)
    if MIDDLEWARE not in middleware:
        middleware.insert(0, MIDDLEWARE)
        django_settings.MIDDLEWARE = middleware


def _otlp_log_handler(config: conf.ObserveConfig, identity: ServiceIdentity) -> Any:
    """The OTLP log handler with ``OTEL_ENABLED`` and ``OTEL_LOGS_EXPORTER=otlp``, else None."""
    if not (config.otel_enabled and config.otel_logs_exporter == "otlp"):
        return None
    from .logging.otlp import OtlpLogHandler

    return OtlpLogHandler(
        identity=identity,
        endpoint=config.otel_exporter_otlp_endpoint,
        protocol=config.otel_exporter_otlp_protocol,
        otel_enabled=config.otel_enabled,
        redact_keys=config.log_redact_keys,
    )


def _logging_setup(config: conf.ObserveConfig, identity: ServiceIdentity, *, project_logging: bool) -> Any:
    """The function that configures logging for ``config`` (None with ``LOG_CONFIGURE`` off)."""
    if config.log_configure == "off":
        return None
    handlers = config.log_configure == "on" or not project_logging

    def setup() -> None:
        configure_logging(
            level=config.log_level,
            fmt=config.log_format,
            otel_enabled=config.otel_enabled,
            redact_keys=config.log_redact_keys,
            handlers=handlers,
            flavor=config.log_json_flavor,
            service=identity.as_log_service(),
            gcp_project=config.log_gcp_project,
            otlp_handler=_otlp_log_handler(config, identity),
        )

    setup.installs_handlers = handlers  # type: ignore[attr-defined]
    return setup


def build_runtime(
    config: conf.ObserveConfig,
    *,
    role: str,
    databases: Mapping[str, Any],
    caches: Mapping[str, Any],
    project_logging: bool = False,
    registry: Any = None,
) -> Runtime:
    """Build every part for ``config``; touches nothing outside the returned object but the metrics registry.

    Args:
        role: ``web``, ``worker`` or ``command``.
        databases: ``settings.DATABASES``; caches: ``settings.CACHES``.
        project_logging: the project has its own ``LOGGING`` (``LOG_CONFIGURE="auto"`` then keeps its handlers).
        registry: the metrics registry (default prometheus_client's ``REGISTRY``).

    Raises:
        ImproperlyConfigured: a health check option is invalid, or tracing is on without its packages.
    """
    identity = ServiceIdentity.from_config(config)
    celery_app = find_celery_app(config)
    health = HealthRunner(
        build_specs(config, databases=list(databases), caches=dict(caches), celery_app=celery_app),
        ttl=config.health_cache_ttl,
    )
    metrics = build_metrics(
        config,
        role=role,
        celery_app=celery_app,
        health_runner=health,
        databases=databases,
        registry=registry,
        identity=identity,
    )
    return Runtime(
        config=config,
        role=role,
        correlation=CorrelationPolicy(config.correlation_id_pattern, config.correlation_id_prefix),
        identity=identity,
        health=health,
        metrics=metrics,
        tracing=configure_tracing(config, role=role, identity=identity),
        queries=queries.QueryCounter(config.db_query_stats, config.db_repeated_query_threshold),
        sql_comments=sqlcomment.SqlComments(tracing=config.otel_enabled) if config.tracing_sql_commenter else None,
        outbound=http_clients.OutboundPolicy.from_config(config),
        logging_setup=_logging_setup(config, identity, project_logging=project_logging),
    )


def _logging_key(config: conf.ObserveConfig) -> tuple[Any, ...]:
    return (
        config.log_configure,
        config.log_level,
        config.log_format,
        config.log_json_flavor,
        config.log_redact_keys,
        config.log_gcp_project,
        config.otel_enabled,
        config.service_name,
        config.service_environment,
        config.service_version,
        tuple(sorted(config.otel_resource_attributes.items())),
        config.otel_logs_exporter,
        config.otel_exporter_otlp_endpoint,
        config.otel_exporter_otlp_protocol,
    )


def _apply(rt: Runtime, django_settings: Any, previous: Runtime | None = None) -> None:
    """What the runtime needs from the process: logging, Celery receivers, library patches.

    Logging is configured again only when its options changed: ``dictConfig`` replaces the root handlers,
    including those a test runner added.
    """
    config = rt.config
    logging_changed = previous is None or _logging_key(previous.config) != _logging_key(config)
    if rt.logging_setup is not None and logging_changed:
        rt.logging_setup()
        if rt.logging_setup.installs_handlers:  # type: ignore[attr-defined]
            # A second django.setup() in the same process (runserver loads the WSGI module, which calls it
            # again) would re-apply Django's default logging on top of ours.
            django_settings.LOGGING_CONFIG = None
    wired = []
    if rt.tracing is not None:
        # First: the Celery instrumentor's task_prerun then opens the task's span before ours logs
        # task_started, so every task line carries the trace (integrations.celery keeps the span's ids for
        # the duration's exemplar, since the instrumentor's task_postrun ends the span before ours runs).
        instrument_libraries()
    if celery_integration.connect(own_logging=rt.logging_setup is not None):
        wired.append("celery")
    wired.extend(django_tasks_integration.connect())
    if config.metrics_db and rt.metrics is not None or config.db_query_stats:
        queries.install(_current_catalogue_for_db)
    install_model_instrumentation(rt.metrics is not None and rt.metrics.model_operations is not None)
    if rt.sql_comments is not None:
        sqlcomment.install()
    if rt.outbound is not None:
        wired.extend(http_clients.install())
    rt.integrations = tuple(wired)


def _current_catalogue_for_db() -> Any:
    rt = runtime.current()
    if rt is None or rt.metrics is None or not rt.config.metrics_db:
        return None
    return rt.metrics.catalogue


def _fallback_config(django_settings: Any) -> conf.ObserveConfig:
    """The defaults, for a management command that runs while the configuration is invalid."""
    return conf.load_config(types.SimpleNamespace(DEBUG=getattr(django_settings, "DEBUG", False)), environ={})


def prepare(django_settings: Any) -> None:
    """What must happen before the other apps are imported (``apps.py``, when Django imports this app).

    Multiprocess metrics: apps listed after ``django_observe`` that create prometheus_client metrics on
    import (django-prometheus) then write them to the shared files the metrics port sums. An invalid
    configuration is left for :func:`start` to report.
    """
    if not django_settings.configured:
        return
    try:
        config = conf.load_config(django_settings)
    except conf.InvalidConfiguration:
        return
    prepare_multiprocess(config, process.process_role())


def start(django_settings: Any) -> Runtime:
    """Load the configuration, build and install the runtime, and apply it to the process (``ready()``).

    Invalid configuration: servers and workers refuse to start; management commands run, and
    ``manage.py check`` reports the errors (``django_observe.E001``).

    Raises:
        ImproperlyConfigured: the configuration is invalid (outside management commands).
    """
    role = process.process_role()
    try:
        config = conf.load_config(django_settings)
    except conf.InvalidConfiguration as exc:
        if not process.is_management_command():
            raise
        rt = Runtime(
            config=_fallback_config(django_settings),
            role=role,
            correlation=CorrelationPolicy(),
            identity=ServiceIdentity(),
            errors=tuple(exc.errors),
        )
        runtime.install(rt)
        return rt
    if config.auto_middleware:
        install_middleware(django_settings)
    # opentelemetry-instrument (or the project) switched the contrib instrumentor on: one span per request.
    took_over = config.otel_enabled and uninstrument_django()
    rt = _build_or_report(config, role, django_settings)
    runtime.install(rt)
    if role == "web":
        drain.install_sigterm_handler(config.health_drain_seconds)
    _apply(rt, django_settings)
    if took_over:
        logger.info("opentelemetry-instrumentation-django uninstrumented: django_observe makes the request spans")
    if rt.metrics is not None:
        start_exporter(rt.metrics, config, role)
        identity = rt.identity or ServiceIdentity.from_config(config)
        rt.metrics.otlp = otlp_metrics.start(rt.metrics, config, identity, role)
    return rt


def _build_or_report(config: conf.ObserveConfig, role: str, django_settings: Any) -> Runtime:
    try:
        return build_runtime(
            config,
            role=role,
            databases=dict(django_settings.DATABASES),
            caches=dict(django_settings.CACHES),
            project_logging=bool(getattr(django_settings, "LOGGING", None)),
        )
    except ImproperlyConfigured as exc:
        if not process.is_management_command():
            raise
        error = conf.ConfigError('DJANGO_OBSERVE["HEALTH_CHECKS"]', str(exc))
        return Runtime(
            config=config,
            role=role,
            correlation=CorrelationPolicy(),
            identity=ServiceIdentity.from_config(config),
            errors=(error,),
        )


def rebuild(django_settings: Any = None, environ: Mapping[str, str] | None = None) -> Runtime:
    """Build the runtime anew from the current settings and install it (tests, ``setting_changed``).

    The metrics port and the SIGTERM handler are per process and stay as they are; the previous runtime's
    metrics are unregistered first so the new catalogue can register the same names.

    Args:
        environ: the environment to read overrides from (default ``os.environ``); tests pass ``{}``.

    Raises:
        InvalidConfiguration: the new settings are invalid (the previous runtime stays installed).
    """
    if django_settings is None:
        from django.conf import settings

        django_settings = settings
    config = conf.load_config(django_settings, environ=environ)
    previous = runtime.current()
    if previous is not None and previous.metrics is not None:
        previous.metrics.close()
    try:
        rt = build_runtime(
            config,
            role=previous.role if previous is not None else process.process_role(),
            databases=dict(django_settings.DATABASES),
            caches=dict(django_settings.CACHES),
            project_logging=bool(getattr(django_settings, "LOGGING", None)),
        )
    except BaseException:
        if previous is not None and previous.metrics is not None:
            previous.metrics.reopen()
        raise
    runtime.install(rt)
    _apply(rt, django_settings, previous)
    return rt


def on_setting_changed(setting: str = "", **kwargs: Any) -> None:
    """Django's ``setting_changed`` receiver: rebuild for the settings django_observe reads."""
    if setting in RELOADING_SETTINGS:
        rebuild()
