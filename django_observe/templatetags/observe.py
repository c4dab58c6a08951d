"""``{% load observe %}{% correlation_id %}``: the current request's correlation ID in a template.

Django's default ``500`` view renders ``500.html`` without a request or context processors, so the tag
reads the ID bound by the middleware for the request (or task) being handled, not the template context.
"""

from __future__ import annotations

from django import template

from ..correlation import get_correlation_id

register = template.Library()


@register.simple_tag
def correlation_id() -> str:
    """The correlation ID being handled, or an empty string outside a request (escaped like any value)."""
    return get_correlation_id() or ""
