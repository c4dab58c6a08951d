"""Wires the subsystems from the configuration, once per process."""

from __future__ import annotations

import logging

from django.apps import AppConfig
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import conf, runtime

logger = logging.getLogger("django_observe")

MIDDLEWARE = "django_observe.middleware.ObserveMiddleware"


def install_middleware(django_settings) -> None:
    """Put ``ObserveMiddleware`` first in ``MIDDLEWARE`` unless the project lists it already."""
    middleware = list(django_settings.MIDDLEWARE)
    if MIDDLEWARE not in middleware:
        middleware.insert(0, MIDDLEWARE)
        django_settings.MIDDLEWARE = middleware


def configure_health() -> None:
    from .health import registry, state

    config = conf.get_config()
    state.configure(
        config,
        databases=list(settings.DATABASES),
        caches=dict(settings.CACHES),
        celery_app=registry.find_celery_app(config),
    )


def configure_logging_and_correlation(config: conf.ObserveConfig, *, project_logging: bool) -> None:
    """Logging for the whole process (unless the project keeps its own), and Celery propagation."""
    from . import celery_integration
    from .correlation import CorrelationPolicy
    from .logging import configure_logging

    setup = None
    if config.log_configure != "off":
        handlers = config.log_configure == "on" or not project_logging

        def setup() -> None:
            configure_logging(
                level=config.log_level,
                fmt=config.log_format,
                otel_enabled=config.otel_enabled,
                redact_keys=config.log_redact_keys,
                handlers=handlers,
                flavor=config.log_json_flavor,
                service={
                    "name": config.service_name,
                    "environment": config.service_environment,
                    "version": config.service_version,
                },
                gcp_project=config.log_gcp_project,
            )

        setup()
        if handlers:
            # A second django.setup() in the same process (runserver loads the WSGI module, which calls it
            # again) would re-apply Django's default logging on top of ours.
            settings.LOGGING_CONFIG = None
    policy = CorrelationPolicy(config.correlation_id_pattern, config.correlation_id_prefix)
    quiet = setup is not None and config.log_format == "json"
    celery_integration.connect(setup_logging=setup, quiet_banner=quiet, policy=policy)


def configure_metrics(config: conf.ObserveConfig) -> None:
    from . import queries
    from .health import registry, state
    from .metrics.setup import configure_metrics as setup

    metrics = setup(
        config,
        role=runtime.process_role(),
        celery_app=registry.find_celery_app(config),
        health_runner=state.get_runner(),
        databases=dict(settings.DATABASES),
    )
    queries.install(
        catalogue=metrics.catalogue if metrics is not None and config.metrics_db else None,
        count=config.db_query_stats,
        repeated_threshold=config.db_repeated_query_threshold,
    )


def configure_propagation(config: conf.ObserveConfig) -> None:
    """Outbound requests/httpx calls carry the correlation ID (before tracing, whose wrappers then sit outside)."""
    from . import propagation

    propagation.install(config)


class DjangoObserveConfig(AppConfig):
    name = "django_observe"
    verbose_name = "django-observe"

    def ready(self) -> None:
        from . import checks

        try:
            config = conf.load_config(settings)
        except conf.InvalidConfiguration as exc:
            # manage.py commands report it as system check errors (manage.py check shows them);
            # servers and workers refuse to start.
            checks.startup_errors.extend(exc.errors)
            if runtime.is_management_command():
                return
            raise
        conf.set_config(config)
        if config.auto_middleware:
            install_middleware(settings)
        try:
            configure_health()
        except ImproperlyConfigured as exc:
            checks.startup_errors.append(conf.ConfigError('DJANGO_OBSERVE["HEALTH_CHECKS"]', str(exc)))
            if not runtime.is_management_command():
                raise
        if runtime.process_role() == "web":
            from .health import drain

            drain.install_sigterm_handler(config.health_drain_seconds)
        configure_logging_and_correlation(config, project_logging=bool(getattr(settings, "LOGGING", None)))
        configure_metrics(config)
        configure_propagation(config)
        from .tracing.setup import configure_tracing

        configure_tracing(config, role=runtime.process_role(), django_settings=settings)
