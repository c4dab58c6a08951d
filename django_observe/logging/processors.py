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

from ..correlation import get_correlation_id
from ..redaction import REDACTED, is_secret_key, redact_text

__all__ = [
    "add_correlation_id",
    "add_task_context",
    "add_trace_context",
    "format_exception",
    "normalize_level",
    "redact_secrets",
    "rename_event_to_message",
    "timestamp",
]

# Task fields bound by the Celery integration for the life of a task.
task_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "django_observe_task_context", default=None
)

_SECRET_HINT = re.compile(r"://|=|:\s|bearer", re.IGNORECASE)


_second: list = [None, ""]  # the last whole second formatted, and its text (most lines share it)


def timestamp(logger: Any, method_name: str, event_dict: dict) -> dict:
    """``timestamp``: RFC 3339 in UTC with milliseconds and ``Z`` (``2026-03-05T14:30:00.123Z``)."""
    record = event_dict.get("_record")
    created = record.created if record is not None else time.time()
    second = int(created)
    cached = _second
    if cached[0] != second:
        cached[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        cached[0] = second
    event_dict["timestamp"] = f"{cached[1]}.{int((created - second) * 1000):03d}Z"
    return event_dict


def normalize_level(logger: Any, method_name: str, event_dict: dict) -> dict:
    """``level`` in upper case as in the seeds (``INFO``); ``warn`` becomes ``WARNING``."""
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
    """``correlation_id`` of the current request or task (an explicit value wins)."""
    if event_dict.get("correlation_id") is None:
        cid = get_correlation_id()
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


class add_trace_context:  # noqa: N801 - used like the function processors beside it
    """``trace_id``/``span_id`` (32/16 lowercase hex) of the active OpenTelemetry span.

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
        if self._get_span is not None:
            context = self._get_span().get_span_context()
            if context.is_valid:
                event_dict["trace_id"] = format(context.trace_id, "032x")
                event_dict["span_id"] = format(context.span_id, "016x")
                if self._sampled:
                    event_dict["trace_sampled"] = context.trace_flags.sampled
        return event_dict


class redact_secrets:  # noqa: N801
    """Replace the values of secret-looking keys, and secrets inside messages, with ``[REDACTED]``.

    A key is secret when one of its words is API, AUTH, TOKEN, KEY, SECRET, PASS(WORD), SIGNATURE (Django's
    ``SafeExceptionReporterFilter`` list), COOKIE, CSRF, SESSION, ... (``redaction.SECRET_WORDS``), or when
    it is one of ``extra_keys``.
    """

    __slots__ = ("_extra", "_cache")

    def __init__(self, extra_keys: tuple[str, ...] = ()):
        self._extra = frozenset(k.lower() for k in extra_keys)
        self._cache: dict[str, bool] = {}

    def _is_secret(self, key: str) -> bool:
        secret = self._cache.get(key)
        if secret is None:
            secret = is_secret_key(key) or key.lower() in self._extra
            if len(self._cache) < 4096:
                self._cache[key] = secret
        return secret

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
            "exception",
            "trace_sampled",
        }
    )

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> dict:
        safe, known = self._SAFE, self._cache
        for key, value in event_dict.items():
            if key in safe or key.startswith("_"):
                continue
            secret = known.get(key)  # the cache lookup of _is_secret, inlined: this runs for every key
            if secret is None:
                secret = self._is_secret(key)
            if secret:
                event_dict[key] = REDACTED
            elif isinstance(value, str) and _SECRET_HINT.search(value):
                event_dict[key] = redact_text(value)
        return event_dict


def _exception_dicts(exc: BaseException) -> list[dict[str, Any]]:
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
        chain.append({"type": type(current).__name__, "value": redact_text(str(current))[:2000], "frames": frames})
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


class format_exception:  # noqa: N801
    """Turn ``exc_info`` into ``exception``: a list of dicts (JSON) or a traceback string (text)."""

    __slots__ = ("structured",)

    def __init__(self, structured: bool):
        self.structured = structured

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
            event_dict["exception"] = _exception_dicts(exc)
        else:
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            event_dict["exception"] = redact_text(text.rstrip())
        return event_dict
