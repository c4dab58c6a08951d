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

DEFAULT_PATTERN = r"[A-Za-z0-9._:-]{1,128}"
DEFAULT_PREFIX = "req_"
# Whatever pattern a project configures, these never pass: control characters could split or colour a
# log line, and a space would make the ID ambiguous in the text format.
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f]")


def get_correlation_id() -> str | None:
    """The correlation ID of the current request or task, or None outside of one."""
    return _current.get()


def bind_correlation_id(correlation_id: str | None) -> contextvars.Token[str | None]:
    """Bind ``correlation_id`` in the current context; pass the token to :func:`reset_correlation_id`."""
    return _current.set(correlation_id)


def reset_correlation_id(token: contextvars.Token[str | None]) -> None:
    _current.reset(token)


def new_correlation_id(prefix: str = DEFAULT_PREFIX) -> str:
    """A fresh ID: ``prefix`` plus 24 random hex digits (``req_3f9c...``)."""
    return prefix + os.urandom(12).hex()  # what secrets.token_hex(12) returns, without its three calls


class CorrelationPolicy:
    """Which incoming IDs are accepted and how new ones look (compiled once, at startup).

    Args:
        pattern: regular expression an incoming ID must match in full.
        prefix: prefix of generated IDs.
    """

    __slots__ = ("_match", "prefix")

    def __init__(self, pattern: str = DEFAULT_PATTERN, prefix: str = DEFAULT_PREFIX):
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
        return new_correlation_id(self.prefix)


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
