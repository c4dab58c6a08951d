"""``"django_observe.console"`` in ``INSTALLED_APPS`` (after ``"django_observe"``) turns the console on."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["ConsoleConfig"]


class ConsoleConfig(AppConfig):
    name = "django_observe.console"
    label = "observe_console"
    verbose_name = "django-observe console"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from .checks import check_console_database

        checks.register(check_console_database, "django_observe")
