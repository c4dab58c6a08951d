"""Helpers shared by the integration tests: real services, real subprocesses.

Services: the machine's PostgreSQL (127.0.0.1:5432), Redis (127.0.0.1:6379) and
RabbitMQ (127.0.0.1:5672). Outside CI a missing service, binary, optional library,
IPv6 or root skips the test; with ``CI=true`` it fails (the ``require_*`` helpers).

Fault tests get their own throwaway servers (``throwaway_redis``,
``throwaway_postgres``) and kill those, never the shared ones.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672


# --- needing something: the one way a test may skip (CONTRIBUTING.md, "Writing tests")
#
# Every test that needs something this machine may lack (a service, a binary, an optional library, IPv6, root,
# os.fork) asks for it with one of the require_* helpers below. They all end in missing(): locally the test
# skips, with CI=true it fails, naming what was missing. Never call pytest.skip/importorskip or use
# skip/skipif marks directly (tests/unit/test_suite_honesty.py refuses them); a skip that CI must tolerate
# goes, with its reason, in tests/allowed_skips.txt (tests/ci_skips.py fails a CI run on any other skip).


def missing(reason: str) -> NoReturn:
    """Skip locally, fail in CI: something a test needs is not there."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing requirement is a failure, not a skip)")
    pytest.skip(reason, allow_module_level=True)


