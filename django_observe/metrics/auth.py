"""``authorization_duration_seconds``: time spent deciding who the caller is and whether it may proceed.

Measured automatically for Django's ``AuthenticationMiddleware`` (the session user, when something loads it)
and DRF's authentication and permission checks; for your own auth code use :func:`authorization`.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..requestinfo import request_state
from ..runtime import current

__all__ = ["AuthorizationTimer", "authorization", "install_auth_instrumentation"]

ALLOW = {"allow", "authenticated"}


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
        _record(timer.mechanism, timer.decision, time.perf_counter() - start)


def _record(mechanism: str, decision: str, seconds: float) -> None:
    runtime = current()
    if runtime is not None and runtime.metrics is not None:
        runtime.metrics.catalogue.authorization_duration.labels(mechanism, decision).observe(seconds)
    if decision in ALLOW:
        state = request_state.get()
        if state is not None:
            state.authorized = True


def _timed_session_user(get_user: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(get_user)
    def get_user_timed(request: Any) -> Any:
        start = time.perf_counter()
        user = get_user(request)
        decision = "authenticated" if getattr(user, "is_authenticated", False) else "anonymous"
        _record("session", decision, time.perf_counter() - start)
        return user

    return get_user_timed


def install_auth_instrumentation() -> None:
    """Wrap Django's session user loading and, when the project has it, DRF's authentication and permissions
    (once; the wrappers record into the current runtime's catalogue)."""
    from django.apps import apps

    # Importing django.contrib.auth's middleware loads its models, which fails in a project without the app.
    if apps.is_installed("django.contrib.auth"):
        from django.contrib.auth import middleware as auth_middleware

        if not getattr(auth_middleware.get_user, "_django_observe", False):
            auth_middleware.get_user = _timed_session_user(auth_middleware.get_user)
            auth_middleware.get_user._django_observe = True
    # DRF when the project has it: in INSTALLED_APPS, as DRF's installation asks, or already imported. Importing
    # it for a project that does not use it would load DRF and what it imports (psycopg among them, whose import
    # sets a context variable every thread hop then copies): 26k objects every full garbage collection walks.
    if not (apps.is_installed("rest_framework") or "rest_framework" in sys.modules):
        return
    try:
        from rest_framework.request import Request
        from rest_framework.views import APIView
    except ImportError:
        return
    if getattr(Request._authenticate, "_django_observe", False):
        return
    original_authenticate = Request._authenticate
    original_permissions = APIView.check_permissions

    def _authenticate(self: Any) -> None:
        start = time.perf_counter()
        try:
            original_authenticate(self)
        except BaseException:
            _record("drf", "deny", time.perf_counter() - start)
            raise
        authenticator = type(self._authenticator).__name__ if self._authenticator else "anonymous"
        decision = "authenticated" if self._authenticator else "anonymous"
        _record(f"drf.{authenticator}", decision, time.perf_counter() - start)

    def check_permissions(self: Any, request: Any) -> None:
        start = time.perf_counter()
        try:
            original_permissions(self, request)
        except BaseException:
            _record("drf.permissions", "deny", time.perf_counter() - start)
            raise
        _record("drf.permissions", "allow", time.perf_counter() - start)

    _authenticate._django_observe = True  # type: ignore[attr-defined]
    Request._authenticate = _authenticate
    APIView.check_permissions = check_permissions
