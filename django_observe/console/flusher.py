"""The flush thread: every ``CONSOLE_FLUSH_SECONDS`` it takes the recorder's batch and writes it.

Never on a request's path. A write that fails (the database is down, a lock timeout) rolls back as a whole;
the batch stays queued, with its id, and is tried again at the next flush, before the newer ones: nothing is
lost while the bound holds (past it, what does not fit is counted as overflow), and a batch whose commit went
through unanswered is recognised by its id and not counted twice. A failure is logged (at most once a minute)
and never raised.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from .. import forking
from .recorder import HOST, Batch, quiet

if TYPE_CHECKING:
    from .recorder import ConsoleRecorder

__all__ = ["Flusher", "sample_server"]

logger = logging.getLogger("django_observe.console")
TRIM_EVERY = 60.0


def _store() -> Any:
    from . import store  # the models: loaded once the apps are ready (and replaceable in unit tests)

    return store


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _memory() -> tuple[float | None, int | None]:
    """Host memory used percent and this process's resident bytes (None where unknown)."""
    percent = rss = None
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) for line in f if ":" in line}
        total, available = info.get("MemTotal"), info.get("MemAvailable")
        if total and available is not None:
            percent = round(100 * (1 - available / total), 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    return percent, rss


def sample_server(previous: tuple[float, float] | None) -> tuple[dict[str, Any], tuple[float, float]]:
    """This process's CPU (percent of one core since ``previous``), memory, and the host's load and disk."""
    now, cpu = time.monotonic(), _cpu_seconds()
    process_cpu = None
    if previous is not None and now > previous[0]:
        process_cpu = round(100 * (cpu - previous[1]) / (now - previous[0]), 1)
    memory_percent, rss = _memory()
    try:
        load = os.getloadavg()[0]
        host_cpu = round(100 * load / (os.cpu_count() or 1), 1)
    except OSError:
        host_cpu = None
    try:
        usage = shutil.disk_usage("/")
        disk = round(100 * usage.used / usage.total, 1)
    except OSError:
        disk = None
    data = {
        "host": HOST,
        "pid": os.getpid(),
        "process_cpu": process_cpu,
        "rss": rss,
        "host_cpu": host_cpu,
        "memory": memory_percent,
        "disk": disk,
    }
    return data, (now, cpu)


class Flusher(threading.Thread):
    """The daemon thread writing one recorder's batches (one per process)."""

    def __init__(self, recorder: ConsoleRecorder) -> None:
        super().__init__(name="django-observe-console", daemon=True)
        self.recorder = recorder
        self._stop_event = threading.Event()
        self._last_error = 0.0
        self._last_trim = 0.0
        self._cpu: tuple[float, float] | None = None
        self.flushes = 0
        self.failures = 0
        # Batches not written yet, oldest first, each with its id (written with it: a retry after an unanswered
        # commit is not counted twice); bounded, what does not fit is counted as overflow.
        self.pending: list[tuple[str, Batch]] = []
        self._spilled = 0
        # A forked child inherits this object and its atexit registration, not its thread: only the process
        # that made it may flush it (the child's copy would write the parent's pending batches a second time).
        self.pid = os.getpid()

    @classmethod
    def start_for(cls, recorder: ConsoleRecorder) -> Flusher:
        flusher = cls(recorder)
        flusher.start()
        atexit.register(flusher.stop)
        return flusher

    def run(self) -> None:
        flush = forking.forks_wait_for_first_call(self.flush)  # the first flush imports the store's modules
        while not self._stop_event.wait(self.recorder.options.flush_seconds):
            flush()

    def stop(self) -> None:
        """Stop the thread after one last flush (process exit)."""
        if self._stop_event.is_set() or self.pid != os.getpid():
            return
        self._stop_event.set()
        if threading.current_thread() is not self:
            self.flush()

    def flush(self) -> bool:
        """Write what the recorder gathered; True when written (or nothing to write)."""
        token = quiet.set(True)
        try:
            return self._flush()
        finally:
            quiet.reset(token)

    def _flush(self) -> bool:
        recorder = self.recorder
        options = recorder.options
        data, self._cpu = sample_server(self._cpu)
        recorder.set_value("server", f"{HOST}:{data['pid']}", data)
        self._hold(recorder.take())
        now = recorder.clock()
        store = _store()
        try:
            while self.pending:
                batch_id, batch = self.pending[0]
                store.write(options.database, batch, now, batch_id)
                self.pending.pop(0)
                if not self.pending and self._spilled:  # the count of what did not fit, once there is room
                    self.pending.append((uuid.uuid4().hex, Batch(overflow=self._spilled)))
                    self._spilled = 0
            if now - self._last_trim >= TRIM_EVERY:
                self._last_trim = now
                store.trim(options.database, now, options.retention_days)
        except Exception as exc:  # the database is down or refused: keep the batches, never raise
            self.failures += 1
            store.discard_connection(options.database)
            if time.monotonic() - self._last_error >= 60:
                self._last_error = time.monotonic()
                logger.warning("console_flush_failed", extra={"error": type(exc).__name__, "alias": options.database})
            return False
        finally:
            store.release_connection(options.database)
        self.flushes += 1
        return True

    def _hold(self, batch: Batch) -> None:
        """Queue a batch; past the bound (4 x ``CONSOLE_MAX_KEYS`` + ``CONSOLE_MAX_ENTRIES`` items held), count it."""
        if not batch:
            return
        options = self.recorder.options
        limit = 4 * (options.max_keys + options.max_entries)
        held = sum(_size(b) for _, b in self.pending)
        if self.pending and held + _size(batch) > limit:
            self._spilled += sum(c.count for c in batch.cells.values()) + batch.overflow
            self._spilled += sum(len(rows) for rows in batch.entries.values())
            return
        batch.overflow += self._spilled
        self._spilled = 0
        self.pending.append((uuid.uuid4().hex, batch))


def _size(batch: Batch) -> int:
    return len(batch.cells) + sum(len(rows) for rows in batch.entries.values()) + len(batch.values)
