"""Structured logging: every line of the process in JSON or a readable text format, with the correlation ID.

Use the formatters in your own ``LOGGING`` dict::

    "formatters": {"json": {"()": "django_observe.logging.JSONFormatter"}}
"""

from .setup import TRACE, JSONFormatter, TextFormatter, configure_logging

__all__ = ["TRACE", "JSONFormatter", "TextFormatter", "configure_logging"]
