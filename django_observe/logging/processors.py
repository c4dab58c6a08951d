"""structlog processors: ``(logger, method_name, event_dict) -> event_dict``.

They run for structlog loggers and, through ``ProcessorFormatter``, for every
standard-library record (Django, gunicorn, uvicorn, Celery, your own loggers).
"""

from __future__ import annotations

import contextvars
import re
import time
import traceback
from typing import Any

from ..correlation import EXCEPTION_ATTR, get_correlation_id
from ..llm.content import WithheldTexts
from ..redaction import REDACTED, get_redactor, redact_text

__all__ = [
    "add_correlation_id",
    "add_task_context",
    "TraceContextAdder",
    "ExceptionFormatter",
    "format_timestamp",
    "timestamp_at",
    "normalize_level",
    "SecretRedactor",
    "rename_event_to_message",
    "timestamp",
]

# Task fields bound by the Celery integration for the life of a task.
task_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "django_observe_task_context", default=None
)

# A credential scheme in text (``Bearer abc``); other secrets in text need a ``=`` or a ``:``, or are a shape
# of 16 characters or more (``AKIA...``, ``ghp_...``, a JWT), or hide behind look-alike characters.
_SCHEME_HINT = re.compile(r"(?:bearer|basic|token|digest)\s", re.IGNORECASE)


def _may_hold_secret(text: str) -> bool:
    return (
        len(text) > 15
        or "=" in text
        or ":" in text
        or not text.isascii()
        or (" " in text and _SCHEME_HINT.search(text) is not None)
    )


_second: list = [None, ""]  # the last whole second formatted, and its text (most lines share it)
# ".000Z" to ".999Z" (a fraction just below 1 can round up to 1000 when multiplied: it stays .999).
_MILLIS = (*(f".{n:03d}Z" for n in range(1000)), ".999Z")


def format_timestamp(created: float) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z`` (``2026-03-05T14:30:00.123Z``) of a ``time.time()``."""
    second = int(created)
    cached = _second
    if cached[0] != second:
        cached[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        cached[0] = second
    return cached[1] + _MILLIS[int((created - second) * 1000)]


# The wall clock's whole second around a perf_counter_ns() reading: (reading at which that second began, its
# text). Replaced as one tuple, so a thread reads a consistent pair.
_anchor: list[tuple[int, str]] = [(0, "")]
_SECOND_NS = 1_000_000_000


def timestamp_at(perf_ns: int) -> str:
    """:func:`format_timestamp` of the instant of ``perf_ns``, a ``time.perf_counter_ns()`` reading taken just now.

    The request line already reads the monotonic clock when the request ends; converting that reading costs
    an integer subtraction and division instead of ``time.time()`` and two float-to-int conversions. The
    conversion is re-anchored on the wall clock whenever a reading leaves the anchored second, so a step of
    the wall clock shows within a second, and the two clocks cannot drift apart by more than NTP slews them
    in one second (half a millisecond at most).
    """
    start, text = _anchor[0]
    offset = perf_ns - start
    if 0 <= offset < _SECOND_NS:
        return text + _MILLIS[offset // 1_000_000]
    wall = time.time_ns() - (time.perf_counter_ns() - perf_ns)
    second, within = divmod(wall, _SECOND_NS)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    _anchor[0] = (perf_ns - within, text)
    return text + _MILLIS[within // 1_000_000]


def timestamp(logger: Any, method_name: str, event_dict: dict) -> dict:
    """``timestamp``: RFC 3339 in UTC with milliseconds and ``Z`` (``2026-03-05T14:30:00.123Z``)."""
    record = event_dict.get("_record")
    event_dict["timestamp"] = format_timestamp(record.created if record is not None else time.time())
    return event_dict


def normalize_level(logger: Any, method_name: str, event_dict: dict) -> dict:
    """``level`` in upper case (``INFO``); ``warn`` becomes ``WARNING``."""
    record = event_dict.get("_record")
    level = record.levelname if record is not None else event_dict.get("level", method_name)
    level = str(level).upper()
    event_dict["level"] = {"WARN": "WARNING", "EXCEPTION": "ERROR", "CRITICAL": "CRITICAL"}.get(level, level)
    return event_dict


def rename_event_to_message(logger: Any, method_name: str, event_dict: dict) -> dict:
    """structlog's ``event`` is our ``message``."""
    if "event" in event_dict:
        event_dict["message"] = str(event_dict.pop("event"))
    return event_dict


def add_correlation_id(logger: Any, method_name: str, event_dict: dict) -> dict:
    """``correlation_id`` of the current request or task (an explicit value wins); outside one, that of the
    exception the line reports, when it left a connection that tagged it (``correlation.tag_exception``)."""
    if event_dict.get("correlation_id") is None:
        cid = get_correlation_id()
        if cid is None:
            exc_info = event_dict.get("exc_info")
            if type(exc_info) is tuple and len(exc_info) == 3:
                cid = getattr(exc_info[1], EXCEPTION_ATTR, None)
        if cid is not None:
            event_dict["correlation_id"] = cid
        else:
            event_dict.pop("correlation_id", None)
    return event_dict


