"""A span exporter that removes secrets from every span before it leaves the process.

Our request spans record the exception of a failed request (its message may hold a DSN password), and
the client spans of the requests/httpx instrumentors keep the full URL (``url.full``/``http.url`` with
``?api_key=...&token=...``). Wrapping the exporter covers every span, whichever instrumentation made it:
attribute values, event attributes (``exception.message``, ``exception.stacktrace``), the status
description and the name go through ``redaction.redact``; values under secret-named attribute keys are
replaced whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from ..redaction import REDACTED, Redactor, get_redactor

__all__ = ["RedactingSpanExporter", "redact_span"]


def _attributes(attributes: Mapping[str, Any] | None, redactor: Redactor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if redactor.is_secret_key(key):
            # A list stays a list (captured headers are lists of values), so the attribute keeps its type.
            out[key] = tuple(REDACTED for _ in value) if isinstance(value, (list, tuple)) else REDACTED
        elif isinstance(value, str):
            out[key] = redactor.redact_text(value)
        elif isinstance(value, (list, tuple)):
            out[key] = tuple(redactor.redact_text(v) if isinstance(v, str) else v for v in value)
        else:
            out[key] = value
    return out


def redact_span(span: ReadableSpan, redactor: Redactor) -> ReadableSpan:
    """A copy of ``span`` without secrets."""
    status = span.status
    if status.description:
        status = Status(status.status_code, redactor.redact_text(status.description))
    return ReadableSpan(
        name=redactor.redact_text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_attributes(span.attributes, redactor),
        events=[
            Event(event.name, _attributes(event.attributes, redactor), event.timestamp, limit=None)
            for event in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter; every span is redacted before the wrapped exporter sees it.

    Args:
        exporter: the real exporter (OTLP, console).
        extra_keys: extra secret key names (``LOG_REDACT_KEYS``).
    """

    def __init__(self, exporter: SpanExporter, extra_keys: Iterable[str] = ()):
        self.exporter = exporter
        self._redactor = get_redactor(extra_keys)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.exporter.export([redact_span(span, self._redactor) for span in spans])

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)
