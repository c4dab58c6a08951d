"""System checks: ``manage.py check`` reports invalid configuration with ids and hints."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.core import checks

from .conf import ObserveConfig
from .runtime import current

__all__ = ["check_configuration", "check_metrics_exposure", "check_urls", "metrics_exposure_warnings", "register"]


def register() -> None:
    """Register the checks (``AppConfig.ready()``)."""
    checks.register(check_configuration, "django_observe")
    checks.register(check_urls, "django_observe", checks.Tags.urls)
    checks.register(check_metrics_exposure, "django_observe", checks.Tags.security)


def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """django_observe.E001: an option has an invalid value (the message names it and what is accepted)."""
    runtime = current()
    return [
        checks.Error(
            error.message,
            hint=error.hint or "See the configuration reference in docs/configuration.md.",
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
    return metrics_exposure_warnings(runtime.config)
