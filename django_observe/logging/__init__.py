"""Structured logging: every line of the process in JSON or a readable text format, with the correlation ID.

Use the formatters in your own ``LOGGING`` dict::

    "formatters": {"json": {"()": "django_observe.logging.JSONFormatter"}}
"""

# First: structlog without its Twisted support (django_observe.logging._structlog), before .setup imports it.
from . import _structlog  # noqa: F401
from .setup import TRACE, JSONFormatter, TextFormatter, configure_logging

__all__ = ["TRACE", "JSONFormatter", "TextFormatter", "configure_logging"]
