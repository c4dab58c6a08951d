"""Builds the runtime from the validated configuration and applies it to the process.

``AppConfig.ready()`` calls :func:`start`; tests and Django's ``setting_changed`` signal call :func:`rebuild`.
This is the one module that imports every subsystem; nothing imports it but ``apps.py`` and tests.

Data flow: ``settings`` + environment -> ``conf.load_config()`` -> frozen ``ObserveConfig`` ->
:func:`build_runtime` hands each subsystem its part (health runner, metrics state, tracing state, query
counter, outbound policy) and touches nothing else -> ``runtime.install()``; then :func:`_apply` does what
touches the process: logging handlers, then ``install(runtime)`` for each available row of
``django_observe.integrations.INTEGRATIONS`` (library patches, signal receivers), then the metrics port.
"""

from __future__ import annotations

import logging
import os
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from . import conf, process, queries, runtime, shutdown
from .correlation import CorrelationPolicy
from .health import drain
from .health.registry import build_specs, find_celery_app
from .health.runner import HealthRunner
from .identity import ServiceIdentity
from .integrations import INTEGRATIONS, http_clients, prometheus_files, sqlcomment
from .integrations._uses import console_installed
from .llm.content import WithheldTexts, captures_content
from .logging import configure_logging
from .metrics.setup import build_metrics, prepare_multiprocess, start_exporter, state_of
from .runtime import Runtime

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


def _dropped(metrics: Any, signal: str) -> Callable[[int], None] | None:
    """Counts what the dead-collector breaker drops in ``otel_export_dropped_total{signal}`` (metrics on)."""
    if metrics is None:
        return None
    counter = metrics.catalogue.export_dropped.labels(signal)
    return counter.inc


def _otlp_log_handler(
    config: conf.ObserveConfig, identity: ServiceIdentity, withheld: Any = None, metrics: Any = None
) -> Any:
    """The OTLP log handler with ``OTEL_ENABLED`` and ``OTEL_LOGS_EXPORTER=otlp``, else None."""
    if not (config.otel_enabled and config.otel_logs_exporter == "otlp"):
        return None
    from .logging.otlp import OtlpLogHandler

    return OtlpLogHandler(
        identity=identity,
        endpoint=config.otel_exporter_otlp_endpoint,
        protocol=config.otel_exporter_otlp_protocol,
        otel_enabled=config.otel_enabled,
        redact_keys=config.log_redact_keys + config.log_redact_paths,
        withheld=withheld,
        on_drop=_dropped(metrics, "logs"),
    )


def _logging_setup(
    config: conf.ObserveConfig,
    identity: ServiceIdentity,
    *,
    project_logging: bool,
    withheld: Any = None,
    metrics: Any = None,
) -> Any:
    """The function that configures logging for ``config`` (None with ``LOG_CONFIGURE`` off)."""
    if config.log_configure == "off":
        return None
    handlers = config.log_configure == "on" or not project_logging

    def setup() -> None:
        configure_logging(
            level=config.log_level,
            fmt=config.log_format,
            otel_enabled=config.otel_enabled,
            redact_keys=config.log_redact_keys + config.log_redact_paths,
            handlers=handlers,
            flavor=config.log_json_flavor,
            service=identity.as_log_service(),
            gcp_project=config.log_gcp_project,
            otlp_handler=_otlp_log_handler(config, identity, withheld, metrics),
            deduplicate=config.log_deduplicate and config.log_requests,
            withheld=withheld,
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
    console: bool = False,
) -> Runtime:
    """Build every part for ``config``; touches nothing outside the returned object but the metrics registry
    (patching libraries is :func:`_apply`'s, through the integration table).

    Args:
        role: ``web``, ``worker`` or ``command``.
        databases: ``settings.DATABASES``; caches: ``settings.CACHES``.
        project_logging: the project has its own ``LOGGING`` (``LOG_CONFIGURE="auto"`` then keeps its handlers).
        registry: the metrics registry (default prometheus_client's ``REGISTRY``).
        console: ``django_observe.console`` is installed: record for it.

    Raises:
        ImproperlyConfigured: a health check option is invalid, or tracing is on without its packages.
    """
    identity = ServiceIdentity.from_config(config)
    capture = captures_content(config.otel_instrumentation_genai_capture_message_content)
    # LLM error texts kept off spans, logs and the console: one per process, kept across rebuilds (the
    # logging chain is configured again only when its options change).
    previous = runtime.current()
    kept = previous.llm_errors if previous is not None else None
    llm_errors = None if capture else kept if isinstance(kept, WithheldTexts) else WithheldTexts()
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
        tracing=_tracing(config, role=role, identity=identity, withheld=llm_errors, on_drop=_dropped(metrics, "spans")),
        queries=queries.QueryCounter(config.db_query_stats, config.db_repeated_query_threshold),
        sql_comments=sqlcomment.SqlComments(tracing=config.otel_enabled) if config.tracing_sql_commenter else None,
        outbound=http_clients.OutboundPolicy.from_config(config),
        logging_setup=_logging_setup(
            config, identity, project_logging=project_logging, withheld=llm_errors, metrics=metrics
        ),
        console=_console_recorder(config, health, llm_errors) if console else None,
        llm_errors=llm_errors,
    )


