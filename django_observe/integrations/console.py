"""Feeding the console's recorder from what the package observes, once per process.

The request end comes from ``ObserveMiddleware`` (``runtime.console``); the rest is wired here, each hook a
narrow call on the recorder that reads :func:`~django_observe.console.recorder.active` when it runs (None:
the console is off and the hook passes through):

- statements: one ``execute_wrapper`` per database connection (timed, normalized, N+1 shapes per request);
- cache: ``get``/``has_key`` hits and misses and every operation's time in the request's timeline;
- outbound HTTP: ``requests`` (``HTTPAdapter.send``) and ``httpx`` (the default transports), by host;
- Celery and Django's tasks framework: enqueues, runs, failures and queue wait, through their signals;
- log lines written while a request runs (a log record factory; kept with the request if it is kept);
- health check results (a listener of the health runner).

Every hook catches its own errors: the console never fails the application.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import sys
import time
from typing import Any

from ..console import recorder as _recorder
from ..console.recorder import ConsoleOptions, ConsoleRecorder, active
from ..runtime import Runtime
from . import _uses
from ._patching import after_import, forget_after_import

__all__ = ["ConsoleIntegration", "console_installed", "integration", "recorder_for"]

APP = _uses.CONSOLE_APP
_clock = time.perf_counter_ns
_installed: set[str] = set()
_patches: list[tuple[Any, str, Any]] = []


console_installed = _uses.console_installed


def recorder_for(config: Any, health: Any = None, withheld: Any = None) -> ConsoleRecorder:
    """The process's recorder configured from ``config``; listens to ``health``'s results; keeps the texts of
    ``withheld`` (``llm.content.WithheldTexts``, content capture off) out of what it stores."""
    rec = _recorder.activate(ConsoleOptions.from_config(config))
    rec.starter = _start_flusher
    rec.withheld = withheld
    if health is not None:
        health.listeners.append(_health_listener)
    return rec


def _start_flusher(rec: ConsoleRecorder) -> Any:
    from ..console.flusher import Flusher  # the database layer, loaded once the apps are ready

    return Flusher.start_for(rec)


def _health_listener(result: Any) -> None:
    rec = active()
    if rec is not None:
        with contextlib.suppress(Exception):
            rec.health(result.id, result.status, result.duration_ms, result.error)


# --- statements


class ConsoleQueryWrapper:
    """Times each statement for the console (its shape, never its parameters)."""

    __slots__ = ()

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        rec = active()
        if rec is None:
            return execute(sql, params, many, context)
        start = _clock()
        try:
            return execute(sql, params, many, context)
        finally:
            end = _clock()
            with contextlib.suppress(Exception):
                rec.query(sql, (end - start) / 1e9, start)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    if not any(isinstance(w, ConsoleQueryWrapper) for w in connection.execute_wrappers):
        connection.execute_wrappers.append(ConsoleQueryWrapper())


def _install_queries() -> None:
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection_created, weak=False, dispatch_uid="django_observe.console.queries")


# --- log lines of the current request


# Not a handler: a second handler on the root logger would turn off the request line's direct path
# (django_observe.logging.request_line), which costs every request a LogRecord and the formatter chain. The
# record factory runs once per record that passed its logger's level, and costs a context variable read
# outside requests.
_previous_factory: Any = None


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    if _recorder.scope_var.get() is not None and record.levelno >= logging.INFO:
        rec = active()
        if rec is not None:
            try:
                rec.log(record, record.getMessage())
            except Exception:  # noqa: S110 - a log line the console cannot keep is not the app's problem
                pass
    return record


def ensure_log_capture() -> None:
    """Keep the log lines written while a request runs (with the request, if it is kept)."""
    global _previous_factory
    current = logging.getLogRecordFactory()
    if current is not _record_factory:
        _previous_factory = current
        logging.setLogRecordFactory(_record_factory)


def _release_log_capture() -> None:
    if logging.getLogRecordFactory() is _record_factory and _previous_factory is not None:
        logging.setLogRecordFactory(_previous_factory)


# --- cache


def _wrap_cache(backend: Any, alias: str) -> None:
    for operation in ("get", "has_key", "set", "add", "delete", "get_many", "set_many", "delete_many", "incr", "decr"):
        method = getattr(backend, operation, None)
        if method is None or getattr(method, "_observe_console", False):
            continue
        setattr(backend, operation, _cache_wrapper(method, alias, operation))


def _cache_wrapper(method: Any, alias: str, operation: str) -> Any:
    sentinel = object()

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        rec = active()
        if rec is None:
            return method(*args, **kwargs)
        start = _clock()
        if operation == "get":
            default = args[1] if len(args) > 1 else kwargs.pop("default", None)
            args = args[:1]
            value = method(*args, sentinel, **kwargs)
            hit: bool | None = value is not sentinel
            result = value if hit else default
        else:
            result = method(*args, **kwargs)
            hit = bool(result) if operation == "has_key" else None
        with contextlib.suppress(Exception):
            rec.cache(alias, operation, hit, start, (_clock() - start) / 1e6)
        return result

    wrapper._observe_console = True  # type: ignore[attr-defined]
    return wrapper


def _install_cache() -> None:
    from django.core.cache import CacheHandler

    original = CacheHandler.create_connection
    if getattr(original, "_observe_console", False):
        return

    @functools.wraps(original)
    def create_connection(self: Any, alias: str) -> Any:
        backend = original(self, alias)
        if active() is not None:
            with contextlib.suppress(Exception):
                _wrap_cache(backend, alias)
        return backend

    create_connection._observe_console = True  # type: ignore[attr-defined]
    _patches.append((CacheHandler, "create_connection", original))
    CacheHandler.create_connection = create_connection


# --- outbound HTTP


def _record_outbound(method: str, url: str, status: int | None, start: int) -> None:
    rec = active()
    if rec is not None:
        with contextlib.suppress(Exception):
            rec.outbound(method, url, status, start, (_clock() - start) / 1e6)


def _patch(owner: Any, name: str, make: Any) -> None:
    original = owner.__dict__.get(name)
    if original is None or getattr(original, "_observe_console", False):
        return
    wrapper = make(original)
    wrapper._observe_console = True
    _patches.append((owner, name, original))
    setattr(owner, name, wrapper)


def _install_requests() -> None:
    from requests.adapters import HTTPAdapter

    def make(original: Any) -> Any:
        @functools.wraps(original)
        def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            start, status = _clock(), None
            try:
                response = original(self, request, *args, **kwargs)
                status = response.status_code
                return response
            finally:
                _record_outbound(str(request.method), str(request.url), status, start)

        return send

    _patch(HTTPAdapter, "send", make)


def _install_httpx() -> None:
    import httpx

    def make_sync(original: Any) -> Any:
        @functools.wraps(original)
        def handle_request(self: Any, request: Any) -> Any:
            start, status = _clock(), None
            try:
                response = original(self, request)
                status = response.status_code
                return response
            finally:
                _record_outbound(request.method, str(request.url), status, start)

        return handle_request

    def make_async(original: Any) -> Any:
        @functools.wraps(original)
        async def handle_async_request(self: Any, request: Any) -> Any:
            start, status = _clock(), None
            try:
                response = await original(self, request)
                status = response.status_code
                return response
            finally:
                _record_outbound(request.method, str(request.url), status, start)

        return handle_async_request

    _patch(httpx.HTTPTransport, "handle_request", make_sync)
    _patch(httpx.AsyncHTTPTransport, "handle_async_request", make_async)


def _after_import(library: str, module: str, patch: Any) -> None:
    if module in sys.modules:
        patch()
        return
    try:
        if importlib.util.find_spec(library) is None:
            return
    except (ImportError, ValueError):
        return
    after_import(module, patch, owner="console")


# --- Celery

_SENT = "django_observe_console_sent"
_runs: dict[str, tuple[int, str | None, float | None]] = {}
_failures: dict[str, BaseException] = {}
_RUNS_LIMIT = 10000


def _celery_publish(sender: Any = None, headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    rec = active()
    if rec is None:
        return
    with contextlib.suppress(Exception):
        if headers is not None:
            headers.setdefault(_SENT, time.time())
        rec.enqueue(str(sender), str(kwargs.get("routing_key") or "celery"))


def _celery_prerun(task_id: str | None = None, task: Any = None, **kwargs: Any) -> None:
    if active() is None or task_id is None:
        return
    from ..correlation import get_correlation_id

    request = getattr(task, "request", None)
    sent = getattr(request, _SENT, None)
    wait = (time.time() - sent) * 1000 if isinstance(sent, (int, float)) else None
    if len(_runs) >= _RUNS_LIMIT:
        _runs.clear()
    _runs[task_id] = (_clock(), get_correlation_id(), wait)


def _celery_failure(task_id: str | None = None, exception: BaseException | None = None, **kwargs: Any) -> None:
    if task_id is not None and exception is not None and active() is not None:
        _failures[task_id] = exception


def _celery_postrun(task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs: Any) -> None:
    rec = active()
    run = _runs.pop(task_id, None) if task_id is not None else None
    error = _failures.pop(task_id, None) if task_id is not None else None
    if rec is None or run is None or task is None:
        return
    start, correlation_id, wait = run
    info = getattr(task.request, "delivery_info", None) or {}
    with contextlib.suppress(Exception):
        rec.job(
            str(task.name),
            str(info.get("routing_key") or "celery"),
            (_clock() - start) / 1e6,
            failed=state == "FAILURE",
            wait_ms=wait,
            correlation_id=correlation_id,
            error=error,
            kind="celery",
        )


def _install_celery() -> bool:
    if "celery" not in sys.modules:
        return False
    from celery import signals

    for signal, receiver in (
        (signals.before_task_publish, _celery_publish),
        (signals.task_prerun, _celery_prerun),
        (signals.task_failure, _celery_failure),
        (signals.task_postrun, _celery_postrun),
    ):
        signal.connect(receiver, weak=False, dispatch_uid=f"django_observe.console.{receiver.__name__}")
    return True


# --- Django's tasks framework


def _task_name(task: Any) -> str:
    return str(getattr(task, "module_path", None) or getattr(task, "name", task))


def _tasks_enqueued(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    rec = active()
    if rec is not None and task_result is not None:
        with contextlib.suppress(Exception):
            rec.enqueue(_task_name(task_result.task), str(getattr(task_result.task, "queue_name", "default")))


def _tasks_started(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    if active() is None or task_result is None:
        return
    from ..correlation import get_correlation_id

    started, enqueued = getattr(task_result, "started_at", None), getattr(task_result, "enqueued_at", None)
    wait = (started - enqueued).total_seconds() * 1000 if started and enqueued else None
    if len(_runs) >= _RUNS_LIMIT:
        _runs.clear()
    _runs[f"dt:{task_result.id}"] = (_clock(), get_correlation_id(), wait if wait is None or wait >= 0 else None)


def _tasks_finished(sender: Any = None, task_result: Any = None, **kwargs: Any) -> None:
    rec = active()
    if task_result is None:
        return
    run = _runs.pop(f"dt:{task_result.id}", None)
    if rec is None or run is None:
        return
    start, correlation_id, wait = run
    status = str(getattr(getattr(task_result, "status", ""), "value", getattr(task_result, "status", ""))).upper()
    errors = getattr(task_result, "errors", None) or []
    error = None
    if errors:
        last = errors[-1]
        error = f"{getattr(last, 'exception_class_path', 'error')}: {getattr(last, 'traceback', '')}".strip()[-2000:]
    with contextlib.suppress(Exception):
        rec.job(
            _task_name(task_result.task),
            str(getattr(task_result.task, "queue_name", "default")),
            (_clock() - start) / 1e6,
            failed=status == "FAILED",
            wait_ms=wait,
            correlation_id=correlation_id,
            error=error,
            kind="django.tasks",
        )


def _install_django_tasks() -> list[str]:
    names = []
    for name in _uses.task_frameworks():
        signals = importlib.import_module(f"{name}.signals")
        for signal, receiver in (
            (signals.task_enqueued, _tasks_enqueued),
            (signals.task_started, _tasks_started),
            (signals.task_finished, _tasks_finished),
        ):
            signal.connect(receiver, weak=False, dispatch_uid=f"django_observe.console.{name}.{receiver.__name__}")
        names.append(name)
    return names


# --- the table


def _install() -> None:
    """Wire every hook once per process (safe to call again)."""
    ensure_log_capture()
    if "core" not in _installed:
        _installed.add("core")
        _install_queries()
        _install_cache()
    for library, module, patch in (
        ("requests", "requests.adapters", _install_requests),
        ("httpx", "httpx", _install_httpx),
    ):
        if library not in _installed:
            _installed.add(library)
            _after_import(library, module, patch)
    if "celery" not in _installed and _install_celery():
        _installed.add("celery")
    if "tasks" not in _installed:
        _installed.add("tasks")
        with contextlib.suppress(Exception):
            _install_django_tasks()


def _deactivate() -> None:
    """Stop recording (the hooks stay in place and pass through)."""
    if active() is not None:
        _recorder.deactivate()
    _release_log_capture()


def _unhook() -> None:
    """Put back what :func:`_install` patched and disconnect its receivers."""
    from django.db import connections
    from django.db.backends.signals import connection_created

    for owner, name, original in reversed(_patches):
        if getattr(vars(owner).get(name), "_observe_console", False):
            setattr(owner, name, original)
    _patches.clear()
    forget_after_import("console")
    connection_created.disconnect(dispatch_uid="django_observe.console.queries")
    for connection in connections.all(initialized_only=True):
        wrappers = connection.execute_wrappers
        wrappers[:] = [w for w in wrappers if not isinstance(w, ConsoleQueryWrapper)]
    signals = sys.modules.get("celery.signals")
    if signals is not None:
        for signal, receiver in (
            (signals.before_task_publish, _celery_publish),
            (signals.task_prerun, _celery_prerun),
            (signals.task_failure, _celery_failure),
            (signals.task_postrun, _celery_postrun),
        ):
            signal.disconnect(dispatch_uid=f"django_observe.console.{receiver.__name__}")
    for name in ("django.tasks", "django_tasks"):
        task_signals = sys.modules.get(f"{name}.signals")
        if task_signals is not None:
            for event in ("enqueued", "started", "finished"):
                getattr(task_signals, f"task_{event}").disconnect(
                    dispatch_uid=f"django_observe.console.{name}._tasks_{event}"
                )
    _installed.clear()


class ConsoleIntegration:
    """The ``console`` row: feeds ``django_observe.console``'s recorder (statements, cache, outbound HTTP,
    Celery, Django's tasks framework, log lines)."""

    name = "console"

    def available(self, runtime: Runtime) -> bool:
        """``django_observe.console`` is in ``INSTALLED_APPS`` (:func:`integrations._uses.console`)."""
        return _uses.console(runtime)

    def install(self, runtime: Runtime) -> None:
        """Wire the hooks once when ``runtime`` records for the console; else stop recording."""
        if runtime.console is not None:
            _install()
        else:
            _deactivate()

    def uninstall(self) -> None:
        """Stop recording, put the patched functions back and disconnect the receivers."""
        _deactivate()
        _unhook()


integration = ConsoleIntegration()
