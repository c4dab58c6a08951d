"""Authorization timing: Django's session user loading and DRF's authentication and permission checks.

Each wrapped call records one ``authorization_duration_seconds{mechanism,decision}`` observation through
:func:`django_observe.metrics.auth.record_authorization` (which also marks the request authorized):

- ``django.contrib.auth.get_user``, which ``AuthenticationMiddleware``'s lazy ``request.user`` calls (through
  the module, at call time): mechanism ``session``, decision ``authenticated`` or ``anonymous``;
- ``rest_framework.request.Request._authenticate``: ``drf.<Authenticator class>``, or ``drf`` when it raises;
- ``rest_framework.views.APIView.check_permissions``: ``drf.permissions``, ``allow`` or ``deny``.

Always installed: :meth:`AuthIntegration.install` hands ``record_authorization`` (and so the public
``authorization()`` block) the runtime's recorder, a do-nothing one with metrics off, and wraps the functions
when metrics are on; :meth:`AuthIntegration.uninstall` puts the original functions back.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

from ..metrics import auth as auth_metrics
from ..metrics.auth import NO_AUTHORIZATION_METRICS, record_authorization
from ..metrics.recorders import authorization_metrics
from ..runtime import Runtime
from ._patching import Patches

__all__ = ["AuthIntegration", "integration"]


def _timed_session_user(get_user: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(get_user)
    def get_user_timed(request: Any) -> Any:
        start = time.perf_counter()
        user = get_user(request)
        decision = "authenticated" if getattr(user, "is_authenticated", False) else "anonymous"
        record_authorization("session", decision, time.perf_counter() - start)
        return user

    return get_user_timed


def _timed_authenticate(original: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(original)
    def _authenticate(self: Any) -> None:
        start = time.perf_counter()
        try:
            original(self)
        except BaseException:
            record_authorization("drf", "deny", time.perf_counter() - start)
            raise
        authenticator = type(self._authenticator).__name__ if self._authenticator else "anonymous"
        decision = "authenticated" if self._authenticator else "anonymous"
        record_authorization(f"drf.{authenticator}", decision, time.perf_counter() - start)

    return _authenticate


def _timed_permissions(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    @functools.wraps(original)
    def check_permissions(self: Any, request: Any) -> None:
        start = time.perf_counter()
        try:
            original(self, request)
        except BaseException:
            record_authorization("drf.permissions", "deny", time.perf_counter() - start)
            raise
        record_authorization("drf.permissions", "allow", time.perf_counter() - start)

    return check_permissions


def _uses_auth() -> bool:
    from django.apps import apps

    return apps.is_installed("django.contrib.auth")


def _uses_drf() -> bool:
    # In INSTALLED_APPS, as DRF's installation asks, or already imported. Importing it for a project that does
    # not use it would load DRF and what it imports (psycopg among them, whose import sets a context variable
    # every thread hop then copies): 26k objects every full garbage collection walks.
    from django.apps import apps

    return apps.is_installed("rest_framework") or "rest_framework" in sys.modules


class AuthIntegration:
    """The ``auth`` row: binds the ``authorization_duration_seconds`` recorder; times ``django.contrib.auth``'s
    session user and DRF's checks (metrics on)."""

    name = "auth"

    def __init__(self) -> None:
        self.patches = Patches()

    def available(self, runtime: Runtime) -> bool:
        """Always: ``authorization()`` is django_observe's own block, for any auth code; the libraries are
        wrapped only where the project uses them (``django.contrib.auth`` or DRF in ``INSTALLED_APPS``, DRF also
        when already imported)."""
        return True

    def install(self, runtime: Runtime) -> None:
        """Bind ``runtime``'s recorder (do-nothing with metrics off), and wrap the functions once when metrics
        are on."""
        recorder = authorization_metrics(runtime.metrics)
        auth_metrics.bind(recorder)
        if not recorder.enabled:
            return
        # django.contrib.auth itself, not its middleware module: importing the middleware loads its views, forms
        # and django.contrib.sites (13 modules, 0.4 MB) into a project that may not use the middleware.
        if _uses_auth():
            import django.contrib.auth

            self.patches.wrap(django.contrib.auth, "get_user", _timed_session_user)
        if _uses_drf():
            try:
                from rest_framework.request import Request
                from rest_framework.views import APIView
            except ImportError:
                return
            self.patches.wrap(Request, "_authenticate", _timed_authenticate)
            self.patches.wrap(APIView, "check_permissions", _timed_permissions)

    def uninstall(self) -> None:
        """Put the original functions back; ``authorization()`` records nothing."""
        self.patches.restore()
        auth_metrics.bind(NO_AUTHORIZATION_METRICS)


integration = AuthIntegration()
