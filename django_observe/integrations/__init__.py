"""Everything that patches, wraps or listens to another library, behind one protocol and one table.

Each row of :data:`INTEGRATIONS` implements :class:`Integration`; ``django_observe.wiring`` loops over the
table for every runtime it builds: ``install(runtime)`` for each row whose ``available(runtime)`` is true.
``uninstall()`` puts the library back as it was (tests install, uninstall and check the originals are back).
Patched functions and receivers read what the installed runtime gave them when they run, so a rebuilt
runtime applies without patching twice.

Adding an integration: one module here with a row object, one line in the table, unit tests of its pure
logic and an integration test with the real library (docs/architecture.md, "How to add an integration").
A task queue adapter builds on :class:`django_observe.integrations.tasks.TaskObserver`.

A row for a library a project may not use is :class:`Deferred`: its module is imported when the project uses
the library (``integrations._uses``, which imports neither), never because it is merely installed.

Modules whose name starts with ``_`` are helpers, not rows.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from . import _uses, auth, cache, db, genai, http_clients, models, prometheus_files, sqlcomment

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["INTEGRATIONS", "Deferred", "Integration"]


class Integration(Protocol):
    """One library django_observe hooks into."""

    name: str

    def available(self, runtime: Runtime) -> bool:
        """The project uses the library (``INSTALLED_APPS``, configured, or already imported), never merely
        importable."""

    def install(self, runtime: Runtime) -> None:
        """Connect or patch, for ``runtime`` (idempotent: a rebuilt runtime installs again)."""

    def uninstall(self) -> None:
        """Restore the library's original attributes."""


@dataclasses.dataclass
class Deferred:
    """The row of a module imported only when the project uses its library: ``uses(runtime)`` decides without
    importing it (the module's own row answers ``available()`` with the same function); ``install`` imports
    the module and installs its ``integration``; ``uninstall`` of a module never imported has nothing to undo."""

    name: str
    uses: Callable[[Runtime], bool]

    @property
    def module(self) -> str:
        return f"{__name__}.{self.name}"

    @property
    def row(self) -> Integration:
        """The module's own row (imports the module)."""
        row: Integration = importlib.import_module(self.module).integration
        return row

    def available(self, runtime: Runtime) -> bool:
        return self.uses(runtime)

    def install(self, runtime: Runtime) -> None:
        self.row.install(runtime)

    def uninstall(self) -> None:
        module = sys.modules.get(self.module)
        if module is not None:
            module.integration.uninstall()


INTEGRATIONS: tuple[Integration, ...] = (
    prometheus_files.integration,  # prometheus_client's multiprocess files: reserved blocks, memory when full
    Deferred("celery", _uses.celery),  # Celery signals: correlation, task lines, metrics, heartbeat, beat
    Deferred("django_tasks", _uses.django_tasks),  # django.tasks / django_tasks: Task.enqueue, task signals
    db.integration,  # connection_created: the statement counter (before sqlcomment: it must see bare SQL)
    models.integration,  # post_save and Collector.delete: db_model_operations_total
    auth.integration,  # session user loading, DRF authentication and permissions: authorization_duration
    cache.integration,  # CacheHandler.create_connection: cache_operations_total
    sqlcomment.integration,  # connection_created: sqlcommenter comments (TRACING_SQL_COMMENTER)
    http_clients.integration,  # requests and httpx transports: the outbound correlation header
    Deferred("rq", _uses.rq),  # RQ jobs: Queue.create_job, Job.perform
    Deferred("channels", _uses.channels),  # AsyncConsumer.__call__: WebSocket connections
    genai.integration,  # llm_call's recorders and price table (also the agent, tool and retrieval helpers')
    Deferred("llm_clients", _uses.llm_sdks),  # openai/anthropic SDK calls: tokens, cost, first chunk
    Deferred("gunicorn", _uses.gunicorn),  # the worker hooks of django_observe.gunicorn
    Deferred("console", _uses.console),  # the console's recorder: statements, cache, tasks, lines
)
