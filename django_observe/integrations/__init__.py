"""Everything that patches, wraps or listens to another library, behind one protocol and one table.

Each row of :data:`INTEGRATIONS` implements :class:`Integration`; ``django_observe.wiring`` loops over the
table for every runtime it builds: ``install(runtime)`` for each row whose ``available(runtime)`` is true.
``uninstall()`` puts the library back as it was (tests install, uninstall and check the originals are back).
Patched functions and receivers read what the installed runtime gave them when they run, so a rebuilt
runtime applies without patching twice.

Adding an integration: one module here with a row object, one line in the table, unit tests of its pure
logic and an integration test with the real library (docs/architecture.md, "How to add an integration").
A task queue adapter builds on :class:`django_observe.integrations.tasks.TaskObserver`.

Modules whose name starts with ``_`` are helpers, not rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from . import (
    auth,
    cache,
    celery,
    channels,
    console,
    db,
    django_tasks,
    genai,
    gunicorn,
    http_clients,
    llm_clients,
    models,
    prometheus_files,
    rq,
    sqlcomment,
)

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["INTEGRATIONS", "Integration"]


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


INTEGRATIONS: tuple[Integration, ...] = (
    prometheus_files.integration,  # prometheus_client's multiprocess files: reserved blocks, memory when full
    celery.integration,  # Celery signals: correlation, task lines, metrics, heartbeat, beat
    django_tasks.integration,  # django.tasks / django_tasks: Task.enqueue and the task signals
    db.integration,  # connection_created: the statement counter (before sqlcomment: it must see bare SQL)
    models.integration,  # post_save and Collector.delete: db_model_operations_total
    auth.integration,  # session user loading, DRF authentication and permissions: authorization_duration
    cache.integration,  # CacheHandler.create_connection: cache_operations_total
    sqlcomment.integration,  # connection_created: sqlcommenter comments (TRACING_SQL_COMMENTER)
    http_clients.integration,  # requests and httpx transports: the outbound correlation header
    rq.integration,  # RQ jobs: Queue.create_job, Job.perform
    channels.integration,  # AsyncConsumer.__call__: WebSocket connections
    genai.integration,  # llm_call's recorders and price table (also the agent, tool and retrieval helpers')
    llm_clients.integration,  # openai and anthropic SDK calls: tokens by type, cost, time to first chunk
    gunicorn.integration,  # the worker hooks of django_observe.gunicorn
    console.integration,  # django_observe.console's recorder: statements, cache, outbound, tasks, log lines
)
