"""Whether the project uses a library, decided without importing the library or the row module for it.

``integrations.INTEGRATIONS`` asks these before it imports a deferred row's module (a project that uses
neither Celery nor Channels loads none of our code for them); each row's own ``available()`` answers with
the same function.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = [
    "CONSOLE_APP",
    "LLM_SDKS",
    "TASK_FRAMEWORKS",
    "celery",
    "channels",
    "console",
    "console_installed",
    "django_tasks",
    "gunicorn",
    "importable",
    "llm_sdks",
    "rq",
    "task_frameworks",
]

CONSOLE_APP = "django_observe.console"
TASK_FRAMEWORKS = ("django.tasks", "django_tasks")  # Django 6's own, then the backport
LLM_SDKS = ("openai", "anthropic")


def importable(name: str) -> bool:
    """``name`` is imported already, or installed (found without importing it)."""
    return name in sys.modules or importlib.util.find_spec(name) is not None


def celery(runtime: Runtime) -> bool:
    """``celery`` imported (a project's Celery app is created when its package loads, a worker imports it
    first) or ``CELERY_APP`` set."""
    return "celery" in sys.modules or bool(runtime.config.celery_app)


def channels(runtime: Runtime) -> bool:
    """``"channels"`` in ``INSTALLED_APPS`` or already imported, or ``"daphne"`` in ``INSTALLED_APPS`` (all
    Channels' installation guide asks for) with Channels installed."""
    from django.apps import apps

    if "channels" in sys.modules or apps.is_installed("channels"):
        return True
    return apps.is_installed("daphne") and importlib.util.find_spec("channels") is not None


def rq(runtime: Runtime) -> bool:
    """``"django_rq"`` in ``INSTALLED_APPS``, or ``rq`` already imported."""
    from django.apps import apps

    return apps.is_installed("django_rq") or "rq" in sys.modules


def task_frameworks() -> list[str]:
    """The task frameworks the project has: ``django.tasks`` when Django has it (6.0+), the ``django_tasks``
    backport when it is in ``INSTALLED_APPS`` (as its installation asks) or already imported."""
    from django.apps import apps

    used = [
        name for name in TASK_FRAMEWORKS if name == "django.tasks" or apps.is_installed(name) or name in sys.modules
    ]
    return [name for name in used if importable(name)]


def django_tasks(runtime: Runtime) -> bool:
    """A task framework is there (:func:`task_frameworks`)."""
    return bool(task_frameworks())


def console_installed() -> bool:
    """Whether ``django_observe.console`` is in ``INSTALLED_APPS``."""
    from django.apps import apps

    return apps.apps_ready and apps.is_installed(CONSOLE_APP)


def console(runtime: Runtime) -> bool:
    """``django_observe.console`` is in ``INSTALLED_APPS``."""
    return console_installed()


def llm_sdks(runtime: Runtime) -> bool:
    """An LLM SDK (openai, anthropic) is installed: its calls are patched when the project imports it, and it
    is never imported for that."""
    return any(importable(name) for name in LLM_SDKS)


def gunicorn(runtime: Runtime) -> bool:
    """This process is a gunicorn worker (its master imported ``gunicorn.arbiter`` before forking it)."""
    return "gunicorn.arbiter" in sys.modules
