"""Other libraries' locks that a forked child must not inherit held.

A pre-fork server (a Celery prefork pool, gunicorn) forks while the parent's other threads run: the OTLP metrics
pusher, the span processor, the console's flusher. A lock one of them holds at that moment is copied held into
the child, where the thread that would release it does not exist, and the child blocks forever on its next
acquire. Two such locks are taken by code every process runs:

- wrapt's post-import-hook lock (``wrapt.importer._post_import_hooks_lock``), taken by its finder on every
  import once a hook is registered (the tracing instrumentors are registered that way), and
- prometheus_client's multiprocess value lock (one per ``MultiProcessValue`` class), taken on every metric update.

The standard library reinitialises its own locks in the child (``logging``, ``threading``, ``concurrent``);
these are reinitialised the same way. Only in the child: acquiring them before the fork instead would deadlock
the parent when another thread holds them while it waits for the import lock that ``fork()`` takes.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["multiprocess_value_lock", "reinit_in_child"]

_locks: list[Any] = []


def reinit_in_child(lock: Any) -> bool:
    """Reinitialise ``lock`` (a ``threading.Lock`` or ``RLock``) in every child forked from now on.

    Returns False when ``lock`` cannot be reinitialised (it is not a lock of the ``threading`` module)."""
    if not callable(getattr(lock, "_at_fork_reinit", None)):
        return False
    if not any(known is lock for known in _locks):
        _locks.append(lock)
    return True


def multiprocess_value_lock() -> Any:
    """The lock of prometheus_client's multiprocess value class in use, or None in single-process mode (each
    value has its own lock there, which a metric updated by another thread at the fork could still leave held)."""
    from prometheus_client import values

    inc = getattr(values.ValueClass, "inc", None)
    code, cells = getattr(inc, "__code__", None), getattr(inc, "__closure__", None)
    if code is None or not cells:
        return None
    for name, cell in zip(code.co_freevars, cells, strict=False):
        if name == "lock":
            return cell.cell_contents
    return None


def _reinit_locks() -> None:
    for lock in _locks:
        lock._at_fork_reinit()


os.register_at_fork(after_in_child=_reinit_locks)
