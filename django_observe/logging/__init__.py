"""Structured logging: every line of the process in JSON or a readable text format, with the correlation ID.

Use the formatters in your own ``LOGGING`` dict::

    "formatters": {"json": {"()": "django_observe.logging.JSONFormatter"}}
"""

import sys

# First: structlog without its Twisted support (django_observe.logging._structlog), before .setup imports it.
from . import _structlog  # noqa: F401
from .setup import TRACE, JSONFormatter, TextFormatter, configure_logging

__all__ = ["TRACE", "JSONFormatter", "TextFormatter", "configure_logging", "flush_otlp_logs"]


def flush_otlp_logs() -> None:
    """Export the buffered OTLP log records now (a worker about to leave with ``os._exit``). Without the OTLP
    log exporter there is no handler, and its module is not even imported."""
    otlp = sys.modules.get(f"{__name__}.otlp")
    if otlp is not None:
        otlp.flush_all()