def _logging_key(config: conf.ObserveConfig) -> tuple[Any, ...]:
    return (
        config.log_configure,
        config.log_level,
        config.log_format,
        config.log_json_flavor,
        config.log_redact_keys,
        config.log_redact_paths,
        config.log_gcp_project,
        config.log_deduplicate,
        config.log_requests,
        config.otel_enabled,
        config.service_name,
        config.service_environment,
        config.service_version,
        tuple(sorted(config.otel_resource_attributes.items())),
        config.otel_logs_exporter,
        config.otel_exporter_otlp_endpoint,
        config.otel_exporter_otlp_protocol,
        captures_content(config.otel_instrumentation_genai_capture_message_content),
    )


def _apply(rt: Runtime, django_settings: Any, previous: Runtime | None = None) -> None:
    """What the runtime needs from the process: logging, then every available integration installed.

    Logging is configured again only when its options changed: ``dictConfig`` replaces the root handlers,
    including those a test runner added.
    """
    config = conf.loaded(rt.config)
    shutdown.configure(config.otel_export_shutdown_timeout)
    logging_changed = previous is None or _logging_key(conf.loaded(previous.config)) != _logging_key(config)
    if rt.logging_setup is not None and logging_changed:
        rt.logging_setup()
        if rt.logging_setup.installs_handlers:  # type: ignore[attr-defined]
            # A second django.setup() in the same process (runserver loads the WSGI module, which calls it
            # again) would re-apply Django's default logging on top of ours.
            django_settings.LOGGING_CONFIG = None
    if rt.tracing is not None:
        rt.tracing.announce_once()  # after logging: the line reaches the configured handlers
        # First: the Celery instrumentor's task_prerun then opens the task's span before ours logs
        # task_started, so every task line carries the trace (integrations.celery keeps the span's ids for
        # the duration's exemplar, since the instrumentor's task_postrun ends the span before ours runs).
        from .tracing.setup import instrument_libraries

        instrument_libraries()
    wired = []
    for integration in INTEGRATIONS:
        if integration.available(rt):
            integration.install(rt)
            wired.append(integration.name)
        else:  # not used (any more, after a rebuild): the library as it was
            integration.uninstall()
    rt.integrations = tuple(wired)


# Imported only where used: with tracing off nothing of tracing.setup is loaded, without the console app none
# of its recorder, without an OTLP metrics exporter none of the pusher.


def _tracing(config: conf.ObserveConfig, **kwargs: Any) -> Any:
    if not config.otel_enabled:
        return None
    from .tracing.setup import configure_tracing

    return configure_tracing(config, **kwargs)


def _uninstrument_django() -> bool:
    from .tracing.contrib import uninstrument_django

    return uninstrument_django()


def _console_recorder(config: conf.ObserveConfig, health: Any, llm_errors: Any) -> Any:
    from .integrations.console import recorder_for

    return recorder_for(config, health, llm_errors)


