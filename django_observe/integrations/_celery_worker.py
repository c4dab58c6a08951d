"""Celery's worker and beat processes (a helper of ``integrations.celery``, not a row of the table).

- Processes: the tracer provider is built in each prefork child (``worker_process_init``; the first task
  builds it in a pool without children), buffered spans and OTLP logs are flushed when a child or the worker
  stops; ``setup_logging`` makes the worker log like the web process, and with JSON logs the start-up banner
  is silenced (every stdout line must parse).
- Liveness: a consumer bootstep (added on ``celeryd_init``) touches ``CELERY_HEARTBEAT_FILE`` every
  ``CELERY_HEARTBEAT_INTERVAL`` seconds from the consumer's own timer, so the file goes stale when the
  worker's main process hangs, stops consuming or dies; ``manage.py observe_health --celery-worker`` reads it.
- Beat: ``beat_init`` wraps the scheduler's ``apply_async``; each entry sent sets
  ``celery_beat_last_run_timestamp_seconds{entry}`` and ``celery_beat_entry_interval_seconds{entry}``.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from typing import Any

from .. import shutdown
from ..logging import flush_otlp_logs
from ..metrics.exporter import unsafe_directory
from ..metrics.tasks import NO_TASK_METRICS, NoTaskMetrics
from ..runtime import Runtime

__all__ = ["heartbeat_age", "heartbeat_dir", "heartbeat_files", "heartbeat_path", "install", "touch", "uninstall"]

logger = logging.getLogger("django_observe.celery")
STEP = "django_observe heartbeat"


class _Bound:
    __slots__ = ("config", "interval", "json_logs", "logging_setup", "metrics", "path", "tracing")

    def __init__(self, runtime: Runtime | None = None, metrics: NoTaskMetrics = NO_TASK_METRICS) -> None:
        self.metrics = metrics
        self.path: str | None = None
        self.config: Any = None
        self.interval = 5.0
        self.tracing: Any = None
        self.logging_setup: Callable[[], None] | None = None
        self.json_logs = False
        if runtime is not None:
            self.config = runtime.config
            configured = runtime.config.celery_heartbeat_file
            self.path = DEFAULT_HEARTBEAT if configured is None else heartbeat_path(runtime.config)
            self.interval = runtime.config.celery_heartbeat_interval
            self.tracing, self.logging_setup = runtime.tracing, runtime.logging_setup
            self.json_logs = runtime.config.log_format == "json"


_bound = _Bound()


_LOGGING_UID = "django_observe.on_setup_logging"


def install(signals: Any, runtime: Runtime, metrics: NoTaskMetrics) -> None:
    """Hand the hooks ``runtime``'s parts and the Celery task metrics recorder, and connect them. With
    django_observe configuring logging, the worker logs in the configured format instead of Celery's own (a
    ``setup_logging`` receiver tells Celery to leave logging alone)."""
    global _bound
    _bound = _Bound(runtime, metrics)
    for signal, receiver in _receivers(signals):
        signal.connect(receiver, weak=False, dispatch_uid=f"django_observe.{receiver.__name__}")
    if runtime.logging_setup is not None:
        signals.setup_logging.connect(on_setup_logging, weak=False, dispatch_uid=_LOGGING_UID)
    else:
        signals.setup_logging.disconnect(dispatch_uid=_LOGGING_UID)


def uninstall(signals: Any) -> None:
    """Disconnect the hooks and unbind them."""
    global _bound
    _bound = _Bound()
    for signal, receiver in _receivers(signals):
        signal.disconnect(dispatch_uid=f"django_observe.{receiver.__name__}")
    signals.setup_logging.disconnect(dispatch_uid=_LOGGING_UID)


def _receivers(signals: Any) -> list[tuple[Any, Any]]:
    return [
        (signals.worker_process_init, on_process_init),
        (signals.worker_process_shutdown, on_process_shutdown),
        (signals.worker_shutdown, on_process_shutdown),
        (signals.celeryd_after_setup, on_worker_setup),
        (signals.celeryd_init, on_worker_init),
        (signals.beat_init, on_beat_init),
    ]


# --- worker processes


def on_process_init(**kwargs: Any) -> None:
    if _bound.tracing is not None:
        _bound.tracing.ensure_provider()


def on_process_shutdown(**kwargs: Any) -> None:
    shutdown.begin()  # each exporter gets at most OTEL_EXPORT_SHUTDOWN_TIMEOUT seconds from here
    if _bound.tracing is not None:
        _bound.tracing.flush()
    flush_otlp_logs()  # a child leaves with os._exit: logging's own flush at exit does not run


def on_setup_logging(**kwargs: Any) -> None:
    if _bound.logging_setup is not None:
        _bound.logging_setup()


def on_worker_setup(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    # The worker's ASCII start-up banner is not a log line; with JSON logs every stdout line must parse.
    if instance is not None and _bound.logging_setup is not None and _bound.json_logs:
        instance.quiet = True


# --- worker liveness: the heartbeat file


DEFAULT_HEARTBEAT = "default"  # _Bound.path when CELERY_HEARTBEAT_FILE is not set: one file per worker


def heartbeat_dir() -> str:
    """The private directory of the default heartbeat files: ``$XDG_RUNTIME_DIR/django_observe`` when that
    runtime directory is private, else ``<temp dir>/django_observe-<uid>`` (a per-user name: whoever creates a
    shared directory first could fake liveness or plant links)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isabs(runtime) and unsafe_directory(runtime) is None:
        return os.path.join(runtime, "django_observe")
    return os.path.join(tempfile.gettempdir(), f"django_observe-{os.geteuid()}")


