"""Multiprocess aggregation and the exporter on the dedicated metrics port.

Under gunicorn (and uvicorn ``--workers``) and Celery prefork, every process writes its samples to files in a
shared directory (prometheus_client's multiprocess mode); one elected process serves all of them, summed,
on the metrics port. No gunicorn hook is needed:

- the directory is derived from the master's pid, created on first use, and directories of masters
  that are gone are removed;
- election is a lock file: the process holding it serves the port; the others retry now and then, so
  when the serving worker dies a sibling (or its replacement) takes over;
- files of dead processes are handled at scrape time (``mark_process_dead``), keeping counters monotonic.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import ipaddress
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ..security import bearer_token_matches

__all__ = ["Exporter", "enable_multiprocess", "make_app", "multiprocess_dir"]

logger = logging.getLogger("django_observe.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"
_OWNED_MARKER = ".django_observe"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return fh.read().split(") ", 1)[1][:1] != "Z"
    return True


def group_pid(role: str) -> int:
    """The pid that identifies this process group: the gunicorn/uvicorn master, or this Celery worker."""
    if role == "web":
        if "gunicorn.arbiter" in sys.modules:
            return os.getppid()
        if multiprocessing.parent_process() is not None:  # uvicorn --workers spawns children
            return os.getppid()
    return os.getpid()


def multiprocess_dir(base: str | None, role: str) -> str:
    """``<base>/<group pid>``; removes directories of groups that are gone."""
    root = base or os.path.join(tempfile.gettempdir(), "django_observe_metrics")
    os.makedirs(root, exist_ok=True)
    for entry in os.listdir(root):
        if entry.isdigit() and not _alive(int(entry)) and int(entry) != os.getpid():
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
    path = os.path.join(root, str(group_pid(role)))
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, _OWNED_MARKER), "a"):
        pass
    return path


def enable_multiprocess(path: str) -> bool:
    """Point prometheus_client at ``path``; must run before it creates any metric value.

    Returns False (and logs once) when prometheus_client already chose single-process mode.
    """
    os.environ[ENV] = path
    values = sys.modules.get("prometheus_client.values")
    if values is not None and values.ValueClass.__name__ != "MmapedValue":
        logger.warning(
            "prometheus_client was imported before django_observe could enable multiprocess mode; "
            "list django_observe before other metrics apps or set %s yourself",
            ENV,
        )
        return False
    return True


def _mark_dead_processes(path: str) -> None:
    from prometheus_client import multiprocess

    pids = set()
    for name in glob.glob(os.path.join(path, "*.db")):
        stem = os.path.basename(name)[:-3]
        pid = stem.rsplit("_", 1)[-1]
        if pid.isdigit():
            pids.add(int(pid))
    for pid in pids:
        if not _alive(pid):
            multiprocess.mark_process_dead(pid, path)


def make_registry(path: str | None, extra: Iterable[Any] = ()) -> Any:
    """A fresh registry per scrape: the multiprocess files (or the default registry) plus ``extra`` collectors."""
    from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector

    if path is None:
        registry = REGISTRY
    else:
        _mark_dead_processes(path)
        from .exemplars import MultiProcessExemplarCollector

        registry = CollectorRegistry()
        registry.register(MultiProcessExemplarCollector(path, _alive))
        extra = list(extra)
        if not any(getattr(c, "covers_process_metrics", False) for c in extra):
            ProcessCollector(registry=registry)  # the serving process itself
    for collector in extra:
        with contextlib.suppress(ValueError):
            registry.register(collector)
    return registry


def _client_allowed(remote: str, networks: tuple[Any, ...]) -> bool:
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _token_ok(header: str, token: str | None) -> bool:
    return token is None or bearer_token_matches(header, token)


def make_app(path: str | None, token: str | None, allowed: Iterable[str], extra: Callable[[], Iterable[Any]]):
    """The WSGI app of the metrics port: protection, then prometheus_client's exposition (text or OpenMetrics)."""
    from prometheus_client import make_wsgi_app

    networks = tuple(ipaddress.ip_network(net, strict=False) for net in allowed)

    def app(environ, start_response):
        if not _client_allowed(environ.get("REMOTE_ADDR", ""), networks):
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"forbidden\n"]
        if not _token_ok(environ.get("HTTP_AUTHORIZATION", ""), token):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"unauthorized\n"]
        return make_wsgi_app(make_registry(path, extra()))(environ, start_response)

    return app


class Exporter:
    """Serves the metrics port from whichever process of the group holds the lock."""

    def __init__(self, address: str, port: int, app: Any, lock_dir: str | None, retry_seconds: float = 5.0):
        self.address, self.port, self.app, self.retry_seconds = address, port, app, retry_seconds
        self.lock_path = os.path.join(lock_dir, f"exporter-{port}.lock") if lock_dir else None
        self.server = None
        self._lock_file = None
        self._warned = False

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="django_observe_metrics", daemon=True)
        thread.start()

    def _elected(self) -> bool:
        if self.lock_path is None:
            return True
        if self._lock_file is None:
            self._lock_file = open(self.lock_path, "a")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _run(self) -> None:
        import time

        while self.server is None:
            if self._elected() and self._bind():
                break
            if self.lock_path is None:
                return  # single process: one try only
            time.sleep(self.retry_seconds)
        self.server.serve_forever()

    def _bind(self) -> bool:
        from wsgiref.simple_server import WSGIRequestHandler, make_server

        from prometheus_client.exposition import ThreadingWSGIServer

        class Quiet(WSGIRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

        try:
            self.server = make_server(self.address, self.port, self.app, ThreadingWSGIServer, handler_class=Quiet)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
                logger.warning(
                    "metrics port %s:%s is %s; metrics are not exported by this process",
                    self.address,
                    self.port,
                    reason,
                )
            return False
        logger.info("serving metrics on %s:%s", self.address, self.port)
        return True
