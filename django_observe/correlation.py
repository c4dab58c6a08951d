"""Correlation IDs: one ID per request or task, in a context variable.

The ID is bound for the whole life of a request (by ``ObserveMiddleware``) or a
Celery task (by ``django_observe.integrations.celery``), read with
:func:`get_correlation_id`, and reset afterwards, so concurrent requests in
threads or asyncio tasks never see each other's ID.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .redaction import redact_text

__all__ = [
    "CorrelationPolicy",
    "bind_correlation_id",
    "correlation_context",
    "get_correlation_id",
    "new_correlation_id",
    "reset_correlation_id",
    "wrap_with_context",
]

T = TypeVar("T")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("django_observe_correlation_id", default=None)
# The variable itself, for ObserveMiddleware: it sets and resets it on every request without a call.
correlation_id_var = _current
# An exception that leaves a connection or job carries its ID here: the server logs it after the context is
# gone (daphne's "Exception inside application"), and the log line still gets the ID (add_correlation_id).
EXCEPTION_ATTR = "__django_observe_correlation_id__"

DEFAULT_PATTERN = r"[A-Za-z0-9._:-]{1,128}"
DEFAULT_PREFIX = "req_"
# Whatever pattern a project configures, these never pass: control characters could split or colour a
# log line, and a space would make the ID ambiguous in the text format.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


def get_correlation_id() -> str | None:
    """The correlation ID of the current request or task, or None outside of one."""
    return _current.get()


def tag_exception(error: BaseException, correlation_id: str) -> None:
    """Let ``error`` carry ``correlation_id`` to the lines logged about it outside its context."""
    with contextlib.suppress(AttributeError, TypeError):  # an exception class with __slots__
        setattr(error, EXCEPTION_ATTR, correlation_id)


def bind_correlation_id(correlation_id: str | None) -> contextvars.Token[str | None]:
    """Bind ``correlation_id`` in the current context; pass the token to :func:`reset_correlation_id`."""
    return _current.set(correlation_id)


def reset_correlation_id(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)


_IDS_PER_DRAW = 64
_ID_SLICES = tuple(slice(i, i + 24) for i in range(0, 24 * _IDS_PER_DRAW, 24))


class _HexPool:
    """24 random hex digits (``os.urandom(12).hex()``) per ``take()``, 64 of them from one ``os.urandom`` call.

    ``os.urandom`` is a system call (``getrandom``); one per request was the request path's only system call
    besides the log line's write. A forked child (gunicorn's and Celery's workers) empties the pool it
    inherited, so no two processes hand out the same digits.
    """

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: Iterator[str] = iter(())

    def empty(self) -> None:
        self.ids = iter(())

    def refill(self) -> str:
        """A new draw; its first digits."""
        ids = self.ids = map(os.urandom(12 * _IDS_PER_DRAW).hex().__getitem__, _ID_SLICES)
        return next(ids)

    def take(self) -> str:
        # The map's next runs no Python code, so it is atomic under the GIL: no digits are handed out twice.
        digits = next(self.ids, None)
        return digits if digits is not None else self.refill()


_pool = _HexPool()
os.register_at_fork(after_in_child=_pool.empty)
_random_hex = _pool.take


def new_correlation_id(prefix: str = DEFAULT_PREFIX) -> str:
    """A fresh ID: ``prefix`` plus 24 random hex digits (``req_3f9c...``)."""
    return prefix + _random_hex()


class CorrelationPolicy:
    """Which incoming IDs are accepted and how new ones look (compiled once, at startup).

    Args:
        pattern: regular expression an incoming ID must match in full.
        prefix: prefix of generated IDs.
    """

    __slots__ = ("_match", "prefix")

    def __init__(self, pattern: str = DEFAULT_PATTERN, prefix: str = DEFAULT_PREFIX):
        if _FORBIDDEN.search(prefix):
            raise ValueError(f"correlation ID prefix {prefix!r}: no spaces or control characters")
        self._match = re.compile(pattern).fullmatch
        self.prefix = prefix

    def accept(self, value: str | None) -> str | None:
        """``value`` if it is an acceptable ID, else None (the caller generates one).

        An ID that holds a secret (``token:abc``, which the default pattern allows) is refused too: the ID is
        written unredacted on every line, span and response of its request or task.
        """
        if not value or len(value) > 128 or _FORBIDDEN.search(value) or not self._match(value):
            return None
        if redact_text(value) != value:
            return None
        return value

    def new(self) -> str:
        return self.prefix + _random_hex()


@contextlib.contextmanager
def correlation_context(correlation_id: str | None = None, prefix: str = DEFAULT_PREFIX) -> Iterator[str]:
    """Run a block (a management command, a thread's work) under a given or new correlation ID.

    >>> with correlation_context() as cid:
    ...     logger.info("import started")      # carries cid
    """
    bound = correlation_id or new_correlation_id(prefix)
    token = _current.set(bound)
    try:
        yield bound
    finally:
        _current.reset(token)


def wrap_with_context(fn: Callable[..., T]) -> Callable[..., T]:
    """Capture the current context (correlation ID included) for ``fn`` to run in another thread.

    >>> executor.submit(wrap_with_context(work), item)
    """
    context = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> T:
        return context.copy().run(fn, *args, **kwargs)

    return run
