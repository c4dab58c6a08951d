"""What kind of process this is: web server, Celery worker, or a one-off command."""

from __future__ import annotations

import os
import sys

__all__ = ["is_management_command", "process_role"]

_COMMANDS = {"manage.py", "django-admin", "django-admin.py"}
# Management commands that are long-running task workers (they serve METRICS_WORKER_PORT).
WORKER_COMMANDS = frozenset({"db_worker", "rqworker", "rqworker-pool"})


def is_management_command(argv: list[str] | None = None) -> bool:
    """Whether this process runs ``manage.py``, ``django-admin`` or ``python -m django``."""
    argv = sys.argv if argv is None else argv
    if not argv:
        return False
    name = os.path.basename(argv[0])
    # python -m django: .../site-packages/django/__main__.py (a path that merely contains "django", such as
    # /srv/django-shop/.venv/.../gunicorn/__main__.py, is not one)
    return name in _COMMANDS or (name == "__main__.py" and os.path.basename(os.path.dirname(argv[0])) == "django")


def process_role(argv: list[str] | None = None) -> str:
    """``web`` (gunicorn, uvicorn, runserver's serving child, other WSGI/ASGI hosts), ``worker``
    (Celery worker, ``manage.py db_worker`` of Django's tasks framework, ``rq worker``, ``manage.py rqworker``),
    ``beat`` (``celery beat``), or ``command`` (migrate, shell, test, celery inspect, ...)."""
    argv = sys.argv if argv is None else argv
    prog = os.path.basename(argv[0]) if argv else ""
    if prog == "__main__.py":  # python -m gunicorn / uvicorn / celery
        prog = os.path.basename(os.path.dirname(argv[0]))
    if prog in {"gunicorn", "uvicorn", "daphne", "hypercorn", "granian", "uwsgi"} or "gunicorn" in prog:
        return "web"
    if prog == "rq" and ("worker" in argv[1:] or "worker-pool" in argv[1:]):  # RQ's own commands
        return "worker"
    if prog == "celery" or prog.startswith("celery"):
        if "worker" in argv[1:]:
            return "worker"
        return "beat" if "beat" in argv[1:] else "command"
    if is_management_command(argv):
        if len(argv) > 1 and argv[1] == "runserver":
            return "web" if os.environ.get("RUN_MAIN") == "true" or "--noreload" in argv else "command"
        if len(argv) > 1 and argv[1] in WORKER_COMMANDS:
            return "worker"
        return "command"
    if "mod_wsgi" in sys.modules or "uwsgi" in sys.modules:
        return "web"
    return "command"
