"""A complete gunicorn configuration: ``gunicorn -c python:django_observe.gunicorn proj.wsgi``.

The hooks live in ``django_observe.integrations.gunicorn``; this module keeps the documented name, and builds
the logging configuration when gunicorn loads it (not when django_observe is imported).
"""

from .integrations.gunicorn import child_exit, logging_config, on_reload, on_starting, worker_exit

__all__ = ["child_exit", "logconfig_dict", "on_reload", "on_starting", "worker_exit"]

logconfig_dict = logging_config()