def require_module(name: str) -> ModuleType:
    """Import an optional library the test needs (``openai = require_module("openai")``)."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"the optional library {name!r} cannot be imported ({exc}); pip install -e '.[all,dev]'")


def require_ipv6() -> None:
    """The machine can bind the IPv6 loopback ``::1`` (containers without IPv6 cannot)."""
    if not socket.has_ipv6:
        missing("this Python has no IPv6 support")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        missing(f"this machine has no IPv6 loopback (::1 cannot be bound: {exc})")


def require_root() -> None:
    """The test runs as root (chown to another user, runuser)."""
    if os.geteuid() != 0:
        missing("this test needs root (it changes a file's owner to another user)")


def require_fork() -> None:
    """``os.fork`` exists (not on Windows)."""
    if not hasattr(os, "fork"):
        missing("this platform has no os.fork")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def require_service(name: str, host: str, port: int) -> None:
    """A TCP service (PostgreSQL, Redis, RabbitMQ) answers at ``host:port``."""
    if not port_open(host, port):
        missing(f"{name} is not reachable at {host}:{port}")


def require_binary(name: str) -> str:
    """The path of an executable on PATH (or PostgreSQL's bin directory)."""
    path = shutil.which(name) or next((str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None)
    if path is None:
        missing(f"{name} is not installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {host}:{port} opened")
        if port_open(host, port, 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not open within {timeout}s")


def run_python(code: str, *args: str, env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``python -c code *args`` in a fresh interpreter at the checkout's root, with ``env``; fails the test,
    with the end of its stderr, unless it exits 0."""
    result = subprocess.run(
        [PYTHON, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def finishes(function, timeout: float = 60.0):
    """``function()``'s result, called in a thread; fails if it is still running after ``timeout``.

    For code that would otherwise hang forever (a check or a read whose own bound is under test): the deadline is
    a generous backstop so a hang fails the test instead of stalling the suite, not a performance threshold.
    """
    import threading

    outcome: dict = {}

    def call() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise AssertionError(f"{getattr(function, '__name__', function)!r} still running after {timeout} s: it hangs")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.1, message="condition"):
    """Poll ``predicate`` until it is true; ``message`` (a str, or a function giving one) names what was awaited."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"{message() if callable(message) else message} not met within {timeout}s (last value: {last!r})"
    )


# --- the shared services


def postgres_url(dbname: str = "postgres") -> str:
    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    return f"postgres://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{dbname}"


def create_postgres_database() -> tuple[str, callable]:
    """A fresh database on the shared server; returns (url, drop)."""
    import psycopg

    require_service("PostgreSQL", POSTGRES_HOST, POSTGRES_PORT)
    name = f"observe_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(
        f"host={POSTGRES_HOST} port={POSTGRES_PORT} user=postgres dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(
            f"host={POSTGRES_HOST} port={POSTGRES_PORT} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"postgres://postgres@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}", drop


def redis_url(db: int = 0) -> str:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"


def amqp_url() -> str:
    require_service("RabbitMQ", RABBIT_HOST, RABBIT_PORT)
    return f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}//"


# --- throwaway servers for fault tests


class Throwaway:
    """A server process the test owns: ``stop()`` kills it, ``start()`` brings it back on the same port."""

    def __init__(self, argv: list[str], port: int, user: str | None = None, cwd: str | None = None):
        self.argv, self.port, self.user, self.cwd = argv, port, user, cwd
        self.proc: subprocess.Popen | None = None
        self.stale_files: list[str] = []

    def start(self, timeout: float = 30.0) -> None:
        for stale in self.stale_files:
            # A SIGKILLed server whose zombie nobody reaps still "owns" its lock file.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        argv = self.argv
        if self.user and os.geteuid() == 0:
            argv = ["runuser", "-u", self.user, "--", *argv]
        self.proc = subprocess.Popen(
            argv, cwd=self.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for_port("127.0.0.1", self.port, timeout, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while port_open("127.0.0.1", self.port, 0.1) and time.monotonic() < deadline:
            time.sleep(0.05)


@contextlib.contextmanager
def throwaway_redis() -> Iterator[Throwaway]:
    binary = require_binary("redis-server")
    port = free_port()
    server = Throwaway([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], port)
    server.url = f"redis://127.0.0.1:{port}/0"
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[Throwaway]:
    """A PostgreSQL cluster from ``initdb`` in a temporary directory, trust auth, on a free port."""
    initdb, postgres = require_binary("initdb"), require_binary("postgres")
    tmp = tempfile.mkdtemp(prefix="observe-pg-")
    data = os.path.join(tmp, "data")
    user = "postgres" if os.geteuid() == 0 else None
    if user:
        shutil.chown(tmp, user)
    prefix = ["runuser", "-u", user, "--"] if user else []
    subprocess.run(
        [*prefix, initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = free_port()
    server = Throwaway([postgres, "-D", data, "-p", str(port), "-h", "127.0.0.1", "-k", tmp, "-F"], port, user=user)
    server.url = f"postgres://postgres@127.0.0.1:{port}/postgres"
    server.stale_files = [os.path.join(data, "postmaster.pid"), os.path.join(tmp, f".s.PGSQL.{port}.lock")]
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# --- the test project in subprocesses


def project_env(**overrides: str) -> dict[str, str]:
    """Environment for a test-project subprocess: embedded defaults unless overridden."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_OBSERVE", "PYTEST_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="testproject.settings",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
        METRICS_PORT="0",
        METRICS_WORKER_PORT="0",
    )  # tests that scrape pass free ports
    for key in (
        "DATABASE_URL",
        "REDIS_URL",
        "CELERY_BROKER_URL",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "OTEL_ENABLED",
        "OPENAI_BASE_URL",
    ):
        env.pop(key, None)
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def manage(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env or project_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def sqlite_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """A migrated SQLite database and a private filesystem broker under ``tmp_path``."""
    env = project_env(SQLITE_PATH=str(tmp_path / "db.sqlite3"), TESTPROJECT_VAR_DIR=str(tmp_path / "var"), **overrides)
    manage("migrate", "-v0", env=env)
    return env


class Server:
    """A server process (gunicorn, uvicorn, runserver, a Celery worker) with captured output."""

    def __init__(self, argv: list[str], env: dict[str, str], port: int | None, log_path: Path):
        self.argv, self.env, self.port, self.log_path = argv, env, port, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if self.port is not None:
            try:
                wait_for_port("127.0.0.1", self.port, timeout, self.proc)
            except Exception as exc:
                raise RuntimeError(f"{self.argv[:3]} did not start: {exc}\n{self.output()[-3000:]}") from exc
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Children left behind in the group (a worker's pool, a command's subprocesses) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def gunicorn(
    env: dict[str, str], log_path: Path, workers: int = 2, extra: tuple[str, ...] = (), prefix: tuple[str, ...] = ()
) -> Server:
    """gunicorn serving the test project; ``prefix`` runs it under a wrapper (``opentelemetry-instrument``)."""
    port = free_port()
    argv = [
        *prefix,
        PYTHON,
        "-m",
        "gunicorn",
        "testproject.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--graceful-timeout",
        "10",
        *extra,
    ]
    return Server(argv, env, port, log_path)


def uvicorn(env: dict[str, str], log_path: Path, extra: tuple[str, ...] = (), access_log: bool = False) -> Server:
    """uvicorn serving the test project, by default with ``--no-access-log`` (the request line says more)."""
    port = free_port()
    argv = [
        PYTHON,
        "-m",
        "uvicorn",
        "testproject.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *(() if access_log else ("--no-access-log",)),
        *extra,
    ]
    return Server(argv, env, port, log_path)


def daphne(env: dict[str, str], log_path: Path, application: str = "testproject.asgi_channels:application") -> Server:
    """daphne serving the test project as a Channels project (HTTP and WebSockets), without its access log."""
    port = free_port()
    argv = [PYTHON, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port), application]
    return Server(argv, env, port, log_path)


def runserver(env: dict[str, str], log_path: Path) -> Server:
    port = free_port()
    argv = [PYTHON, str(ROOT / "manage.py"), "runserver", f"127.0.0.1:{port}", "--noreload"]
    return Server(argv, env, port, log_path)


def celery_worker(env: dict[str, str], log_path: Path, extra: tuple[str, ...] = ()) -> Server:
    """A real Celery worker for the test project; wait for readiness with ``wait_worker_ready``."""
    name = f"test-{uuid.uuid4().hex[:8]}@%h"
    argv = [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "testproject",
        "worker",
        "--loglevel",
        "INFO",
        "--hostname",
        name,
        "--concurrency",
        "2",
        "--without-gossip",
        "--without-mingle",
        *extra,
    ]
    return Server(argv, env, None, log_path)


@contextlib.contextmanager
def running_worker(env: dict[str, str], log_path: Path, extra: tuple[str, ...] = ()) -> Iterator[Server]:
    """A Celery worker started and ready for the block, stopped after it (its output stays readable)."""
    worker = celery_worker(env, log_path, extra)
    worker.start()
    try:
        wait_worker_ready(worker)
        yield worker
    finally:
        worker.stop()


def wait_processes_loaded(ready_dir: Path, count: int, timeout: float = 30.0) -> None:
    """Wait until ``count`` processes of the test project finished ``django.setup()`` (``TESTPROJECT_READY_DIR``)."""

    def alive(pid: int) -> bool:  # the files of finished commands (migrate) do not count
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True

    def loaded() -> bool:
        return ready_dir.is_dir() and sum(alive(int(p.name)) for p in ready_dir.iterdir()) >= count

    wait_until(loaded, timeout, message="workers loaded")


def tracing_to(endpoint: str) -> dict[str, str]:
    """Environment for a traced test project exporting to ``endpoint`` (an OTLP receiver), flushing fast."""
    return {"OTEL_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"}


def celery_beat(env: dict[str, str], log_path: Path, schedule: Path) -> Server:
    """A real ``celery beat`` for the test project, its schedule state in ``schedule``."""
    argv = [PYTHON, "-m", "celery", "-A", "testproject", "beat", "--loglevel", "INFO", "--schedule", str(schedule)]
    return Server(argv, env, None, log_path)


def db_worker(env: dict[str, str], log_path: Path, extra: tuple[str, ...] = ()) -> Server:
    """The database backend's worker of Django's tasks framework (``manage.py db_worker``, every queue)."""
    argv = [
        PYTHON,
        str(ROOT / "manage.py"),
        "db_worker",
        "--queue-name",
        "*",
        "--interval",
        "0.2",
        "--no-startup-delay",
        "--no-reload",
        *extra,
    ]
    return Server(argv, env, None, log_path)


def json_lines(text: str) -> list[dict]:
    """The JSON log lines of a process's output (other lines skipped)."""
    import json

    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
    return lines


def wait_worker_ready(worker: Server, timeout: float = 30.0) -> None:
    wait_until(
        lambda: " ready." in worker.output() or (worker.proc and worker.proc.poll() is not None),
        timeout,
        message="celery worker ready",
    )
    if worker.proc.poll() is not None:
        raise RuntimeError(f"celery worker exited:\n{worker.output()[-3000:]}")


def listening_ports(server: Server) -> set[int]:
    """TCP ports a server process and its children listen on."""
    import psutil

    root = psutil.Process(server.proc.pid)
    ports = set()
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            ports |= {c.laddr.port for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
    return ports
