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

One lock cannot be reinitialised: a module's import lock. CPython reinitialises the global import lock in the
child, not the per-module locks, and a module another thread was still executing at the fork stays half-imported
in the child's ``sys.modules`` with its lock held: the child's first import of it blocks forever. Our threads
import on their first run (the OTLP pusher's first export loads the exporter's encoders, ``requests``' lazy
modules and what the collectors read: about 50 modules), so a fork waits for a first run under way
(:func:`forks_wait_for_first_call`), at most ``FORK_WAIT_SECONDS``; after it, their runs import nothing new.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

__all__ = ["FORK_WAIT_SECONDS", "forks_wait_for_first_call", "multiprocess_value_lock", "reinit_in_child"]

P = ParamSpec("P")
T = TypeVar("T")

# How long a fork waits for a first run under way: one that takes longer (a hung dependency) no longer holds
# the fork back, and its modules are left to chance as before.
FORK_WAIT_SECONDS = 5.0

_locks: list[Any] = []
_first_calls = threading.Condition()
_first_calls_under_way: list[int] = []  # the thread of each first call under way


def forks_wait_for_first_call(fn: Callable[P, T]) -> Callable[P, T]:
    """``fn``, wrapped: until one call of it has returned, a fork of this process waits (at most
    ``FORK_WAIT_SECONDS``) for the calls under way, so that no module they import is half-imported in the child.

    For the body of a background thread that imports on its first run; its later calls cost one attribute
    test."""
    returned = False

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> T:
        nonlocal returned
        if returned:
            return fn(*args, **kwargs)
        thread = threading.get_ident()
        with _first_calls:
            _first_calls_under_way.append(thread)
        try:
            return fn(*args, **kwargs)
        finally:
            returned = True
            with _first_calls:
                _first_calls_under_way.remove(thread)
                _first_calls.notify_all()

    return call


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


def _before_fork() -> None:
    # Held until the fork is done: a first call cannot start meanwhile.
    _first_calls.acquire()
    forking = threading.get_ident()  # a first call in the forking thread itself cannot end meanwhile
    _first_calls.wait_for(
        lambda: all(thread == forking for thread in _first_calls_under_way), timeout=FORK_WAIT_SECONDS
    )


def _after_fork_in_parent() -> None:
    _first_calls.release()


def _after_fork_in_child() -> None:
    global _first_calls, _first_calls_under_way
    _first_calls, _first_calls_under_way = threading.Condition(), []  # the threads making them are not here
    for lock in _locks:
        lock._at_fork_reinit()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