def add_task_context(logger: Any, method_name: str, event_dict: dict) -> dict:
    """``task_id``, ``task_name``, ``parent_task_id``, ``root_task_id`` inside a Celery task."""
    fields = task_context.get()
    if fields:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
    return event_dict


class TraceContextAdder:
    """``trace_id``/``span_id`` (32/16 lowercase hex) of the active OpenTelemetry span, unless the event has
    a ``trace_id`` already.

    A no-op unless tracing is enabled and the OpenTelemetry API is installed.

    Args:
        enabled: tracing is on.
        sampled: also add ``trace_sampled`` (the span's sampled flag; the gcp flavour writes it).
    """

    __slots__ = ("_get_span", "_sampled")

    def __init__(self, enabled: bool, sampled: bool = False):
        self._sampled = sampled
        self._get_span = None
        if enabled:
            try:
                from opentelemetry.trace import get_current_span
            except ImportError:
                return
            self._get_span = get_current_span

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> dict:
        if self._get_span is not None and "trace_id" not in event_dict:  # explicit ids win (the request line's)
            context = self._get_span().get_span_context()
            if context.is_valid:
                event_dict["trace_id"] = format(context.trace_id, "032x")
                event_dict["span_id"] = format(context.span_id, "016x")
                if self._sampled:
                    event_dict["trace_sampled"] = context.trace_flags.sampled
        return event_dict


class SecretRedactor:
    """Remove secrets from every value of the event (``redaction.redact``), after turning objects into text.

    Values under secret-named keys (``redaction.SECRET_WORDS``, or one of ``extra_keys``) become
    ``[REDACTED]``; strings, nested mappings and sequences, and any other object after ``str()`` (Django's
    ``request`` extra renders as ``<WSGIRequest: GET '/x?token=...'>``) are redacted; numbers, booleans and
    None are kept as they are.
    """

    __slots__ = ("_redactor", "withheld")

    def __init__(self, extra_keys: tuple[str, ...] = (), withheld: WithheldTexts | None = None):
        self._redactor = get_redactor(extra_keys)
        # The messages of exceptions that left LLM calls (content capture off), removed from string values.
        self.withheld = withheld

    # Keys we write ourselves whose values cannot hold a secret: skipped (this runs on every line).
    _SAFE = frozenset(
        {
            "timestamp",
            "level",
            "logger",
            "correlation_id",
            "method",
            "route",
            "status",
            "duration_ms",
            "trace_id",
            "span_id",
            "task_id",
            "task_name",
            "parent_task_id",
            "root_task_id",
            "task_state",
            "trace_sampled",
        }
    )

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> dict:
        safe = self._SAFE
        redactor = self._redactor
        known = redactor.known_keys
        withheld = self.withheld
        if withheld is not None and not len(withheld):
            withheld = None
        for key, value in event_dict.items():
            if key in safe or key[:1] == "_":
                continue
            secret = known.get(key)
            if secret is None:
                secret = redactor.is_secret_key(key)
            if secret:
                event_dict[key] = REDACTED
            elif isinstance(value, str):
                if withheld is not None:
                    value = event_dict[key] = withheld.scrub(value)
                if _may_hold_secret(value):
                    event_dict[key] = redactor.redact_text(value)
            elif value is not None and not isinstance(value, (bool, int, float)):
                event_dict[key] = redactor.redact(value)
        return event_dict


def _exception_dicts(exc: BaseException, withheld: WithheldTexts | None = None) -> list[dict[str, Any]]:
    """A structured exception chain without local variables (they may hold secrets)."""
    chain: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < 5:
        seen.add(id(current))
        frames = [
            {"filename": f.filename, "lineno": f.lineno, "name": f.name}
            for f in traceback.extract_tb(current.__traceback__)[-30:]
        ]
        value = str(current) if withheld is None else withheld.scrub(str(current))
        chain.append({"type": type(current).__name__, "value": redact_text(value)[:2000], "frames": frames})
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


class ExceptionFormatter:
    """Turn ``exc_info`` into ``exception``: a list of dicts (JSON) or a traceback string (text)."""

    __slots__ = ("structured", "withheld")

    def __init__(self, structured: bool, withheld: WithheldTexts | None = None):
        self.structured = structured
        self.withheld = withheld  # LLM error texts to leave out (content capture off)

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> dict:
        exc_info = event_dict.pop("exc_info", None)
        if not exc_info:
            return event_dict
        if exc_info is True:
            import sys

            exc_info = sys.exc_info()
        if isinstance(exc_info, BaseException):
            exc = exc_info
        elif isinstance(exc_info, tuple) and exc_info[1] is not None:
            exc = exc_info[1]
        else:
            return event_dict
        if self.structured:
            event_dict["exception"] = _exception_dicts(exc, self.withheld)
        else:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            if self.withheld is not None:
                text = self.withheld.scrub(text)
            event_dict["exception"] = redact_text(text.rstrip())
        return event_dict
