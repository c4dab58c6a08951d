"""System checks: ``manage.py check`` reports invalid configuration with ids and hints."""

from __future__ import annotations

import ipaddress
import os
from typing import Any

from django.core import checks

from .conf import CONFIGURATION_URL, ObserveConfig, loaded
from .runtime import current

__all__ = [
    "check_configuration",
    "check_django_prometheus",
    "check_metrics_exposure",
    "check_urls",
    "logging_override_warnings",
    "metrics_exposure_warnings",
    "register",
]

DJANGO_PROMETHEUS = "django_prometheus"


def register(django_settings: Any = None) -> None:
    """Register the checks (``AppConfig.ready()``; the settings are for the django-prometheus check)."""
    checks.register(check_configuration, "django_observe")
    checks.register(check_urls, "django_observe", checks.Tags.urls)
    checks.register(check_metrics_exposure, "django_observe", checks.Tags.security)
    if django_settings is not None:

        def logging_override(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
            runtime = current()
            return [] if runtime is None else logging_override_warnings(django_settings, loaded(runtime.config))

        checks.register(logging_override, "django_observe")

        def django_prometheus(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
            from django.apps import apps

            runtime = current()
            if runtime is None:
                return []
            names = [config.name for config in apps.get_app_configs()]
            return check_django_prometheus(django_settings, names, runtime.config)

        checks.register(django_prometheus, "django_observe")


def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """django_observe.E001: an option has an invalid value (the message names it and what is accepted)."""
    runtime = current()
    return [
        checks.Error(
            error.message,
            hint=error.hint or f"See the configuration reference: {CONFIGURATION_URL}",
            id="django_observe.E001",
        )
        for error in (runtime.errors if runtime is not None else ())
    ]


def check_urls(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """django_observe.W001: the health endpoints are not routed."""
    from django.urls import NoReverseMatch, reverse

    try:
        reverse("django_observe:healthz")
    except NoReverseMatch:
        return [
            checks.Warning(
                "django_observe.urls is not included, so /healthz, /readyz and /health are not served.",
                hint='Add path("", include("django_observe.urls")) to your urlpatterns.',
                id="django_observe.W001",
            )
        ]
    except Exception:  # a broken URLconf is reported by Django's own checks
        return []
    return []


def _loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False  # "" (every interface) or a host name: assume it is reachable from elsewhere
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def metrics_exposure_warnings(config: ObserveConfig) -> list[checks.CheckMessage]:
    """django_observe.W002 for ``config`` (see :func:`check_metrics_exposure`)."""
    ports = [port for port in (config.metrics_port, config.metrics_worker_port) if port]
    if not config.metrics_enabled or not ports or _loopback(config.metrics_address):
        return []
    if config.metrics_token or config.metrics_allowed_ips:
        return []
    listed = ("ports " if len(ports) > 1 else "port ") + " and ".join(str(port) for port in ports)
    return [
        checks.Warning(
            f"The metrics port ({config.metrics_address or 'every interface'}, {listed}) accepts "
            "scrapes from anyone who can reach it: neither METRICS_TOKEN nor METRICS_ALLOWED_IPS is set.",
            hint="Set METRICS_TOKEN (and give Prometheus the bearer token), or METRICS_ALLOWED_IPS to the "
            "monitoring system's network, or bind METRICS_ADDRESS to 127.0.0.1 when the scraper runs on "
            'this host. If the network already isolates the port, add "django_observe.W002" to '
            'SILENCED_SYSTEM_CHECKS. See docs/metrics.md, "Securing the metrics port".',
            id="django_observe.W002",
        )
    ]


def check_metrics_exposure(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """django_observe.W002: the metrics port listens beyond loopback with neither a token nor an allowlist."""
    runtime = current()
    if runtime is None:
        return []
    return metrics_exposure_warnings(loaded(runtime.config))


def logging_override_warnings(django_settings: Any, config: ObserveConfig) -> list[checks.CheckMessage]:
    """django_observe.W006: the project's own ``LOGGING`` keeps its handlers (``LOG_CONFIGURE="auto"``), so the
    ``LOG_LEVEL``/``LOG_FORMAT`` it sets are not applied to them."""
    if not getattr(django_settings, "LOGGING", None) or config.log_configure != "auto":
        return []
    ignored = [
        name
        for name, field in (("LOG_LEVEL", "log_level"), ("LOG_FORMAT", "log_format"))
        if config.sources.get(field, "default") != "default"
    ]
    if not ignored:
        return []
    return [
        checks.Warning(
            f"settings.LOGGING is defined, so {' and '.join(ignored)} "
            f"{'is' if len(ignored) == 1 else 'are'} not applied: the project's handlers and formatters write "
            'every line (LOG_CONFIGURE is "auto").',
            hint='Set DJANGO_OBSERVE["LOG_CONFIGURE"] = "on" to use LOG_LEVEL/LOG_FORMAT, or use '
            'django_observe.logging.JSONFormatter/TextFormatter in your LOGGING; add "django_observe.W006" to '
            "SILENCED_SYSTEM_CHECKS to keep things as they are.",
            id="django_observe.W006",
        )
    ]


def check_django_prometheus(django_settings: Any, app_names: list[str], config: Any) -> list[checks.CheckMessage]:
    """django-prometheus next to django_observe (docs/metrics.md, "With django-prometheus").

    - W003: its own exporter port is configured while ours is on: two exporters per process, and under
      gunicorn every worker after the first fails to bind it.
    - W004: it is listed before django_observe: its metrics are created before multiprocess mode is set,
      so they never reach the metrics port.
    - W005: ``PROMETHEUS_EXPORT_MIGRATIONS``: one gauge series per process (a ``pid`` label in multiprocess
      mode), which sums to a multiple of the real count.
    """
    if DJANGO_PROMETHEUS not in app_names or not config.metrics_enabled:
        return []
    found = []
    our_port = config.metrics_port or config.metrics_worker_port
    for name in ("PROMETHEUS_METRICS_EXPORT_PORT", "PROMETHEUS_METRICS_EXPORT_PORT_RANGE"):
        if our_port and getattr(django_settings, name, None):
            found.append(
                checks.Warning(
                    f"{name} starts django-prometheus's own exporter next to django_observe's metrics port "
                    "(METRICS_PORT / METRICS_WORKER_PORT), which already serves django-prometheus's metrics.",
                    hint=f"Remove {name}: with several gunicorn workers they would clash on its port.",
                    id="django_observe.W003",
                )
            )
    observe = app_names.index("django_observe") if "django_observe" in app_names else len(app_names)
    if app_names.index(DJANGO_PROMETHEUS) < observe and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        found.append(
            checks.Warning(
                "django_prometheus is listed before django_observe in INSTALLED_APPS: its metrics are created "
                "before django_observe turns on prometheus_client's multiprocess mode, so under gunicorn or "
                "Celery prefork they never reach the metrics port.",
                hint='List "django_observe" before "django_prometheus", or set PROMETHEUS_MULTIPROC_DIR in '
                "the environment of every process.",
                id="django_observe.W004",
            )
        )
    if getattr(django_settings, "PROMETHEUS_EXPORT_MIGRATIONS", False) and our_port:
        found.append(
            checks.Warning(
                "PROMETHEUS_EXPORT_MIGRATIONS sets django-prometheus's migration gauges in every process at "
                "start-up: under gunicorn or Celery prefork each process exports its own series (label pid), "
                "so summing them multiplies the count, and the series of dead workers stay.",
                hint="Use db_migrations_unapplied / db_migrations_applied (METRICS_MIGRATIONS, one series per "
                "database) and set PROMETHEUS_EXPORT_MIGRATIONS = False, or query max without (pid) (...).",
                id="django_observe.W005",
            )
        )
    return found
