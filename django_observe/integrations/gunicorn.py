"""A complete gunicorn configuration: ``gunicorn -c python:django_observe.gunicorn proj.wsgi``.

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
import tempfile
import types
from typing import Any

from .. import conf
from ..logging.setup import switch_off
from ..runtime import current

__all__ = ["child_exit", "logconfig_dict", "on_reload", "on_starting", "worker_exit"]


def _logging_config() -> dict[str, Any]:

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
    level = "DEBUG" if config.log_level == "trace" else config.log_level.upper()
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


logconfig_dict = _logging_config()


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
    # Workers keep their files in <base>/<master pid> (see django_observe.metrics.exporter).
    base = os.environ.get("METRICS_MULTIPROC_DIR") or os.path.join(tempfile.gettempdir(), "django_observe_metrics")
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.path.join(base, str(os.getpid()))
    if os.path.isdir(path):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)


def worker_exit(server: Any, worker: Any) -> None:
    runtime = current()
    if runtime is not None and runtime.tracing is not None:
        runtime.tracing.flush()
    from ..logging.otlp import flush_all

    flush_all()
