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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..llm.usage import RequestTotals, take_request_totals
from ..requestinfo import (
    EXCEPTION_ATTR,
    OWN_APP,
    SPAN_CONTEXT_ATTR,
    STANDARD_METHODS,
    UNMATCHED_ROUTE,
    hex_ids,
    user_id,
)
from .flavours import REQUEST_LOGGER, TRACE_SAMPLED, USER_AGENT
from .processors import format_timestamp, task_context, timestamp_at
from .renderers import HUNDREDTHS, quote
from .sampling import RequestSampler
from .setup import STRUCTLOG_CONTEXT_VARS, _ObserveFormatter, structlog_context_bound

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from ..conf import ObserveConfig
    from ..queries import QueryStats

__all__ = ["RequestLine"]

USER_AGENT_CHARS = 512
_SHAPES_KEPT = 1024  # (method, path, route, status) combinations kept rendered; the store starts over when full
_SHAPE_PATH_CHARS = 256  # a longer path is rendered each time, never kept


_UNSEEN: Any = ()  # a shape not rendered yet (None is a shape the direct path cannot write)
_INFO, _WARNING, _ERROR = logging.INFO, logging.WARNING, logging.ERROR
_LEVEL_NAMES = {_INFO: "INFO", _WARNING: "WARNING", _ERROR: "ERROR"}


class _LineFacts:
    """What our formatter reads of a record, for the direct path (which builds none)."""

    __slots__ = ("created", "levelname", "name")

    def __init__(self, name: str, levelname: str, created: float):
        self.name, self.levelname, self.created = name, levelname, created


