"""Multiprocess metric files that cannot take the service down, and that do not pile up.

prometheus_client's ``MmapedDict`` sizes a new file with ``truncate()`` (a sparse file) and maps it: on a full
filesystem the first store into a page with no block behind it kills the process with SIGBUS, and a web
worker dies on its first request, in a loop. On a read-only directory opening the file raises, inside
whatever created the metric. ``SafeMmapedDict`` (put into ``prometheus_client.values`` by
``integrations.prometheus_files``) reserves the blocks first with ``posix_fallocate``; when that or opening
fails, the file's values are kept in anonymous memory instead. The process keeps serving, its new samples are
missing from the scrape (degraded), one error line says so once per process, and the scrape reports
``<namespace>_metrics_storage_degraded`` and the directory's free bytes (:class:`StorageCollector`).

Files of dead processes are merged (:func:`compact`): counters and histograms summed into
``counter_merged.db`` and ``histogram_merged.db``, gauges by their mode (``min``, ``max``, ``sum``,
``mostrecent`` into ``gauge_<mode>_merged.db``; ``live*`` gauges are dropped, as ``mark_process_dead`` does;
``all`` gauges of dead processes are dropped too, since their ``pid`` label names a process that is gone),
then removed. So the directory holds the files of the live processes plus at most one merged file per type
and gauge mode, however often workers are recycled (``--max-requests``).

Readers and the compactor exclude each other (``.readers.lock``): a scrape lists and reads the files under a
shared ``flock`` (:func:`reading`), and the compactor swaps a merged file in and removes the files it merged
only under an exclusive one, taken without waiting: while a scrape reads, the swap is left to the next
compaction. Without it, a scrape that had read a dead process's file and then read the new merged file
counted that process twice (or failed on the file removed under it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import glob
import logging
import mmap
import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["StorageCollector", "compact", "degraded", "reading", "safe_mmaped_dict"]

logger = logging.getLogger("django_observe.metrics")

MERGED = "merged"
_LOCK_NAME = ".compact.lock"
_READERS_NAME = ".readers.lock"
_state: dict[str, Any] = {"reason": None, "pid": None}
_lock = threading.Lock()


def degraded() -> str | None:
    """Why this process's metric files could not be written (its samples are in memory only), or None."""
    return _state["reason"] if _state["pid"] == os.getpid() else None


def _report(filename: str, exc: OSError) -> None:
    """Mark this process degraded; the first time, one error line."""
    with _lock:
        if degraded() is not None:
            return
        reason = errno.errorcode.get(exc.errno or 0, "error").lower()
        _state.update(reason=reason, pid=os.getpid())
    logger.error(
        "metrics storage: cannot write %s (%s); this process keeps serving, its metrics are kept in memory and "
        "are missing from the scrape until it restarts (metrics_storage_degraded is 1). Free space in the "
        "multiprocess directory or point METRICS_MULTIPROC_DIR at a writable one.",
        filename,
        exc.strerror or exc,
    )


def _classes() -> tuple[Any, int, Callable[..., Any]]:
    from prometheus_client import mmap_dict

    return mmap_dict.MmapedDict, mmap_dict._INITIAL_MMAP_SIZE, mmap_dict._pack_integer


