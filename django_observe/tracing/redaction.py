"""A span exporter that removes secrets from every span before it leaves the process.

Our request spans record the exception of a failed request (its message may hold a DSN password), and
the client spans of the requests/httpx instrumentors keep the full URL (``url.full``/``http.url`` with
``?api_key=...&token=...``). Wrapping the exporter covers every span, whichever instrumentation made it:
attribute values, event attributes (``exception.message``, ``exception.stacktrace``), the status
description and the name go through ``redaction.redact``; values under secret-named attribute keys are
replaced whole.

With content capture off, LLM content goes first (``llm.content``): the messages of exceptions that left an
LLM call are replaced wherever a span wrote them (any span: the request's, a user's span around the call),
and a GenAI span (one with ``gen_ai.operation.name``) keeps no error text of its own: its status description
becomes its ``error.type`` and its exception events keep their type and frames, not their message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from .. import shutdown
from ..llm.content import OPERATION_NAME, WITHHELD, WithheldTexts
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


def _withhold_attributes(attributes: Mapping[str, Any] | None, withheld: WithheldTexts) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if isinstance(value, str):
            value = withheld.scrub(value)
        elif isinstance(value, (list, tuple)):
            value = tuple(withheld.scrub(v) if isinstance(v, str) else v for v in value)
        out[key] = value
    return out


def _withhold_event(event: Event, withheld: WithheldTexts, genai: bool) -> Event:
    attributes = dict(event.attributes or {})
    message = attributes.get("exception.message")
    if genai and isinstance(message, str) and message:
        # The GenAI span's own exception: its message is the provider's answer, which may quote the prompt.
        trace = attributes.get("exception.stacktrace")
        if isinstance(trace, str):
            attributes["exception.stacktrace"] = trace.replace(message, WITHHELD)
        attributes["exception.message"] = WITHHELD
    return Event(event.name, _withhold_attributes(attributes, withheld), event.timestamp, limit=None)


def withhold_content(span: ReadableSpan, withheld: WithheldTexts) -> ReadableSpan:
    """A copy of ``span`` without LLM content in its error texts (see the module docstring)."""
    attributes = span.attributes or {}
    genai = OPERATION_NAME in attributes
    if not genai and not len(withheld):
        return span
    status = span.status
    if status.description:
        error_type = attributes.get("error.type")
        description = str(error_type) if genai and error_type else WITHHELD if genai else None
        status = Status(status.status_code, description or withheld.scrub(status.description))
    return ReadableSpan(
        name=withheld.scrub(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_withhold_attributes(attributes, withheld),
        events=[_withhold_event(event, withheld, genai) for event in span.events],
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def redact_span(span: ReadableSpan, redactor: Redactor, withheld: WithheldTexts | None = None) -> ReadableSpan:
    """A copy of ``span`` without secrets (and without LLM content, given ``withheld``)."""
    if withheld is not None:
        span = withhold_content(span, withheld)
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
        withheld: the LLM error texts to keep off spans (content capture off); None keeps them.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        extra_keys: Iterable[str] = (),
        where: str = "the collector",
        withheld: WithheldTexts | None = None,
    ):
        self.exporter = exporter
        self.withheld = withheld
        self._redactor = get_redactor(extra_keys)
        # At exit, at most OTEL_EXPORT_SHUTDOWN_TIMEOUT seconds for what is left (django_observe.shutdown).
        self._budget = shutdown.Budget("spans", where)
        shutdown.register()  # after the provider's own atexit handler: runs before it

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        withheld = self.withheld
        redacted = [redact_span(span, self._redactor, withheld) for span in spans]
        return self._budget.call(self.exporter.export, redacted, count=len(spans), default=SpanExportResult.FAILURE)

    def shutdown(self) -> None:
        self._budget.call(self.exporter.shutdown)
        self._budget.report()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._budget.call(self.exporter.force_flush, timeout_millis, default=False)
