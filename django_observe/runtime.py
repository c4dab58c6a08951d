"""The runtime: everything django_observe builds for this process, in one object, the only singleton.

``AppConfig.ready()`` builds it from the validated configuration (``django_observe.wiring``) and installs it
here; the middleware, the views, the commands and the patched library functions read it at call time with
:func:`current`. Rebuilding it (``wiring.rebuild()``, run on Django's ``setting_changed`` signal for
``DJANGO_OBSERVE``, ``LOG_LEVEL``, ``LOG_FORMAT`` and ``OTEL_ENABLED``) swaps every part at once.

This module imports nothing of django_observe at run time, so every layer may read it.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from .conf import ConfigError, ObserveConfig
    from .correlation import CorrelationPolicy
    from .health.runner import HealthRunner
    from .identity import ServiceIdentity
    from .integrations.http_clients import OutboundPolicy
    from .metrics.setup import MetricsState
    from .queries import QueryCounter
    from .sqlcomment import SqlComments
    from .tracing.setup import TracingState

__all__ = ["Runtime", "current", "get_config", "get_runtime", "install", "uninstall"]


@dataclasses.dataclass(eq=False)
class Runtime:
    """What this process runs.

    Attributes:
        config: the validated configuration.
        role: ``web``, ``worker``, ``beat`` or ``command`` (``django_observe.process.process_role``).
        correlation: which incoming correlation IDs are accepted, and how new ones look.
        identity: the service identity every signal carries (``django_observe.identity``).
        health: the checks and their runner.
        metrics: the catalogue, the request recorder and the scrape-time collectors; None with metrics off.
        tracing: the tracer provider and the request-span factory; None with tracing off.
        queries: per-request and per-task statement counting.
        sql_comments: the sqlcommenter comments on a request's SQL (``TRACING_SQL_COMMENTER``); None when off.
        outbound: who gets the correlation header on outbound HTTP calls; None with propagation off.
        logging_setup: configures the process's logging (None when the project keeps its own); Celery calls
            it when a worker starts.
        errors: configuration errors found at start-up (reported by ``manage.py check``).
        integrations: the libraries wired (``celery``, ``requests``, ...).
    """

    config: ObserveConfig
    role: str
    correlation: CorrelationPolicy
    identity: ServiceIdentity | None = None
    health: HealthRunner | None = None
    metrics: MetricsState | None = None
    tracing: TracingState | None = None
    queries: QueryCounter | None = None
    sql_comments: SqlComments | None = None
    outbound: OutboundPolicy | None = None
    logging_setup: Callable[[], None] | None = None
    errors: tuple[ConfigError, ...] = ()
    integrations: tuple[str, ...] = ()


_lock = threading.Lock()
_current: Runtime | None = None


def current() -> Runtime | None:
    """The installed runtime, or None before ``django.setup()``."""
    return _current


def get_runtime() -> Runtime:
    """The installed runtime.

    Raises:
        RuntimeError: django_observe is not set up (not in ``INSTALLED_APPS``, or ``django.setup()`` not run).
    """
    runtime = _current
    if runtime is None:
        raise RuntimeError('django_observe is not set up: add "django_observe" to INSTALLED_APPS')
    return runtime


def get_config() -> ObserveConfig:
    """The validated configuration of this process (``django_observe.get_config()``).

    Raises:
        RuntimeError: django_observe is not set up.
        ImproperlyConfigured: the configuration is invalid (a management command runs on the defaults then,
            so that ``manage.py check`` can report why; nothing should use them).
    """
    runtime = get_runtime()
    if runtime.errors:
        from django.core.exceptions import ImproperlyConfigured

        problems = "\n".join(f"  - {error.message}" for error in runtime.errors)
        raise ImproperlyConfigured(f"django_observe configuration is invalid:\n{problems}")
    return runtime.config


def install(runtime: Runtime) -> Runtime | None:
    """Make ``runtime`` the current one; returns the one it replaces."""
    global _current
    with _lock:
        previous, _current = _current, runtime
    return previous


def uninstall() -> Runtime | None:
    """Remove the current runtime (tests); returns it."""
    global _current
    with _lock:
        previous, _current = _current, None
    return previous