def _plain(text: str) -> bool:
    """No ``=``, ``:`` or space: nothing redaction would look at (``_may_hold_secret`` in processors.py;
    the path's check is written out in ``write``)."""
    return "=" not in text and ":" not in text and " " not in text


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

    __slots__ = ("_logger_json", "_shapes", "flavor_fields", "logger", "sampler")

    def __init__(self, sampler: RequestSampler | None = None, flavor_fields: bool = False):
        self.sampler = sampler
        self.flavor_fields = flavor_fields
        self.logger = logging.getLogger(REQUEST_LOGGER)
        self._logger_json = quote(REQUEST_LOGGER)
        # (method, path, route, status) -> the line's text around the correlation ID, or None for a request
        # the direct path cannot write (its path or method needs the formatter's checks).
        self._shapes: dict[tuple[Any, str, str, Any], tuple[str, str] | None] = {}

    @classmethod
    def from_config(cls, config: ObserveConfig) -> RequestLine | None:
        """None with ``LOG_REQUESTS`` off."""
        if not config.log_requests:
            return None
        return cls(
            RequestSampler.from_config(config.log_requests_sample, config.log_slow_request_ms),
            flavor_fields=config.log_format == "json" and config.log_json_flavor != "default",
        )

    def write(
        self,
        request: HttpRequest,
        response: HttpResponse,
        elapsed_ns: int,
        stats: QueryStats | None,
        correlation_id: str | None,
        end_ns: int | None = None,
    ) -> None:
        """Log the line for ``request`` (``elapsed_ns``: how long it took; ``correlation_id``: the one bound
        for the request; ``end_ns``: the ``time.perf_counter_ns()`` reading at its end, for the timestamp)."""
        llm = take_request_totals()  # first: a line not written must not leave them to the next request
        status = response.status_code
        match = request.resolver_match
        if match is not None and status < 400 and OWN_APP in match.app_names:
            return  # successful health and metrics calls are noise
        level = _INFO if status < 400 else _WARNING if status < 500 else _ERROR
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        matched = match.route if match is not None else UNMATCHED_ROUTE
        # Durations are whole hundredths of a millisecond: integer arithmetic, no float round().
        duration = (elapsed_ns + 5_000) // 10_000
        method, path = request.method, request.path
        if self.sampler is not None and not self.sampler.keep(path, matched, status, duration / 100):
            return
        count, db = None, 0
        if stats is not None:
            count = stats.count
            db = int(stats.seconds * 100_000 + 0.5) if count else 0
        attributes = request.__dict__
        uid = user_id(request) if attributes.get("user") is not None else None
        context = attributes.get(SPAN_CONTEXT_ATTR)
        if context is not None and not context.is_valid:
            context = None
        exception = attributes.get(EXCEPTION_ATTR)
        handler = _direct_handler(logger, level)
        if handler is not None:
            formatter: Any = handler.formatter
            line = None
            if (
                formatter.direct_request_line
                and llm is None
                and exception is None
                and not self.flavor_fields
                and (context is not None or not formatter.trace_step)
                and not (STRUCTLOG_CONTEXT_VARS and structlog_context_bound())
                and not task_context.get()
                and (uid is None or _plain(uid))
            ):
                # What the formatter's chain would write for this line (tests/unit/test_request_line_direct.py
                # compares the two), without building the event: the line is most of a request's cost.
                key = (method, path, matched, status)
                shape = self._shapes.get(key, _UNSEEN)
                if shape is _UNSEEN:
                    shape = self._shape(method, path, matched, status, level, formatter.redact_text)
                    if len(path) <= _SHAPE_PATH_CHARS:  # what hostile paths can make the store hold stays small
                        if len(self._shapes) >= _SHAPES_KEPT:
                            self._shapes.clear()
                        self._shapes[key] = shape
                if shape is not None:
                    head, tail = shape
                    cid = "" if correlation_id is None else f',"correlation_id":{quote(correlation_id)}'
                    queries = (
                        "" if count is None else f',"db_queries":{count},"db_ms":{db // 100}{HUNDREDTHS[db % 100]}'
                    )
                    user = "" if uid is None else f',"user_id":{quote(uid)}'
                    trace = (
                        ""
                        if context is None
                        else f',"trace_id":"{context.trace_id:032x}","span_id":"{context.span_id:016x}"'
                    )
                    stamp = format_timestamp(time.time()) if end_ns is None else timestamp_at(end_ns)
                    line = (
                        f'{{"timestamp":"{stamp}{head}{cid}{tail}{duration // 100}{HUNDREDTHS[duration % 100]}'
                        f"{queries}{user}{trace}}}"
                    )
            try:
                if line is None:
                    exc_info = (type(exception), exception, exception.__traceback__) if exception is not None else None
                    facts = _LineFacts(logger.name, _LEVEL_NAMES[level], time.time())
                    extra = self._fields(request, status, matched, duration / 100, count, db, uid, context, llm)
                    line = formatter.render(facts, f"{method} {path}", extra, exc_info)
                with handler.lock:  # type: ignore[union-attr]
                    handler.stream.write(line + handler.terminator)
                    handler.stream.flush()
                return
            except Exception:  # as StreamHandler.emit does: report and carry on
                extra = self._fields(request, status, matched, duration / 100, count, db, uid, context, llm)
                handler.handleError(self._record(request, level, extra, exception))
                return
        # makeRecord + handle is what Logger.log does, minus the call-site lookup (a stack walk on every
        # request): the line's call site is always this method, so no handler can want it.
        extra = self._fields(request, status, matched, duration / 100, count, db, uid, context, llm)
        logger.handle(self._record(request, level, extra, exception))

    def _shape(
        self, method: Any, path: str, route: str, status: Any, level: int, redact_text: Callable[[str], str]
    ) -> tuple[str, str] | None:
        """The line's text from after the timestamp to the correlation ID, and from after it to the duration's
        value; None when the formatter must render the line (a method outside the standard ones, which the
        line reports as given, a path redaction would look at or change, a status that is not an int)."""
        if type(status) is not int or method not in STANDARD_METHODS or not _plain(path):
            return None
        if redact_text(path) != path:  # a credential shape or a declared secret route (once per shape kept)
            return None
        path_json = quote(path)
        head = f'","level":"{_LEVEL_NAMES[level]}","logger":{self._logger_json},"message":"{method} {path_json[1:]}'
        tail = f',"method":"{method}","path":{path_json},"route":{quote(route)},"status":{status},"duration_ms":'
        return head, tail

    def _fields(
        self,
        request: HttpRequest,
        status: int,
        matched: str,
        duration_ms: float,
        count: int | None,
        db: int,
        uid: str | None,
        context: Any,
        llm: RequestTotals | None = None,
    ) -> dict[str, Any]:
        """The line's fields (the record's ``extra``); ``db``: time in queries, in hundredths of a millisecond."""
        extra: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "route": matched,
            "status": status,
            "duration_ms": duration_ms,
        }
        if count is not None:
            extra["db_queries"], extra["db_ms"] = count, db / 100
        if llm is not None:
            extra.update(llm.fields())
        if uid is not None:
            extra["user_id"] = uid
        if context is not None:
            extra["trace_id"], extra["span_id"] = hex_ids(context)
            if self.flavor_fields:
                extra[TRACE_SAMPLED] = context.trace_flags.sampled
        if self.flavor_fields:
            agent = request.META.get("HTTP_USER_AGENT")
            if agent:
                extra[USER_AGENT] = agent[:USER_AGENT_CHARS]
        return extra

    def _record(self, request: HttpRequest, level: int, extra: dict[str, Any], exception: Any) -> logging.LogRecord:
        exc_info = (type(exception), exception, exception.__traceback__) if exception is not None else None
        message = f"{request.method} {request.path}"
        return self.logger.makeRecord(self.logger.name, level, __file__, 0, message, (), exc_info, "write", extra)