def _build() -> type:
    """The ``SafeMmapedDict`` class (built on first use: prometheus_client is imported lazily)."""
    base, initial, pack_integer = _classes()
    unpack_integer = struct.Struct(b"i").unpack_from

    class Safe(base):  # type: ignore[misc, valid-type]
        """``MmapedDict`` whose file blocks are reserved before they are mapped, falling back to memory."""

        def __init__(self, filename: str, read_mode: bool = False):
            if read_mode:
                super().__init__(filename, read_mode)
                return
            self._fname = filename
            self._positions: dict[str, int] = {}
            created = False
            try:
                self._f: Any = open(filename, "a+b")  # noqa: SIM115 - closed by close()
            except OSError as exc:
                self._memory(initial, exc)
                return
            try:
                capacity = os.fstat(self._f.fileno()).st_size
                created = capacity == 0
                capacity = capacity or initial
                os.posix_fallocate(self._f.fileno(), 0, capacity)
                self._m = mmap.mmap(self._f.fileno(), capacity, access=mmap.ACCESS_WRITE)
            except OSError as exc:
                self._f.close()
                if created:  # an empty file would break every scrape that reads it
                    with contextlib.suppress(OSError):
                        os.unlink(filename)
                self._memory(initial, exc)
                return
            self._capacity = capacity
            self._used = unpack_integer(self._m, 0)[0]
            if self._used == 0:
                self._used = 8
                pack_integer(self._m, 0, self._used)
            else:
                for key, _, _, pos in self._read_all_values():
                    self._positions[key] = pos

        def _memory(self, capacity: int, exc: OSError) -> None:
            _report(self._fname, exc)
            self._f = None
            self._capacity = capacity
            self._m = mmap.mmap(-1, capacity)
            self._used = 8
            pack_integer(self._m, 0, self._used)

        def _init_value(self, key: str) -> None:
            encoded = key.encode("utf-8")
            padded = encoded + (b" " * (8 - (len(encoded) + 4) % 8))
            value = struct.pack(f"i{len(padded)}sdd".encode(), len(encoded), padded, 0.0, 0.0)
            if self._used + len(value) > self._capacity:
                self._grow(self._used + len(value))
            self._m[self._used : self._used + len(value)] = value
            self._used += len(value)
            pack_integer(self._m, 0, self._used)
            self._positions[key] = self._used - 16

        def _grow(self, needed: int) -> None:
            capacity = self._capacity
            while needed > capacity:
                capacity *= 2
            if self._f is not None:
                try:
                    os.posix_fallocate(self._f.fileno(), 0, capacity)
                    self._m = mmap.mmap(self._f.fileno(), capacity)
                    self._capacity = capacity
                    return
                except OSError as exc:
                    # The file keeps the values it has (the scrape shows them as they were); from now on they
                    # live in memory. Mappings of the file made elsewhere (FileSlots) keep their own size.
                    _report(self._fname, exc)
                    self._f.close()
                    self._f = None
            memory = mmap.mmap(-1, capacity)
            memory[: self._used] = self._m[: self._used]
            self._m = memory
            self._capacity = capacity

        def close(self) -> None:
            if self._f is None and self._m is not None:
                self._m.close()
                self._m = None  # type: ignore[assignment]
                return
            super().close()

    Safe.__name__ = Safe.__qualname__ = "SafeMmapedDict"
    return Safe


@functools.cache
def safe_mmaped_dict() -> type:
    """The ``SafeMmapedDict`` class, a subclass of prometheus_client's ``MmapedDict`` (built once, on first use:
    prometheus_client is imported lazily). ``integrations.prometheus_files`` puts it in place."""
    return _build()


def _pid_of(path: str) -> int | None:
    stem = os.path.basename(path)[:-3]
    suffix = stem.rsplit("_", 1)[-1]
    return int(suffix) if suffix.isdigit() else None


def compact(path: str, alive: Callable[[int], bool]) -> int:
    """Merge the files of dead processes in ``path`` into the merged files and remove them (see the module's
    docstring). Returns how many files were removed; does nothing when another process is compacting or when a
    scrape is reading the files (:func:`reading`; the next compaction does it), and leaves everything as it is
    when the merged file cannot be written (a full disk)."""
    from prometheus_client.mmap_dict import MmapedDict

    dead = [f for f in glob.glob(os.path.join(path, "*.db")) if (pid := _pid_of(f)) is not None and not alive(pid)]
    if not dead:
        return 0
    try:
        lock_file = open(os.path.join(path, _LOCK_NAME), "a")  # noqa: SIM115
    except OSError:
        return 0
    with lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0
        dead = [f for f in dead if os.path.exists(f)]
        groups: dict[str, list[str]] = {}
        removed = 0
        for name in dead:
            prefix = os.path.basename(name).rsplit("_", 1)[0]  # counter, histogram, gauge_<mode>
            if prefix.startswith("gauge_live") or prefix == "gauge_all":
                with contextlib.suppress(OSError):
                    os.unlink(name)
                    removed += 1
                continue
            groups.setdefault(prefix, []).append(name)
        staged: list[tuple[str, str, list[str]]] = []  # (temporary file, merged file, files it merges)
        for prefix, names in groups.items():
            merged_path = os.path.join(path, f"{prefix}_{MERGED}.db")
            sources = [merged_path, *names] if os.path.exists(merged_path) else names
            combined = _combine(prefix, sources, MmapedDict)
            tmp = f"{merged_path}.{os.getpid()}.tmp"
            try:
                _write(tmp, combined)
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                continue
            staged.append((tmp, merged_path, names))
        with _swapping(path) as allowed:
            for tmp, merged_path, names in staged:
                if not allowed:  # a scrape is reading: the next compaction merges them
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    continue
                try:
                    os.replace(tmp, merged_path)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    continue
                for name in names:
                    with contextlib.suppress(OSError):
                        os.unlink(name)
                        removed += 1
        return removed


