"""Filters that keep one line per event: Django's own response lines of requests django_observe logs already,
and library warnings that repeat on every call.

- ``django.request`` writes a line (with the traceback, for a 500) for every response >= 400, and runserver's
  ``django.server`` one for every response: next to the request line (which carries the status, the route
  and the traceback) they say the same thing twice or three times. :class:`DuplicateDjangoLines` drops them
  for requests ``ObserveMiddleware`` answered (``LOG_DEDUPLICATE``, on by default under ``DEBUG``).
- kombu's "No hostname was supplied" is written on every connection of a broker URL without a host (the
  filesystem and memory transports): :class:`OncePerProcess` lets the first one through.
"""

from __future__ import annotations

import logging

from ..correlation import correlation_id_var

__all__ = ["PROBE_ATTR", "DuplicateDjangoLines", "OncePerProcess", "install_quiet_filters"]

# Set on a request the middleware answered as a probe (/healthz, /readyz): no request line is written for it.
PROBE_ATTR = "_django_observe_probe"
ONCE = {"kombu.connection": ("No hostname was supplied",)}


class DuplicateDjangoLines(logging.Filter):
    """Drops ``django.request`` and ``django.server`` response lines of requests django_observe logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "status_code"):
            return True
        if record.name == "django.server":  # runserver: the ID is still bound while it writes its line
            return correlation_id_var.get(None) is None
        request = getattr(record, "request", None)
        return not (hasattr(request, "correlation_id") or getattr(request, PROBE_ATTR, False))


class OncePerProcess(logging.Filter):
    """Lets the first record whose message starts with one of ``prefixes`` through, and drops the others."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        for prefix in self.prefixes:
            if message.startswith(prefix):
                if prefix in self.seen:
                    return False
                self.seen.add(prefix)
        return True


def install_quiet_filters(deduplicate: bool) -> None:
    """Add the filters to their loggers (replacing those a previous call added)."""
    for name in ("django.request", "django.server", *ONCE):
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, (DuplicateDjangoLines, OncePerProcess))]:
            logger.removeFilter(old)
    for name, prefixes in ONCE.items():
        logging.getLogger(name).addFilter(OncePerProcess(prefixes))
    if deduplicate:
        for name in ("django.request", "django.server"):
            logging.getLogger(name).addFilter(DuplicateDjangoLines())
