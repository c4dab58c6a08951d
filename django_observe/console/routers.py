"""``DATABASE_ROUTERS = ["django_observe.console.routers.ConsoleRouter"]``: the console's tables on its own alias.

Only needed when ``DJANGO_OBSERVE["CONSOLE_DATABASE"]`` is not ``"default"``; then run
``manage.py migrate observe_console --database=<alias>``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConsoleRouter"]

LABEL = "observe_console"


def _alias() -> str:
    from ..runtime import current

    runtime = current()
    return runtime.config.console_database if runtime is not None else "default"


class ConsoleRouter:
    """Reads, writes and migrations of the console's models go to ``CONSOLE_DATABASE``; nothing else does."""

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return _alias() if model._meta.app_label == LABEL else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        return _alias() if model._meta.app_label == LABEL else None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        if app_label == LABEL:
            return db == _alias()
        return None
