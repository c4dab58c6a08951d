"""The hooks of the gunicorn configuration ``gunicorn -c python:django_observe.gunicorn proj.wsgi``.

Nothing in it is required (metrics aggregation, exporter election, correlation, tracing and worker logs all
work without gunicorn hooks). It adds what only the master can do:

- the master's own lines (``Starting gunicorn``, ``Booting worker``, ...) in the configured ``LOG_FORMAT``;
- ``child_exit``: a dead worker's live-gauge files are removed at once (not only at the next scrape);
- ``worker_exit``: buffered spans are flushed when a worker stops (``max_requests``, graceful shutdown);
- ``on_starting`` and ``on_reload``: gunicorn's access log stays as gunicorn's own settings have it (off
  unless ``--access-logfile`` is given), although a logging configuration is given.

In an existing ``gunicorn.conf.py``::

    from django_observe.gunicorn import *  # noqa: F401,F403
    workers = 4
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Callable
from typing import Any

from .. import conf, shutdown
from ..logging.setup import level_number, switch_off
from ..runtime import Runtime
from . import _uses

__all__ = [
    "GunicornIntegration",
    "child_exit",
    "integration",
    "logging_config",
    "on_reload",
    "on_starting",
    "worker_exit",
]


def logging_config() -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: the master's own lines in the configured ``LOG_FORMAT``."""
    try:
        from django.conf import settings

        settings.LOG_FORMAT  # noqa: B018 - fails without DJANGO_SETTINGS_MODULE
        source: Any = settings
    except Exception:
        source = types.SimpleNamespace(DEBUG=False)
    config = conf.load_config(source, os.environ)
    formatter = (
        "django_observe.logging.JSONFormatter"
        if config.log_format == "json"
        else ("django_observe.logging.TextFormatter")
    )
    level = level_number(config.log_level)  # the workers' mapping (LOG_LEVEL "trace" included)
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"observe": {"()": formatter}},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout", "formatter": "observe"}
        },
        "root": {"handlers": ["stdout"], "level": level},
        "loggers": {
            "gunicorn.error": {"handlers": [], "propagate": True, "level": level},
            "gunicorn.access": {"handlers": [], "propagate": True, "level": level},
        },
    }


def on_starting(server: Any) -> None:
    # gunicorn writes access lines whenever a logging configuration is given, as this module gives one; without
    # --access-logfile nobody asked for them (the request line says more). Switched off as gunicorn leaves it
    # without a configuration; the workers' logging set-up keeps it so (logging/setup.py).
    if server.cfg.accesslog is None:
        # gunicorn still calls it: above CRITICAL, it returns before a record is made
        switch_off("gunicorn.access", logging.CRITICAL + 1)


def on_reload(server: Any) -> None:
    on_starting(server)  # a reload runs gunicorn's logging set-up again


def child_exit(server: Any, worker: Any) -> None:
    # Workers keep their files in <base>/<master pid>, the base chosen as the exporter chooses it.
    from ..metrics.exporter import ENV, default_base

    base = os.environ.get("METRICS_MULTIPROC_DIR") or default_base()
    path = os.environ.get(ENV) or os.path.join(base, str(os.getpid()))
    if os.path.isdir(path):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)


def worker_exit(server: Any, worker: Any) -> None:
    shutdown.begin()  # the flushes below get at most OTEL_EXPORT_SHUTDOWN_TIMEOUT seconds each
    _bound.flush_spans()
    from ..logging.otlp import flush_all

    flush_all()


def _nothing() -> None:
    pass


class _Bound:
    """What the worker hooks need of the runtime, bound by :meth:`GunicornIntegration.install`."""

    __slots__ = ("flush_spans",)

    def __init__(self, flush_spans: Callable[[], None] = _nothing) -> None:
        self.flush_spans = flush_spans


_bound = _Bound()


class GunicornIntegration:
    """The ``gunicorn`` row: hands the worker hooks of this configuration module what they need.

    The hooks themselves are gunicorn's contract (it calls the functions of its configuration module); nothing
    of gunicorn is patched.
    """

    name = "gunicorn"

    def available(self, runtime: Runtime) -> bool:
        """This process is a gunicorn worker (:func:`integrations._uses.gunicorn`)."""
        return _uses.gunicorn(runtime)

    def install(self, runtime: Runtime) -> None:
        """``worker_exit`` flushes ``runtime``'s buffered spans."""
        global _bound
        _bound = _Bound(runtime.tracing.flush if runtime.tracing is not None else _nothing)

    def uninstall(self) -> None:
        global _bound
        _bound = _Bound()


integration = GunicornIntegration()
