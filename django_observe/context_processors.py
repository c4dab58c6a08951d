"""Template context processors.

Add ``"django_observe.context_processors.correlation"`` to ``TEMPLATES[...]["OPTIONS"]["context_processors"]``
for ``{{ correlation_id }}`` in pages rendered with a request (404 and 403 pages, your views). The 500 page
is rendered without one by Django's default handler: use ``{% load observe %}{% correlation_id %}`` there.
"""

from __future__ import annotations

from django.http import HttpRequest

from .correlation import get_correlation_id

__all__ = ["correlation"]


def correlation(request: HttpRequest) -> dict[str, str]:
    """``{"correlation_id": ...}``: the request's ID (empty outside a request handled by the middleware)."""
    return {"correlation_id": getattr(request, "correlation_id", None) or get_correlation_id() or ""}
