"""``authorization_duration_seconds``: time spent deciding who the caller is and whether it may proceed.

Measured automatically for Django's ``AuthenticationMiddleware`` (the session user, when something loads it)
and DRF's authentication and permission checks (``django_observe.integrations.auth``); for your own auth code
use :func:`authorization`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from ..requestinfo import request_state

__all__ = [
    "ALLOW",
    "NO_AUTHORIZATION_METRICS",
    "AuthorizationMetrics",
    "AuthorizationTimer",
    "authorization",
    "bind",
    "record_authorization",
]

ALLOW = {"allow", "authenticated"}


class AuthorizationMetrics:
    """``authorization_duration_seconds{mechanism,decision}``; built without the histogram (metrics off) it
    records nothing (``metrics.recorders.authorization_metrics`` builds it for a runtime)."""

    __slots__ = ("enabled", "histogram")

    def __init__(self, histogram: Any = None) -> None:
        self.histogram, self.enabled = histogram, histogram is not None

    def observe(self, mechanism: str, decision: str, seconds: float) -> None:
        if self.histogram is not None:
            self.histogram.labels(mechanism, decision).observe(seconds)


NO_AUTHORIZATION_METRICS = AuthorizationMetrics()

# The recorder of the installed runtime: bound by the ``auth`` integration when it installs (every runtime
# built), a do-nothing one before django.setup() and after it uninstalls.
_recorder = NO_AUTHORIZATION_METRICS


def bind(recorder: AuthorizationMetrics) -> None:
    """Hand :func:`record_authorization` the recorder of a runtime (``integrations.auth`` does, on install)."""
    global _recorder
    _recorder = recorder


class AuthorizationTimer:
    """Set ``decision`` inside the block: ``"allow"``/``"authenticated"`` marks the request authorized."""

    __slots__ = ("decision", "mechanism")

    def __init__(self, mechanism: str):
        self.mechanism = mechanism
        self.decision = "deny"


@contextlib.contextmanager
def authorization(mechanism: str) -> Iterator[AuthorizationTimer]:
    """Time a block of authentication/authorization code.

    >>> with authorization("api_token") as auth:
    ...     user = check_token(request)
    ...     auth.decision = "allow" if user else "deny"

    An exception inside the block records ``decision="error"``.
    """
    timer = AuthorizationTimer(mechanism)
    start = time.perf_counter()
    try:
        yield timer
    except BaseException:
        timer.decision = "error"
        raise
    finally:
        record_authorization(timer.mechanism, timer.decision, time.perf_counter() - start)


def record_authorization(mechanism: str, decision: str, seconds: float) -> None:
    """One ``authorization_duration_seconds`` observation; an allowing decision marks the request authorized."""
    _recorder.observe(mechanism, decision, seconds)
    if decision in ALLOW:
        state = request_state.get()
        if state is not None:
            state.authorized = True
