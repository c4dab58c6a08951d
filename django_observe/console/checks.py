"""System checks of the console: its database alias exists and is routed."""

from __future__ import annotations

from typing import Any

from django.core import checks

from ..runtime import current

__all__ = ["check_console_database"]

ROUTER = "django_observe.console.routers.ConsoleRouter"


def check_console_database(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """observe_console.E001: ``CONSOLE_DATABASE`` is not an alias of ``DATABASES``;
    observe_console.W001: another alias than ``default`` without the console's router."""
    from django.db import connections, router

    from .routers import ConsoleRouter

    runtime = current()
    if runtime is None:
        return []
    alias = runtime.config.console_database
    databases = connections.settings  # DATABASES, as Django's connection handler read it
    if alias not in databases:
        accepted = ", ".join(f'"{name}"' for name in databases)
        return [
            checks.Error(
                f'DJANGO_OBSERVE["CONSOLE_DATABASE"] must be one of the DATABASES aliases ({accepted}), got "{alias}"',
                hint="Add the alias to DATABASES, or leave CONSOLE_DATABASE unset for the default database.",
                id="observe_console.E001",
            )
        ]
    if alias != "default" and not any(isinstance(r, ConsoleRouter) for r in router.routers):
        return [
            checks.Warning(
                f'DJANGO_OBSERVE["CONSOLE_DATABASE"] is "{alias}" but DATABASE_ROUTERS does not list {ROUTER}: '
                "the console's tables would be migrated to the default database.",
                hint=f'Add "{ROUTER}" to DATABASE_ROUTERS, then run '
                f"manage.py migrate observe_console --database={alias}.",
                id="observe_console.W001",
            )
        ]
    return []
