"""Multiprocess aggregation and the exporter on the dedicated metrics port.

Under gunicorn (and uvicorn ``--workers``) and Celery prefork, every process writes its samples to files in a
shared directory (prometheus_client's multiprocess mode); one elected process serves all of them, summed,
on the metrics port. No gunicorn hook is needed:

- the directory is derived from the master's pid (so every worker of a master finds the same one without
  talking to it), created on first use, and directories of masters that are gone are removed; the default
  base directory is private to the user (mode 0700, refused when another user owns it or can write to it);
- election is a lock file: the process holding it serves the port; the others retry now and then, so
  when the serving worker dies a sibling (or its replacement) takes over;
- files of dead processes are merged at scrape time and when a process starts (``storage.compact``),
  keeping counters monotonic and the directory bounded.

The port's server is prometheus_client's (a threading WSGI server, address family chosen like
``start_wsgi_server``), with two bounds the library lacks: a timeout on every connection and a cap on
connections served at once (further ones wait in the listen backlog).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import io
import ipaddress
import logging
import multiprocessing
import os
import shutil
import socket
import socketserver
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from typing import IO, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from .. import forking
from ..security import bearer_token_matches

__all__ = [
    "Access",
    "Exporter",
    "MetricsServer",
    "bind_family",
    "enable_multiprocess",
    "make_app",
    "multiprocess_dir",
    "render",
    "take_group_lock",
]

logger = logging.getLogger("django_observe.metrics")

ENV = "PROMETHEUS_MULTIPROC_DIR"
_OWNED_MARKER = ".django_observe"
_BASE_NAME = "django_observe_metrics"


def take_group_lock(path: str, held: IO[str] | None) -> IO[str] | None:
    """Election within a process group: the process whose open file holds an exclusive ``flock`` on ``path``
    is elected (the metrics port, the OTLP metrics push). The lock goes with the process: when it dies, the
    kernel releases it and the next sibling to try takes it.

    Args:
        path: the lock file in the group's multiprocess directory (created if missing).
        held: what the previous call returned (None the first time, or after a failed try).

    Returns:
        The open file holding the lock (``held`` itself once elected; keep it open for the process's life),
        or None when another process holds it (try again later).

    Raises:
        OSError: the lock file cannot be opened.
    """
    if held is not None:
        return held
    lock_file = open(path, "a")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock_file.close()
        return None
    return lock_file


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie does not)."""
    return _alive(pid)


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


def unsafe_directory(path: str) -> str | None:
    """Why ``path`` may not hold this user's metric files, or None when it may.

    It must be a real directory (not a symbolic link) owned by this user that neither the group nor others
    can write to: whoever can write there can forge or remove the samples, or plant links.
    """
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"cannot be inspected ({exc.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a directory"
    if info.st_uid != os.geteuid():
        return f"is owned by uid {info.st_uid}, not by this process's uid {os.geteuid()}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by its group or by others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _private_directory(path: str) -> str | None:
    """Create ``path`` with mode 0700 unless it exists; why it is unsafe, or None."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    return unsafe_directory(path)


def default_base() -> str:
    """The base directory used when the project sets neither METRICS_MULTIPROC_DIR nor PROMETHEUS_MULTIPROC_DIR.

    ``$XDG_RUNTIME_DIR/django_observe_metrics`` when that runtime directory is set and private, else
    ``<temp dir>/django_observe_metrics-<uid>``: a per-user name, so users do not share (or fight over) one.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and unsafe_directory(runtime) is None:
        return os.path.join(runtime, _BASE_NAME)
    return os.path.join(tempfile.gettempdir(), f"{_BASE_NAME}-{os.geteuid()}")


def inherited_dir(base: str | None) -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` from the environment, when it applies to this project: the directory a parent
    (gunicorn's master, Celery's main process) chose for its group, or one the project set itself. A value
    outside the project's METRICS_MULTIPROC_DIR (left in the environment by an unrelated parent, such as a
    shell or a test runner that ran another project) is ignored: the setting names where this project's
    metrics go."""
    path = os.environ.get(ENV)
    if not path or not base:
        return path or None
    base, found = os.path.realpath(base), os.path.realpath(path)
    return path if os.path.commonpath([base, found]) == base else None


def multiprocess_dir(base: str | None, role: str) -> str | None:
    """``<base>/<group pid>``; removes directories of groups that are gone.

    ``base`` is the project's METRICS_MULTIPROC_DIR, created if missing; without one the directory goes under
    :func:`default_base`, which must be safe (:func:`unsafe_directory`). When it is not, the error is logged
    and this returns a fresh private directory if this process leads its group (its children inherit the
    choice through the environment), or None (single-process metrics) in a worker whose siblings could not
    find the same fresh directory.
    """
    if base:
        os.makedirs(base, exist_ok=True)
        root = base
    else:
        root = default_base()
        problem = _private_directory(root)
        if problem is not None:
            leader = group_pid(role) == os.getpid()
            logger.error(
                "refusing the multiprocess metrics directory %s: it %s; another local user could read or forge "
                "the metrics. Remove it, or set METRICS_MULTIPROC_DIR to a directory only this user can write. "
                "Using %s meanwhile.",
                root,
                problem,
                "a fresh private directory" if leader else "single-process metrics (this process's own samples)",
            )
            if not leader:
                return None
            root = tempfile.mkdtemp(prefix=f"{_BASE_NAME}-")
    for entry in os.listdir(root):
        if entry.isdigit() and not _alive(int(entry)) and int(entry) != os.getpid():
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
    path = os.path.join(root, str(group_pid(role)))
    os.makedirs(path, mode=0o700, exist_ok=True)
    with open(os.path.join(path, _OWNED_MARKER), "a"):
        pass
    return path


def enable_multiprocess(path: str | None) -> bool:
    """Point prometheus_client at ``path``; must run before it creates any metric value.

    Returns False when there is no directory, or (logging once) when prometheus_client already chose
    single-process mode.
    """
    if path is None:
        return False
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
    """Merge the files of dead processes (``storage.compact``): the directory stays bounded however often
    workers are recycled, counters stay monotonic."""
    from .storage import compact

    compact(path, _alive)


def make_registry(path: str | None, extra: Iterable[Any] = ()) -> Any:
    """A fresh registry per scrape: the multiprocess files (or the default registry) plus ``extra`` collectors.

    In multiprocess mode the families an extra collector declares (``families.DeclaredFamilies``) are announced
    even before any process has a sample of them, as the single-process registry does.
    """
    from prometheus_client import REGISTRY, CollectorRegistry, ProcessCollector

    if path is None:
        registry = REGISTRY
    else:
        _mark_dead_processes(path)
        from .exemplars import MultiProcessExemplarCollector
        from .families import DeclaredFamilies

        registry = CollectorRegistry()
        extra = list(extra)
        declared = [family for c in extra if isinstance(c, DeclaredFamilies) for family in c.declared]
        registry.register(MultiProcessExemplarCollector(path, _alive, declared))
        if not any(getattr(c, "covers_process_metrics", False) for c in extra):
            ProcessCollector(registry=registry)  # the serving process itself
    for collector in extra:
        with contextlib.suppress(ValueError):
            registry.register(collector)
    return registry


def render(path: str | None, extra: Iterable[Any], accept: str) -> tuple[bytes, str]:
    """One scrape: ``(body, content type)`` of the metrics of ``path`` (None: this process) and ``extra``,
    in the exposition format ``accept`` asks for (OpenMetrics or Prometheus text)."""
    from prometheus_client.exposition import choose_encoder

    encoder, content_type = choose_encoder(accept)
    return encoder(make_registry(path, extra)), content_type


@dataclasses.dataclass(frozen=True)
class Access:
    """Who may scrape: a bearer token and/or client networks (neither: everyone)."""

    token: str | None = None
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def build(cls, token: str | None, allowed: Iterable[str]) -> Access:
        return cls(token, tuple(ipaddress.ip_network(net, strict=False) for net in allowed))

    def client_allowed(self, remote: str) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        # On a dual-stack socket IPv4 clients arrive as ::ffff:a.b.c.d; an IPv4 allowlist must still match them.
        mapped = getattr(address, "ipv4_mapped", None)
        return any(address in network or (mapped is not None and mapped in network) for network in self.networks)

    def token_ok(self, authorization: str) -> bool:
        return self.token is None or bearer_token_matches(authorization, self.token)

    def refusal(self, remote: str, authorization: str) -> int | None:
        """403 (client address not allowed), 401 (missing or wrong token) or None (may scrape)."""
        if not self.client_allowed(remote):
            return 403
        if not self.token_ok(authorization):
            return 401
        return None


def make_app(path: str | None, token: str | None, allowed: Iterable[str], extra: Callable[[], Iterable[Any]]):
    """The WSGI app of the metrics port: protection, then prometheus_client's exposition (text or OpenMetrics)."""
    from prometheus_client import make_wsgi_app

    access = Access.build(token, allowed)

    def app(environ, start_response):
        refused = access.refusal(environ.get("REMOTE_ADDR", ""), environ.get("HTTP_AUTHORIZATION", ""))
        if refused == 403:
            start_response("403 Forbidden", [("Content-Type", "text/plain")])
            return [b"forbidden\n"]
        if refused == 401:
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"unauthorized\n"]
        return make_wsgi_app(make_registry(path, extra()))(environ, start_response)

    return app


def bind_family(address: str, port: int) -> tuple[socket.AddressFamily, str]:
    """Address family and bind address for ``address``, chosen as prometheus_client's ``start_wsgi_server`` does
    (``_get_best_family``: the first passive ``getaddrinfo`` answer), so ``::``, ``::1`` and host names bind.

    ``""`` means every IPv4 address, as it did for the stdlib server.
    """
    infos = socket.getaddrinfo(address or "0.0.0.0", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    return family, str(sockaddr[0])


class _DeadlineReader(io.RawIOBase):
    """Socket reads that give up at a deadline, however slowly the client trickles bytes."""

    def __init__(self, sock: socket.socket, deadline: float | None):
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the client did not send its request in time")
            self.sock.settimeout(remaining)
        return self.sock.recv_into(buffer)


class _Handler(WSGIRequestHandler):
    """prometheus_client's silent handler; the request line and headers must arrive within ``timeout``."""

    timeout = 10.0

    def setup(self) -> None:
        super().setup()  # applies self.timeout to the socket
        self.rfile.close()
        self._reader = _DeadlineReader(self.connection, time.monotonic() + self.timeout)
        self.rfile = io.BufferedReader(self._reader)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        # The request is in: from here on the timeout bounds each read or write, not the whole exchange.
        self._reader.deadline = None
        self.connection.settimeout(self.timeout)
        return parsed

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsServer(socketserver.ThreadingMixIn, WSGIServer):
    """prometheus_client's ``ThreadingWSGIServer`` bound like its ``start_wsgi_server``, with a timeout on each
    connection and at most ``max_connections`` served at once: while all are busy, new connections wait in the
    listen backlog (no thread, no read) until one finishes or times out.

    The unspecified IPv6 address ``::`` is bound dual-stack (IPv4 clients too), whatever the system default.
    """

    daemon_threads = True
    request_queue_size = 128  # connections beyond the cap wait here (the stdlib's 5 would drop a burst's SYNs)
    slot_wait_seconds = 0.5  # how long the accept loop waits for a free slot before it checks for shutdown

    def __init__(
        self,
        address: str,
        port: int,
        app: Any,
        *,
        connection_timeout: float = 10.0,
        max_connections: int = 16,
        client_allowed: Callable[[str], bool] | None = None,
    ):
        self.client_allowed = client_allowed
        if not connection_timeout > 0:
            raise ValueError(f"connection_timeout must be a positive number of seconds, not {connection_timeout!r}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections!r}")
        self.address_family, host = bind_family(address, port)
        self.connection_timeout, self.max_connections = connection_timeout, max_connections
        self._slots = threading.Semaphore(max_connections)
        handler = type("MetricsRequestHandler", (_Handler,), {"timeout": connection_timeout})
        super().__init__((host, port), handler, bind_and_activate=False)
        try:
            if self.address_family == socket.AF_INET6 and ipaddress.ip_address(host.split("%")[0]).is_unspecified:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise
        self.set_app(app)

    def get_request(self) -> tuple[Any, Any]:
        if not self._slots.acquire(timeout=self.slot_wait_seconds):
            raise OSError(errno.EBUSY, "every connection slot is busy")  # the loop polls again; nothing accepted
        try:
            return super().get_request()
        except BaseException:
            self._slots.release()
            raise

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """The allowlist (``METRICS_ALLOWED_IPS``) at accept time: a client off it is disconnected before a
        byte of its request is read, so it never holds a connection slot or a thread (16 slow clients off the
        list used to hold every slot while they trickled their requests)."""
        if self.client_allowed is None or self.client_allowed(str(client_address[0])):
            return True
        logger.debug("metrics connection from %s refused: not in METRICS_ALLOWED_IPS", client_address[0])
        return False

    def shutdown_request(self, request: Any) -> None:
        # Called exactly once for every connection get_request accepted, whatever happened to it.
        try:
            super().shutdown_request(request)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # timeouts, resets: the client's problem, not ours
            logger.debug("metrics connection from %s closed: %s", client_address[0], error)
        else:
            logger.warning("metrics request from %s failed", client_address[0], exc_info=True)


class Exporter:
    """Serves the metrics port from whichever process of the group holds the lock."""

    def __init__(
        self,
        address: str,
        port: int,
        app: Any,
        lock_dir: str | None,
        retry_seconds: float = 5.0,
        *,
        connection_timeout: float = 10.0,
        max_connections: int = 16,
        client_allowed: Callable[[str], bool] | None = None,
    ):
        self.address, self.port, self.retry_seconds = address, port, retry_seconds
        # The first scrape imports what the collectors read (a gunicorn master forks while it serves).
        self.app = forking.forks_wait_for_first_call(app)
        self.connection_timeout, self.max_connections = connection_timeout, max_connections
        self.client_allowed = client_allowed
        self.lock_path = os.path.join(lock_dir, f"exporter-{port}.lock") if lock_dir else None
        self.server: MetricsServer | None = None
        self._lock_file: Any = None
        self._warned = False
        self._stopped = threading.Event()

    def start(self) -> None:
        thread = threading.Thread(target=self._run, name="django_observe_metrics", daemon=True)
        thread.start()

    def stop(self) -> None:
        """Stop serving and close the port (if this process serves it)."""
        self._stopped.set()
        server = self.server
        if server is not None:
            server.shutdown()
            server.server_close()

    def _elected(self) -> bool:
        if self.lock_path is None:
            return True
        self._lock_file = take_group_lock(self.lock_path, self._lock_file)
        return self._lock_file is not None

    def _run(self) -> None:
        while not self._stopped.is_set():
            if self._elected() and self._bind():
                assert self.server is not None
                self.server.serve_forever()
                return
            if self.lock_path is None:
                return  # single process: one try only
            self._stopped.wait(self.retry_seconds)

    def _bind(self) -> bool:
        try:
            self.server = MetricsServer(
                self.address,
                self.port,
                self.app,
                connection_timeout=self.connection_timeout,
                max_connections=self.max_connections,
                client_allowed=self.client_allowed,
            )
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
