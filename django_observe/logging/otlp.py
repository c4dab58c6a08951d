"""OTLP logs (``OTEL_LOGS_EXPORTER=otlp``): every record, as the stdout line sees it, to the OTLP endpoint.

A logging handler beside the stdout one. Each record goes through the same processor chain as the stdout
line (correlation and task context, trace IDs, exception formatting, redaction), stopping before the
renderer; the resulting event is the OTLP log record: ``message`` is the body, the level the severity,
``trace_id``/``span_id`` the record's trace context, every other field an attribute. Redaction runs first,
so a secret never reaches the collector, as it never reaches stdout.

The OpenTelemetry ``LoggerProvider`` (with a ``BatchLogRecordProcessor`` and the OTLP exporter) is made in
the process that logs, on its first record: a forked child (Celery prefork, gunicorn ``--preload``) makes its
own instead of using its parent's. :meth:`OtlpLogHandler.flush` exports what is buffered (``logging`` calls it
at exit; Celery's ``worker_process_shutdown`` and gunicorn's ``worker_exit`` call it for children that leave
with ``os._exit``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

from .. import shutdown
from ..breaker import ExportBreaker, fail_fast_session
from ..identity import ServiceIdentity
from ..otlp_exporters import otlp_exporter
from .setup import TRACE, JSONFormatter

__all__ = ["OtlpLogHandler", "flush_all"]

FLUSH_MILLIS = 5000
# The exporter's own loggers (the HTTP client under it, the dead-collector breaker's): exporting their records
# would feed back.
_SKIPPED_LOGGERS = ("opentelemetry", "urllib3", "grpc", "django_observe.export")
# Event keys that are not attributes: the body, the severity, the trace context, the time.
_NOT_ATTRIBUTES = frozenset({"message", "level", "timestamp", "trace_id", "span_id", "trace_sampled"})


class _EventFormatter(JSONFormatter):
    """The stdout JSON formatter's chain without its renderer: ``event(record)`` returns the event dict."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._local = threading.local()
        # The renderer is the last step of both chains: stdlib records (_chain) and structlog events (processors).
        self._chain[-1] = self._capture
        self.processors = [*self.processors[:-1], self._capture]

    def _capture(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> str:
        self._local.event = event_dict
        return ""

    def event(self, record: logging.LogRecord) -> dict[str, Any]:
        self._local.event = None
        self.format(record)
        return self._local.event or {"message": record.getMessage()}


def _severity(levelno: int) -> Any:
    from opentelemetry._logs import SeverityNumber

    if levelno <= TRACE:
        return SeverityNumber.TRACE
    if levelno <= logging.DEBUG:
        return SeverityNumber.DEBUG
    if levelno <= logging.INFO:
        return SeverityNumber.INFO
    if levelno <= logging.WARNING:
        return SeverityNumber.WARN
    if levelno <= logging.ERROR:
        return SeverityNumber.ERROR
    return SeverityNumber.FATAL


def _attribute(value: Any) -> Any:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return json.dumps(value, default=str, separators=(",", ":"))


def _context(trace_id: Any, span_id: Any, sampled: Any) -> Any:
    if not (isinstance(trace_id, str) and isinstance(span_id, str)):
        return None
    from opentelemetry import trace

    try:
        span_context = trace.SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled is not False else 0),
        )
    except ValueError:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