def heartbeat_path(config: Any, worker: str | None = None) -> str | None:
    """Where a worker's heartbeat goes (``CELERY_HEARTBEAT_FILE``); None when it is ``"off"``. By default one
    file per worker (its node name) in :func:`heartbeat_dir`; without ``worker``, the pattern of those files."""
    path = config.celery_heartbeat_file
    if path is None:
        # One file per project (its service name, the settings package by default) and per worker (its node
        # name): two projects, or two workers, on one host do not read each other's heartbeat.
        service = re.sub(r"[^A-Za-z0-9._-]", "_", str(getattr(config, "service_name", None) or "django"))
        name = re.sub(r"[^A-Za-z0-9_.@-]", "_", worker)[:200] if worker else "*"
        return os.path.join(heartbeat_dir(), f"celery-worker-{service}-{name}.heartbeat")
    return None if path.lower() == "off" else path


def heartbeat_files(config: Any) -> list[str]:
    """The heartbeat files a liveness probe reads: the configured one, or every worker's default one."""
    pattern = heartbeat_path(config)
    if pattern is None:
        return []
    if config.celery_heartbeat_file is not None:
        return [pattern]
    return sorted(glob.glob(pattern)) if unsafe_directory(os.path.dirname(pattern)) is None else []


def heartbeat_age(path: str, now: float | None = None) -> float | None:
    """Seconds since the heartbeat file was last touched; None when it does not exist (or is not a regular
    file: a planted link or device proves nothing)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return max(0.0, (time.time() if now is None else now) - info.st_mtime)


def touch(path: str, hostname: str) -> None:
    """Refresh the heartbeat file. Its directory must be private (created 0700, owned by this user, writable
    by no one else; :func:`~django_observe.metrics.exporter.unsafe_directory`); the file is written to a new
    private name and renamed over, never through an existing path, so a planted link is never followed.

    Raises:
        OSError: the directory is unsafe, or the file cannot be written.
    """
    directory = os.path.dirname(path) or "."
    with contextlib.suppress(FileExistsError):
        os.makedirs(directory, mode=0o700)
    problem = unsafe_directory(directory)
    if problem is not None:
        raise PermissionError(f"refusing the heartbeat directory {directory}: it {problem}")
    fd, tmp = tempfile.mkstemp(prefix=".heartbeat-", dir=directory)  # O_EXCL: a new file, mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {hostname}\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _heartbeat_step() -> type:
    from celery import bootsteps

    class Heartbeat(bootsteps.StartStopStep):
        """Touches the heartbeat file from the consumer's timer (its event loop in prefork)."""

        label = STEP
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.tref: Any = None
            self.path, self.interval = _bound.path, _bound.interval

        def start(self, parent: Any) -> None:
            if self.path is None:
                return
            hostname = str(getattr(parent, "hostname", ""))
            if self.path == DEFAULT_HEARTBEAT:
                self.path = heartbeat_path(_bound.config, hostname or "worker")
            path: str = self.path or ""

            def beat() -> None:
                try:
                    touch(path, hostname)
                except OSError as exc:
                    logger.warning("cannot write the heartbeat file %s: %s", path, exc)

            beat()
            self.tref = parent.timer.call_repeatedly(self.interval, beat)
            logger.info("heartbeat file %s touched every %ss", path, self.interval)

        def stop(self, parent: Any) -> None:  # also on a consumer restart (broker reconnect): the file ages
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None

        def shutdown(self, parent: Any) -> None:
            self.stop(parent)
            if self.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)

    return Heartbeat


def on_worker_init(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    """``celeryd_init``: add the heartbeat step before the consumer's blueprint is built."""
    if instance is None or _bound.path is None:
        return
    steps = instance.app.steps["consumer"]
    if not any(getattr(step, "label", "") == STEP for step in steps):
        steps.add(_heartbeat_step())


# --- beat: the last run of each schedule entry


def _interval_seconds(entry: Any) -> float | None:
    schedule = entry.schedule
    try:  # the time from now to the entry's next run, for any schedule type (interval, crontab, solar)
        return max(0.0, schedule.remaining_estimate(entry.default_now()).total_seconds())
    except Exception:
        run_every = getattr(schedule, "run_every", None)
        return run_every.total_seconds() if run_every is not None else None


def on_beat_init(sender: Any = None, **kwargs: Any) -> None:
    """``beat_init``: wrap the scheduler's ``apply_async`` (an entry sent without error counts as run)."""
    scheduler = getattr(sender, "scheduler", None)
    if scheduler is None or getattr(scheduler, "_django_observe_wrapped", False):
        return
    apply_async = scheduler.apply_async

    def observed_apply_async(entry: Any, *args: Any, **kwargs: Any) -> Any:
        result = apply_async(entry, *args, **kwargs)
        try:
            _bound.metrics.beat_ran(str(entry.name), _interval_seconds(entry))
        except Exception:
            logger.exception("cannot record the run of beat entry %s", getattr(entry, "name", "?"))
        return result

    scheduler.apply_async = observed_apply_async
    scheduler._django_observe_wrapped = True
