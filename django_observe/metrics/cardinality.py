"""The cardinality guard, shared by every process of a service (gunicorn workers, recycled or not, Celery
prefork children).

A budget (:class:`Admissions`) is a set of admitted keys, bounded by a limit: the values of one label of a
built-in metric, or the label-value combinations (series) of a business or GenAI metric. In multiprocess
mode each budget is also an append-only file, ``<multiprocess directory>/cardinality/<budget>.keys``, one key
a line, at most ``limit`` lines. A process reads it when it first uses the budget; a key it has not seen
yet is admitted under an exclusive ``flock`` of the file after reading what other processes appended since,
and only while the file holds fewer than ``limit`` keys. So the bound holds for the whole service, whatever
the number of processes and however often workers are recycled (a new worker starts with what its
predecessors admitted). The files are not metric files (``*.db``): the storage compaction
(``storage.compact``) never touches them, and they go with the multiprocess directory of the service.

Cost: a key this process has admitted before is a set lookup in the caller's own cache (nothing here is
called). A key seen for the first time in this process costs one ``fstat`` and, when the file grew, one
read of the new lines; a new admission one ``flock`` and one ``write``. A directory that cannot be written
(read-only, full) leaves the budget in this process's memory (bounded per process, as before).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Sequence

__all__ = ["DIRECTORY", "Admissions", "encode"]

logger = logging.getLogger("django_observe.metrics")

DIRECTORY = "cardinality"


def encode(values: Sequence[str]) -> str:
    """One line for a key (label values): JSON, so no value can break the line or forge another key."""
    return json.dumps(list(values), ensure_ascii=True, separators=(",", ":"))


class Admissions:
    """At most ``limit`` admitted keys for the budget ``name``, shared through ``directory`` (None: this
    process only).

    Args:
        name: the budget (``<metric>`` or ``<metric>:<label>``): letters, digits, ``_`` and ``:``.
        limit: keys admitted before further ones are refused.
        directory: the multiprocess directory, or None.
    """

    __slots__ = ("_fd", "_keys", "_lock", "_offset", "_path", "_pid", "_tail", "limit", "name")

    def __init__(self, name: str, limit: int, directory: str | None):
        self.name, self.limit = name, limit
        self._keys: set[str] = set()
        self._lock = threading.Lock()
        self._path = os.path.join(directory, DIRECTORY, f"{name}.keys") if directory else None
        self._fd: int | None = None
        self._pid = 0
        self._offset = 0
        self._tail = b""

    def __len__(self) -> int:
        return len(self._keys)

    def admit(self, key: str) -> bool:
        """True when ``key`` is admitted (before, by any process, or now); False past the limit."""
        if key in self._keys:
            return True
        with self._lock:
            fd = self._file()
            self._refresh(fd)
            if key in self._keys:
                return True
            if len(self._keys) >= self.limit:
                return False
            if fd is None:
                self._keys.add(key)
                return True
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                self._keys.add(key)  # cannot coordinate: bounded in this process at least
                return True
            try:
                self._refresh(fd)
                if key in self._keys:
                    return True
                if len(self._keys) >= self.limit:
                    return False
                line = key.encode("utf-8") + b"\n"
                try:
                    written = os.write(fd, line)  # O_APPEND, under the lock: whole lines, one after the other
                except OSError as exc:
                    self._give_up(exc)
                    self._keys.add(key)
                    return True
                if written != len(line):  # a full disk mid-line: the newline is missing, readers skip it
                    self._give_up(OSError("short write"))
                self._keys.add(key)
                self._offset += written
                return True
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                if self._fd is None:  # given up above
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def _file(self) -> int | None:
        """This process's descriptor of the budget's file (reopened in a forked child: a ``flock`` belongs to
        the open file, which parent and child would share), or None (memory only)."""
        if self._path is None:
            return None
        pid = os.getpid()
        if self._pid == pid:
            return self._fd
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._pid, self._fd = pid, None
        try:
            os.makedirs(os.path.dirname(self._path), mode=0o700, exist_ok=True)
            self._fd = os.open(self._path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._give_up(exc)
            return None
        self._offset, self._tail = 0, b""
        return self._fd

    def _refresh(self, fd: int | None) -> None:
        """Read the keys other processes appended since the last read (complete lines only)."""
        if fd is None:
            return
        try:
            size = os.fstat(fd).st_size
            if size <= self._offset:
                return
            data = os.pread(fd, size - self._offset, self._offset)
        except OSError:
            return
        self._offset += len(data)
        data = self._tail + data
        lines = data.split(b"\n")
        self._tail = lines.pop()  # an incomplete last line (being written, or cut by a full disk)
        for line in lines:
            if line:
                self._keys.add(line.decode("utf-8", "replace"))

    def _give_up(self, exc: OSError) -> None:
        if self._path is not None:
            logger.warning(
                "cardinality guard: cannot use %s (%s); the bound of %s holds in this process only",
                self._path,
                getattr(exc, "strerror", None) or exc,
                self.name,
            )
        self._fd = None  # the caller closes the descriptor it holds