class OtlpLogHandler(logging.Handler):
    """Sends each record to the OTLP endpoint as an OpenTelemetry log record (see the module docstring).

    Args:
        identity: the resource (with this process's ``service.instance.id``).
        endpoint, protocol: ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``_PROTOCOL``.
        otel_enabled: add the active span's IDs (as the stdout line does).
        redact_keys: ``LOG_REDACT_KEYS``.
        withheld: LLM error texts left out of the records (``llm.content.WithheldTexts``, content capture off).
        exporter_factory: makes the exporter in each process (tests pass an in-memory one).
        on_drop: counts the records the dead-collector breaker drops (``django_observe.breaker``).
    """

    def __init__(
        self,
        *,
        identity: ServiceIdentity,
        endpoint: str | None = None,
        protocol: str = "http/protobuf",
        otel_enabled: bool = True,
        redact_keys: tuple[str, ...] = (),
        exporter_factory: Any = None,
        level: int = logging.NOTSET,
        withheld: Any = None,
        on_drop: Callable[[int], None] | None = None,
    ):
        super().__init__(level)
        self.identity = identity
        self._exporter_factory = exporter_factory or (
            lambda: otlp_exporter("logs", endpoint, protocol, session=fail_fast_session(os.environ))
        )
        self._where = endpoint or "the OTLP collector"
        self._on_drop = on_drop
        self._events = _EventFormatter(otel_enabled=otel_enabled, redact_keys=redact_keys, withheld=withheld)
        self._pid: int | None = None
        self._provider: Any = None
        self._logger: Any = None
        self._build_lock = threading.Lock()
        self._emitting = threading.local()

    def _otel_logger(self) -> Any:
        pid = os.getpid()
        if self._pid != pid:
            with self._build_lock:
                if self._pid != pid:
                    from opentelemetry.sdk._logs import LoggerProvider
                    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogExportResult
                    from opentelemetry.sdk.resources import Resource

                    provider = LoggerProvider(resource=Resource.create(self.identity.resource_attributes()))
                    exporter = ExportBreaker(
                        _BoundedLogExporter(self._exporter_factory(), self._where),
                        what="log records",
                        where=self._where,
                        failure=LogExportResult.FAILURE,
                        succeeded=lambda result: (
                            getattr(result, "name", "") == "SUCCESS"
                        ),  # LogExportResult or LogRecordExportResult
                        on_drop=self._on_drop,
                    )
                    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))  # type: ignore[arg-type]
                    shutdown.register()  # after the provider's atexit handler: runs before it
                    self._provider, self._logger = provider, provider.get_logger("django_observe")
                    self._pid = pid
        return self._logger

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_SKIPPED_LOGGERS) or getattr(self._emitting, "active", False):
            return
        self._emitting.active = True
        try:
            event = dict(self._events.event(record))
            body = event.get("message", "")
            context = _context(event.get("trace_id"), event.get("span_id"), event.get("trace_sampled"))
            attributes = {k: _attribute(v) for k, v in event.items() if k not in _NOT_ATTRIBUTES and v is not None}
            self._otel_logger().emit(
                timestamp=int(record.created * 1e9),
                context=context,
                severity_number=_severity(record.levelno),
                severity_text=record.levelname,
                body=body if isinstance(body, str) else _attribute(body),
                attributes=attributes,
            )
        except Exception:
            self.handleError(record)
        finally:
            self._emitting.active = False

    def flush(self) -> None:
        """Export what this process buffered (bounded wait)."""
        provider = self._provider
        if provider is not None and self._pid == os.getpid():
            provider.force_flush(FLUSH_MILLIS)

    def close(self) -> None:
        self.flush()
        super().close()


class _BoundedLogExporter:
    """The OTLP log exporter with at most ``OTEL_EXPORT_SHUTDOWN_TIMEOUT`` seconds at exit
    (``django_observe.shutdown``)."""

    def __init__(self, exporter: Any, where: str):
        self.exporter = exporter
        self._budget = shutdown.Budget("log records", where)

    def export(self, batch: Any) -> Any:
        from opentelemetry.sdk._logs.export import LogExportResult

        return self._budget.call(self.exporter.export, batch, count=len(batch), default=LogExportResult.FAILURE)

    def shutdown(self) -> None:
        self._budget.call(self.exporter.shutdown)
        self._budget.report()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._budget.call(self.exporter.force_flush, timeout_millis, default=False)


def flush_all() -> None:
    """Flush every OTLP log handler on the root logger (worker exit)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, OtlpLogHandler):
            handler.flush()