def _open_readers_lock(path: str) -> int | None:
    name = os.path.join(path, _READERS_NAME)
    for flags in (os.O_RDONLY | os.O_CREAT, os.O_RDONLY):  # a read-only directory: the file may exist
        try:
            return os.open(name, flags | os.O_CLOEXEC, 0o600)
        except OSError:
            continue
    return None


@contextlib.contextmanager
def reading(path: str) -> Iterator[None]:
    """Held by a reader while it lists and reads the metric files of ``path``: no compaction swaps a merged file
    in, or removes the files it merged, meanwhile (it may wait for a swap in progress: a rename and unlinks)."""
    fd = _open_readers_lock(path)
    try:
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def _swapping(path: str) -> Iterator[bool]:
    """Yields True holding the exclusive readers' lock (no scrape reads), False when a scrape reads now."""
    fd = _open_readers_lock(path)
    if fd is None:
        yield True  # no lock file can exist (read-only directory): nothing to exclude
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _combine(prefix: str, files: Iterable[str], mmaped_dict: Any) -> dict[str, tuple[float, float]]:
    mode = prefix.split("_", 1)[1] if prefix.startswith("gauge_") else "sum"
    out: dict[str, tuple[float, float]] = {}
    for name in files:
        try:
            values = list(mmaped_dict.read_all_values_from_file(name))
        except (OSError, RuntimeError, struct.error):
            continue
        for key, value, timestamp, _ in values:
            current = out.get(key)
            if current is None:
                out[key] = (value, timestamp)
            elif mode == "min":
                out[key] = min(current, (value, timestamp))
            elif mode == "max":
                out[key] = max(current, (value, timestamp))
            elif mode == "mostrecent":
                out[key] = (value, timestamp) if timestamp >= current[1] else current
            else:  # counters, histograms, sum gauges
                out[key] = (current[0] + value, 0.0)
    return out


def _write(filename: str, values: dict[str, tuple[float, float]]) -> None:
    base, initial, _ = _classes()
    size = 8 + sum(len(k.encode("utf-8")) + 40 for k in values)
    with open(filename, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, max(initial, 1 << (size - 1).bit_length()))
    target = base(filename)
    try:
        for key, (value, timestamp) in values.items():
            target.write_value(key, value, timestamp)
    finally:
        target.close()


class StorageCollector:
    """``<namespace>_metrics_storage_degraded`` (1 when this process could not write its metric files, or the
    directory is read-only or has under 256 KiB free) and ``<namespace>_metrics_storage_free_bytes``."""

    covers_process_metrics = False

    def __init__(self, namespace: str, path: str):
        self.namespace = namespace
        self.path = path

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        prefix = f"{self.namespace}_" if self.namespace else ""
        free, read_only = None, False
        with contextlib.suppress(OSError):
            info = os.statvfs(self.path)
            free = info.f_bavail * info.f_frsize
            read_only = bool(info.f_flag & os.ST_RDONLY) or not os.access(self.path, os.W_OK)
        bad = degraded() is not None or read_only or (free is not None and free < 256 * 1024)
        yield GaugeMetricFamily(
            f"{prefix}metrics_storage_degraded",
            "1 when metric samples cannot be written to the multiprocess directory (full, read-only), else 0.",
            value=1 if bad else 0,
        )
        if free is not None:
            yield GaugeMetricFamily(
                f"{prefix}metrics_storage_free_bytes",
                "Free bytes in the filesystem of the metrics multiprocess directory.",
                value=free,
            )
