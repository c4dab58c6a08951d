"""Distinct authenticated users in a sliding window, across the processes of a group."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client.core import Metric

from .base import Deadline, Family, ScrapeCollector, ScrapeErrors, gauge

__all__ = ["ActiveUsers", "ActiveUsersCollector", "user_hash"]


_HASH = struct.Struct("<Q")


def user_hash(user_id: str) -> int:
    """A stable 64-bit hash of a user id (the same in every process; files never hold the id itself)."""
    return _HASH.unpack(hashlib.blake2b(user_id.encode(), digest_size=8).digest())[0]


class ActiveUsers:
    """Distinct authenticated users seen in the last ``window`` minutes, across the processes of a group.

    Per process and minute, a set of 64-bit user hashes; a hash new in that minute is also appended (8 bytes)
    to ``<directory>/<minute>_<pid>.bin`` so the scraping process can count the union of every process's
    minutes. The count is exact up to hash collisions (negligible below billions of users) and covers the
    current minute plus the ``window - 1`` previous ones, so a user seen once stays counted between
    ``window - 1`` and ``window`` minutes. Without a directory (single process) the sets stay in memory.

    Cost per request: one hash and a set lookup; one small append per user and minute.
    """

    def __init__(self, window: int, directory: str | None, clock: Callable[[], float] = time.time):
        self.window, self.directory, self.clock = window, directory, clock
        self._minutes: dict[int, set[int]] = {}
        self._lock = threading.Lock()
        self._file: Any = None
        self._file_key: tuple[int, int] | None = None
        if directory:
            os.makedirs(directory, exist_ok=True)

    def seen(self, user_id: str) -> None:
        """Record that ``user_id`` made a request now."""
        value = user_hash(user_id)
        minute = int(self.clock() // 60)
        with self._lock:
            current = self._minutes.get(minute)
            if current is None:
                current = self._minutes[minute] = set()
                for old in [m for m in self._minutes if m <= minute - self.window]:
                    del self._minutes[old]
            if value in current:
                return
            current.add(value)
            if self.directory:
                self._append(minute, value)

    def _append(self, minute: int, value: int) -> None:
        key = (minute, os.getpid())  # a forked child writes its own files
        if self._file_key != key:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
            assert self.directory is not None  # _append runs only with a directory
            self._file = open(os.path.join(self.directory, f"{minute}_{key[1]}.bin"), "ab", buffering=0)  # noqa: SIM115
            self._file_key = key
        self._file.write(_HASH.pack(value))

    def count(self) -> int:
        """Distinct users in the window; removes files that left it."""
        minute = int(self.clock() // 60)
        first = minute - self.window + 1
        if not self.directory:
            with self._lock:
                return len(set().union(*(users for m, users in self._minutes.items() if m >= first)))
        users: set[int] = set()
        for path in glob.glob(os.path.join(self.directory, "*_*.bin")):
            stem = os.path.basename(path)[:-4].split("_", 1)[0]
            if not stem.isdigit():
                continue
            if int(stem) < first:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                continue
            with contextlib.suppress(OSError), open(path, "rb") as fh:
                data = fh.read()
            usable = len(data) - len(data) % _HASH.size
            users.update(v for (v,) in _HASH.iter_unpack(data[:usable]))
        return len(users)


class ActiveUsersCollector(ScrapeCollector):
    """``active_users``: distinct authenticated users in the sliding window."""

    collector = "active_users"

    def __init__(
        self,
        prefix: str,
        errors: ScrapeErrors,
        deadline: Deadline,
        users: ActiveUsers,
        *,
        cache_seconds: float = 1.0,
    ):
        super().__init__(prefix, errors, deadline, cache_seconds=cache_seconds)
        self.users = users

    def families(self) -> list[Family]:
        return [
            gauge(
                f"{self.prefix}active_users",
                f"Distinct authenticated users seen in the last {self.users.window} minutes.",
            )
        ]

    def read(self) -> Sequence[Metric]:
        (family,) = self.families()
        family.add_metric([], self.users.count())
        return [family]
