"""The request line: one ``django_observe.request`` record per request, written by ``ObserveMiddleware``.

``GET /api/items/7`` with ``method``, ``path``, ``route``, ``status``, ``duration_ms``, ``db_queries``,
``db_ms``, ``user_id`` and, with tracing on, ``trace_id``/``span_id``. Successful calls of django_observe's own
endpoints (health, metrics) are not logged; 4xx lines are warnings and 5xx lines errors;
``LOG_REQUESTS_SAMPLE`` may drop a successful, fast one.

When the process's logging is ours (the root logger's one handler is the stream handler that
``configure_logging`` installs, and nothing on the way adds a handler or a filter), the line takes a direct
path: no ``LogRecord``, no handler chain; our formatter renders it once and it is written once. Any other
set-up (a project's own ``LOGGING``, pytest's ``caplog``) gets an ordinary record through ``logging``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..requestinfo import EXCEPTION_ATTR, OWN_APP, hex_ids, route, span_context, user_id
from .flavours import REQUEST_LOGGER, TRACE_SAMPLED, USER_AGENT
from .sampling import RequestSampler
from .setup import _ObserveFormatter

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from ..conf import ObserveConfig
    from ..queries import QueryStats

__all__ = ["RequestLine"]

USER_AGENT_CHARS = 512


_LEVEL_NAMES = {logging.INFO: "INFO", logging.WARNING: "WARNING", logging.ERROR: "ERROR"}


class _LineFacts:
    """What our formatter reads of a record, for the direct path (which builds none)."""

    __slots__ = ("created", "levelname", "name")

    def __init__(self, name: str, levelname: str, created: float):
        self.name, self.levelname, self.created = name, levelname, created


def _direct_handler(logger: logging.Logger, level: int) -> logging.StreamHandler | None:
    """The handler the line can be written to directly, or None when ``logging`` must handle the record.

    That is when every logger from ``logger`` up to the root has no handler, no filter and propagates, and
    the root's one handler is a plain ``StreamHandler`` with our formatter, no filter, and a level that
    lets ``level`` pass: then a record would only ever reach that handler's ``format`` and ``emit``.
    """
    current: Any = logger
    while current.parent is not None:
        if current.handlers or current.filters or not current.propagate:
            return None
        current = current.parent
    handlers = current.handlers
    if len(handlers) != 1 or current.filters:
        return None
    handler = handlers[0]
    if (
        type(handler) is not logging.StreamHandler
        or handler.filters
        or level < handler.level
        or not isinstance(handler.formatter, _ObserveFormatter)
    ):
        return None
    return handler


class RequestLine:
    """Writes the request line.

    Args:
        sampler: drops successful, fast lines (``LOG_REQUESTS_SAMPLE``); None keeps every line.
        flavor_fields: add ``user_agent`` and ``trace_sampled``, which the platform flavours place
            (``LOG_JSON_FLAVOR`` other than ``default``).
    """

    __slots__ = ("flavor_fields", "logger", "sampler")

    def __init__(self, sampler: RequestSampler | None = None, flavor_fields: bool = False):
        self.sampler = sampler
        self.flavor_fields = flavor_fields
        self.logger = logging.getLogger(REQUEST_LOGGER)

    @classmethod
    def from_config(cls, config: ObserveConfig) -> RequestLine | None:
        """None with ``LOG_REQUESTS`` off."""
        if not config.log_requests:
            return None
        return cls(
            RequestSampler.from_config(config.log_requests_sample, config.log_slow_request_ms),
            flavor_fields=config.log_format == "json" and config.log_json_flavor != "default",
        )

    def write(self, request: HttpRequest, response: HttpResponse, start_ns: int, stats: QueryStats | None) -> None:
        """Log the line for ``request`` (``start_ns``: ``time.perf_counter_ns()`` when it arrived)."""
        status = response.status_code
        match = request.resolver_match
        if match is not None and status < 400 and OWN_APP in match.app_names:
            return  # successful health and metrics calls are noise
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        matched = route(request)
        duration_ms = round((time.perf_counter_ns() - start_ns) / 1e6, 2)
        if self.sampler is not None and not self.sampler.keep(request.path, matched, status, duration_ms):
            return
        extra: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "route": matched,
            "status": status,
            "duration_ms": duration_ms,
        }
        if stats is not None:
            extra["db_queries"] = stats.count
            extra["db_ms"] = stats.milliseconds
        uid = user_id(request)
        if uid is not None:
            extra["user_id"] = uid
        context = span_context(request)
        if context is not None:
            extra["trace_id"], extra["span_id"] = hex_ids(context)
            if self.flavor_fields:
                extra[TRACE_SAMPLED] = context.trace_flags.sampled
        if self.flavor_fields:
            agent = request.META.get("HTTP_USER_AGENT")
            if agent:
                extra[USER_AGENT] = agent[:USER_AGENT_CHARS]
        exception = request.__dict__.get(EXCEPTION_ATTR)
        exc_info = (type(exception), exception, exception.__traceback__) if exception is not None else None
        message = f"{request.method} {request.path}"
        handler = _direct_handler(logger, level)
        if handler is not None:
            facts = _LineFacts(logger.name, _LEVEL_NAMES[level], time.time())
            try:
                line = handler.formatter.render(facts, message, extra, exc_info)  # type: ignore[union-attr]
                with handler.lock:  # type: ignore[union-attr]
                    handler.stream.write(line + handler.terminator)
                    handler.stream.flush()
                return
            except Exception:  # as StreamHandler.emit does: report and carry on
                record = logger.makeRecord(logger.name, level, __file__, 0, message, (), exc_info, "write", extra)
                handler.handleError(record)
                return
        # makeRecord + handle is what Logger.log does, minus the call-site lookup (a stack walk on every
        # request): the line's call site is always this method, so no handler can want it.
        record = logger.makeRecord(logger.name, level, __file__, 0, message, (), exc_info, "write", extra)
        logger.handle(record)
