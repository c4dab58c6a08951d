"""Outbound calls of the demo (views and the ``fetch`` task): loopback targets only."""

from __future__ import annotations


def loopback_url(raw: str | None) -> str | None:
    """``raw`` if it is an http:// URL to a loopback address (127.0.0.0/8, ::1, localhost), else None."""
    import ipaddress
    from urllib.parse import urlsplit

    # Backslashes, whitespace and userinfo are where URL parsers disagree about the host: refused.
    if not raw or len(raw) > 2000 or any(c in raw for c in "\\ \t\r\n"):
        return None
    try:
        parts = urlsplit(raw)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme != "http" or not host or parts.username or parts.password:
        return None
    if host == "localhost":
        return raw
    try:
        return raw if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def call_outbound(url: str, client: str) -> int:
    """One GET with the named client; redirects are not followed (they could leave loopback)."""
    import httpx
    import requests

    if client == "requests":
        return requests.get(url, timeout=5, allow_redirects=False).status_code
    if client == "requests_session":
        with requests.Session() as session:
            return session.get(url, timeout=5, allow_redirects=False).status_code
    if client == "httpx":
        return httpx.get(url, timeout=5, follow_redirects=False).status_code
    with httpx.Client(timeout=5, follow_redirects=False) as http:
        return http.get(url).status_code
