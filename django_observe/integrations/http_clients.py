"""Outbound propagation: ``requests`` and ``httpx`` calls carry the current correlation ID.

:func:`install` patches, once per process and only for the libraries that are importable (a library not
imported yet is patched right after its first import, so nothing is imported for it up front):

- ``requests.adapters.HTTPAdapter.send`` (every ``Session``, so ``requests.get()`` too);
- ``httpx.HTTPTransport.handle_request`` and ``httpx.AsyncHTTPTransport.handle_async_request`` (every
  ``Client`` and ``AsyncClient`` on the default transport, so ``httpx.get()`` too).

Those are the layers that send one HTTP request each, so every redirect hop is checked on its own: the
header is added just for the send and taken out again afterwards, which keeps it from being copied into a
redirect to a host outside ``CORRELATION_PROPAGATE_HOSTS``. A header the caller set (on the request, the
session or the client) is never touched, and nothing is added outside a request or task (no current ID).

``traceparent`` is not ours to add: with ``OTEL_ENABLED`` the OpenTelemetry requests and httpx instrumentors
inject it one layer up (``Session.send``, or the same transport methods), for the same calls.

The cost on each call is a context variable read, a header lookup and, with an allowlist other than
``"*"``, a host check cached per host.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
import types
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from ..conf import ObserveConfig
from ..correlation import get_correlation_id
from ..runtime import Runtime, current
from ._patching import after_import, forget_after_import

__all__ = [
    "HostAllowlist",
    "HttpClientsIntegration",
    "OutboundPolicy",
    "install",
    "installed",
    "integration",
    "outbound_headers",
    "uninstall",
]

_CACHE_SIZE = 1024
# An ID bound by code (correlation_context("...")) is not validated like an incoming one; a value a client
# library would refuse as a header (control characters, non-ASCII) must not make the caller's call fail.
_UNSENDABLE = re.compile(r"[^\x21-\x7e]")


def _sendable_correlation_id() -> str | None:
    """The current correlation ID if it can be sent as a header value, else None."""
    correlation_id = get_correlation_id()
    if correlation_id is None or _UNSENDABLE.search(correlation_id):
        return None
    return correlation_id


class HostAllowlist:
    """Which hosts may receive the correlation ID.

    Args:
        patterns: clean entries of ``CORRELATION_PROPAGATE_HOSTS`` (see ``conf.host_patterns``): ``"*"``
            allows every host; ``"api.internal"`` or ``"10.0.0.7"`` allows that host only;
            ``"*.example.com"`` allows every subdomain of example.com at any depth, not example.com itself.

    Hosts are compared lower-cased, without a trailing dot or IPv6 brackets; ports are ignored.
    """

    __slots__ = ("_cache", "_exact", "_suffixes", "allows_all")

    def __init__(self, patterns: Iterable[str]):
        patterns = tuple(patterns)
        self.allows_all = "*" in patterns
        self._exact = frozenset(p for p in patterns if not p.startswith("*"))
        self._suffixes = tuple(p[1:] for p in patterns if p.startswith("*."))  # ".example.com"
        self._cache: dict[str, bool] = {}

    def allows(self, host: str | None) -> bool:
        """Whether ``host`` (as found in a URL) may receive the header."""
        if self.allows_all:
            return True
        if not host:
            return False
        allowed = self._cache.get(host)
        if allowed is None:
            allowed = self._match(host)
            if len(self._cache) >= _CACHE_SIZE:  # a crawler calling many hosts must not grow it forever
                self._cache.clear()
            self._cache[host] = allowed
        return allowed

    def allows_url(self, url: str) -> bool:
        """Whether the host of ``url`` may receive the header (a URL without a host may not)."""
        if self.allows_all:
            return True
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return False
        return self.allows(host)

    def _match(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return host in self._exact or host.endswith(self._suffixes)


class OutboundPolicy:
    """Which header outbound calls carry, and to which hosts (``CORRELATION_PROPAGATE_HOSTS``)."""

    __slots__ = ("header", "hosts")

    def __init__(self, header: str, hosts: HostAllowlist):
        self.header = header
        self.hosts = hosts

    @classmethod
    def from_config(cls, config: ObserveConfig) -> OutboundPolicy | None:
        """None with ``CORRELATION_PROPAGATE`` off; the header is the first of ``CORRELATION_HEADERS``."""
        if not config.correlation_propagate:
            return None
        return cls(config.correlation_headers[0], HostAllowlist(config.correlation_propagate_hosts))


def _policy() -> OutboundPolicy | None:
    """The current runtime's policy; None (off) passes every call through untouched."""
    runtime = current()
    policy = runtime.outbound if runtime is not None else None
    return policy if isinstance(policy, OutboundPolicy) else None


# Our patches on the client libraries (process facts, not configuration):
# (owner class, attribute name) -> (the original function, our wrapper), for uninstall().
_originals: dict[tuple[type, str], tuple[Callable[..., Any], Callable[..., Any]]] = {}


def outbound_headers(url: str) -> dict[str, str]:
    """The correlation header to add to a call to ``url``, for HTTP clients django_observe does not patch.

    >>> urllib.request.Request(url, headers=outbound_headers(url))

    Returns an empty dict when propagation is off, outside a request or task, or for a host outside
    ``CORRELATION_PROPAGATE_HOSTS``.
    """
    policy, correlation_id = _policy(), _sendable_correlation_id()
    if policy is None or correlation_id is None or not policy.hosts.allows_url(url):
        return {}
    return {policy.header: correlation_id}


