"""System checks: ``manage.py check`` reports invalid configuration with ids and hints."""

from __future__ import annotations

from typing import Any

from django.core import checks

from .runtime import current

__all__ = ["check_configuration", "check_urls", "register"]


def register() -> None:
    """Register the checks (``AppConfig.ready()``)."""
    checks.register(check_configuration, "django_observe")
    checks.register(check_urls, "django_observe", checks.Tags.urls)


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