def _push_otlp_metrics(state: Any, config: conf.ObserveConfig, identity: ServiceIdentity, role: str) -> Any:
    if not (config.otel_enabled and config.otel_metrics_exporter == "otlp"):
        return None
    from .metrics import otlp

    return otlp.start(state, config, identity, role)


def _console_records(role: str) -> bool:
    """The console app is installed and this process is not a one-off management command (migrate, shell...)."""
    return console_installed() and not (role == "command" and process.is_management_command())


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
    if prepare_multiprocess(config, process.process_role()) is not None:
        # Before any metric value exists: files reserved before they are mapped, memory when they cannot be.
        prometheus_files.integration.install()


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
        refuse_to_start(exc, role)
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
    took_over = config.otel_enabled and _uninstrument_django()
    rt = _build_or_report(config, role, django_settings)
    runtime.install(rt)
    if role == "web":
        drain.install_sigterm_handler(config.health_drain_seconds)
    _apply(rt, django_settings)
    if took_over:
        logger.info("opentelemetry-instrumentation-django uninstrumented: django_observe makes the request spans")
    state = state_of(rt.metrics)
    if state is not None:
        start_exporter(state, config, role)
        identity = rt.identity if isinstance(rt.identity, ServiceIdentity) else ServiceIdentity.from_config(config)
        state.otlp = _push_otlp_metrics(state, config, identity, role)
    return rt


# Management commands that report an invalid configuration rather than refuse to run with it.
REPORTING_COMMANDS = frozenset({"check", "observe_config", "observe_doctor", "help", "version"})
EXIT_INVALID = 3  # gunicorn's WORKER_BOOT_ERROR: its arbiter stops instead of forking the worker again


def refuse_to_start(exc: conf.InvalidConfiguration, role: str, argv: list[str] | None = None) -> None:
    """Servers, workers and management commands (but ``check`` and the reporting ones) stop on an invalid
    configuration with the same few lines on stderr, naming each setting, its value and the accepted values,
    and exit with status 3. Other processes (a test runner, a script calling ``django.setup()``) get the
    exception.

    Raises:
        SystemExit: this process is one that must not run with the configuration.
    """
    argv = sys.argv if argv is None else argv
    command = argv[1] if process.is_management_command(argv) and len(argv) > 1 else None
    if command is not None:
        if command in REPORTING_COMMANDS or command.startswith("-"):
            return
        what = f"manage.py {command}"
    elif role in ("web", "worker", "beat"):
        prog = os.path.basename(argv[0]) if argv else role
        what = os.path.basename(os.path.dirname(argv[0])) if prog == "__main__.py" else prog
    else:
        return
    sys.stderr.write(f"{exc}\n{what} not started (exit status {EXIT_INVALID}).\n")
    sys.stderr.flush()
    raise SystemExit(EXIT_INVALID)


def doctor_facts(django_settings: Any = None) -> Any:
    """What ``manage.py observe_doctor`` checks, from the installed runtime and the settings it needs."""
    from . import doctor
    from .metrics.exporter import ENV, default_base

    if django_settings is None:
        from django.conf import settings

        django_settings = settings
    rt = runtime.get_runtime()
    config = conf.loaded(rt.config)
    try:
        celery_app = find_celery_app(config)
    except ImproperlyConfigured:
        celery_app = None
    return doctor.Facts(
        config=config,
        errors=rt.errors,
        settings=types.SimpleNamespace(
            LOGGING=getattr(django_settings, "LOGGING", None), DATABASES=dict(django_settings.DATABASES)
        ),
        health=rt.health,
        celery_app=celery_app,
        multiprocess_base=config.metrics_multiproc_dir or os.environ.get(ENV) or default_base(),
    )


def _build_or_report(config: conf.ObserveConfig, role: str, django_settings: Any) -> Runtime:
    try:
        return build_runtime(
            config,
            role=role,
            databases=dict(django_settings.DATABASES),
            caches=dict(django_settings.CACHES),
            project_logging=bool(getattr(django_settings, "LOGGING", None)),
            console=_console_records(role),
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
            console=_console_records(previous.role if previous is not None else process.process_role()),
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