# --- requests


def _wrap_requests_send(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        policy, correlation_id = _policy(), _sendable_correlation_id()
        headers = request.headers
        if (
            policy is None
            or correlation_id is None
            or headers is None
            or policy.header in headers
            or not policy.hosts.allows_url(request.url)
        ):
            return original(self, request, *args, **kwargs)
        headers[policy.header] = correlation_id
        try:
            return original(self, request, *args, **kwargs)
        finally:
            # The redirect logic copies this request; the next hop decides for itself.
            request.headers.pop(policy.header, None)

    return send


# --- httpx


def _add_httpx_header(request: Any) -> str | None:
    """Add the header to an ``httpx.Request`` when it should carry it; returns the header name if added."""
    policy, correlation_id = _policy(), _sendable_correlation_id()
    if policy is None or correlation_id is None or policy.header in request.headers:
        return None
    if not policy.hosts.allows_all and not policy.hosts.allows(request.url.host):
        return None
    request.headers[policy.header] = correlation_id
    return policy.header


def _remove_httpx_header(request: Any, header: str) -> None:
    # Read request.headers again: the OpenTelemetry wrapper may have replaced the Headers object.
    if header in request.headers:
        del request.headers[header]


def _wrap_httpx_handle_request(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def handle_request(self: Any, request: Any) -> Any:
        added = _add_httpx_header(request)
        if added is None:
            return original(self, request)
        try:
            return original(self, request)
        finally:
            _remove_httpx_header(request, added)

    return handle_request


def _wrap_httpx_handle_async_request(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def handle_async_request(self: Any, request: Any) -> Any:
        added = _add_httpx_header(request)
        if added is None:
            return await original(self, request)
        try:
            return await original(self, request)
        finally:
            _remove_httpx_header(request, added)

    return handle_async_request


# --- install / uninstall


def _unbound(original: Any) -> Callable[..., Any]:
    """``original`` as a plain ``(self, *args)`` callable.

    A method already wrapped by someone else (an OpenTelemetry instrumentor applied before Django loaded
    wraps with ``wrapt``) is a descriptor that must be bound to the instance, not called with ``self``.
    """
    if type(original) is types.FunctionType:  # not isinstance: a wrapt proxy claims the class of what it wraps
        return original

    @functools.wraps(original)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return original.__get__(self, type(self))(*args, **kwargs)

    return call


def _patch(owner: type, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    if (owner, name) in _originals:
        return
    original = owner.__dict__[name]
    wrapper = wrap(_unbound(original))
    _originals[(owner, name)] = (original, wrapper)
    setattr(owner, name, wrapper)


def _patch_requests() -> None:
    from requests.adapters import HTTPAdapter

    _patch(HTTPAdapter, "send", _wrap_requests_send)


def _patch_httpx() -> None:
    import httpx

    _patch(httpx.HTTPTransport, "handle_request", _wrap_httpx_handle_request)
    _patch(httpx.AsyncHTTPTransport, "handle_async_request", _wrap_httpx_handle_async_request)


# library -> (module whose import completes the classes we patch, patch function)
_LIBRARIES: dict[str, tuple[str, Callable[[], None]]] = {
    "requests": ("requests.adapters", _patch_requests),
    "httpx": ("httpx", _patch_httpx),
}


def install() -> tuple[str, ...]:
    """Patch the installed client libraries once (safe to call again); the patches follow the current
    runtime's :class:`OutboundPolicy`, so a rebuilt runtime with propagation off makes them pass through.

    Returns:
        The libraries whose calls now carry the header (``("requests", "httpx")`` when both are installed).
    """
    libraries = []
    for library, (module, patch) in _LIBRARIES.items():
        if module in sys.modules:
            patch()
        elif _installed(library):
            after_import(module, patch, owner="http_clients")
        else:
            continue
        libraries.append(library)
    return tuple(libraries)


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def installed() -> tuple[str, ...]:
    """The libraries currently patched (empty when propagation is off or never installed)."""
    if _policy() is None:
        return ()
    return tuple(dict.fromkeys(owner.__module__.split(".")[0] for owner, _ in _originals))


def uninstall() -> None:
    """Restore the original methods (for tests).

    A method wrapped again by someone else after us (an OpenTelemetry instrumentor) is left in place, so
    their wrapper keeps working; ours then passes every call through when the policy is off.
    """
    forget_after_import("http_clients")
    for (owner, name), (original, wrapper) in list(_originals.items()):
        # An identity check: a wrapt proxy around our wrapper would answer for our attributes too.
        if owner.__dict__.get(name) is wrapper:
            setattr(owner, name, original)
            del _originals[(owner, name)]


class HttpClientsIntegration:
    """The ``http_clients`` row: ``requests`` and ``httpx`` calls carry the correlation ID."""

    name = "http_clients"

    def available(self, runtime: Runtime) -> bool:
        """``requests`` or ``httpx`` is there. One not imported yet is patched right after its first import,
        so installing imports nothing for a library the process never uses."""
        return any(module in sys.modules or _installed(library) for library, (module, _) in _LIBRARIES.items())

    def install(self, runtime: Runtime) -> None:
        """Patch the libraries once, when the runtime propagates (``CORRELATION_PROPAGATE``)."""
        if runtime.outbound is not None:
            install()

    def uninstall(self) -> None:
        """Restore the original methods (see :func:`uninstall`)."""
        uninstall()


integration = HttpClientsIntegration()
