"""Route every log line of the process (stdlib and structlog) through one formatter on stdout."""

from __future__ import annotations

import logging
import logging.config
import socket
import sys
from collections.abc import Mapping
from typing import Any, cast

import structlog

from ..llm.content import WithheldTexts
from ..redaction import get_redactor
from . import processors
from .flavours import Service, flavor_processor
from .quiet import install_quiet_filters
from .renderers import JSONRenderer, OrderedJSONRenderer, TextRenderer

__all__ = ["JSONFormatter", "TRACE", "TextFormatter", "configure_logging", "level_number"]

TRACE = 5
logging.addLevelName(TRACE, "TRACE")
_LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

# Loggers that servers and libraries configure with handlers of their own; we route them to the root.
SERVER_LOGGERS = (
    "django",
    "django.request",
    "django.server",
    "django.security",
    "django.db.backends",
    "gunicorn",
    "gunicorn.error",
    "gunicorn.access",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "celery",
    "celery.app.trace",
    "celery.worker",
    "celery.task",
    "celery.redirected",
    "kombu",
    "amqp",
)


def _switched_off() -> dict[str, int]:
    """The server loggers their server was told not to write, with their levels: no handler of their own and
    not propagating, which is how uvicorn's ``--no-access-log`` leaves ``uvicorn.access`` (and gunicorn
    ``gunicorn.access`` without ``--access-logfile``)."""
    off = {}
    for name in SERVER_LOGGERS:
        existing = logging.Logger.manager.loggerDict.get(name)
        if isinstance(existing, logging.Logger) and not existing.handlers and not existing.propagate:
            off[name] = existing.level
    return off


def switch_off(name: str, level: int) -> None:
    """Leave server logger ``name`` as its server leaves one it was told not to write (what
    :func:`_switched_off` recognises): no handler, not propagating, at ``level``."""
    logger = logging.getLogger(name)
    logger.handlers, logger.propagate = [], False
    logger.setLevel(level)


def level_number(name: str) -> int:
    return _LEVELS[name]


# structlog creates its context variables on the first bind_contextvars(), in this dict (private: guarded by
# tests/unit/test_private_apis.py).
STRUCTLOG_CONTEXT_VARS: dict = structlog.contextvars._CONTEXT_VARS


def structlog_context_bound() -> bool:
    """A structlog context variable holds a value here: ``merge_contextvars`` would add it to a line."""
    return any(var.get(...) is not ... for var in STRUCTLOG_CONTEXT_VARS.values())


def merge_contextvars(logger: Any, method_name: str, event_dict: dict) -> dict:
    """structlog's ``merge_contextvars``, skipped while nothing was ever bound (it copies the whole context)."""
    if not STRUCTLOG_CONTEXT_VARS:
        return event_dict
    return cast(dict, structlog.contextvars.merge_contextvars(logger, method_name, event_dict))  # the same dict


def _shared_chain(otel_enabled: bool, trace_sampled: bool = False) -> list:
    """Processors for both structlog and stdlib records, before rendering."""
    return [
        merge_contextvars,
        structlog.stdlib.add_logger_name,
        processors.add_correlation_id,
        processors.add_task_context,
        processors.TraceContextAdder(otel_enabled, sampled=trace_sampled),
    ]


def _render_chain(
    fmt: str,
    redact_keys: tuple[str, ...],
    show_trace: bool,
    flavor: str = "default",
    service: Service | None = None,
    gcp_project: str | None = None,
    withheld: WithheldTexts | None = None,
) -> list:
    chain = [
        processors.timestamp,  # these two read the record (``_record``) ...
        processors.normalize_level,
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,  # ... which is dropped here
        processors.rename_event_to_message,
        processors.ExceptionFormatter(structured=fmt == "json", withheld=withheld),
        processors.SecretRedactor(redact_keys, withheld),
    ]
    if fmt != "json":
        return [*chain, TextRenderer(show_trace=show_trace)]
    # The flavour runs after redaction: every value it moves or combines is already redacted.
    flavour = flavor_processor(flavor, service=service or Service(), gcp_project=gcp_project)
    return [*chain, JSONRenderer()] if flavour is None else [*chain, flavour, OrderedJSONRenderer()]


# The request line's fields that redaction would look at (the others are in SecretRedactor's safe keys).
_LINE_FIELDS = ("message", "path", "db_queries", "db_ms", "user_id")

# Attributes every LogRecord has; anything else on a record came from ``extra={...}``.
# uvicorn's ``color_message`` is its message again, with ANSI colour codes.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",
}


class _ObserveFormatter(structlog.stdlib.ProcessorFormatter):
    fmt = "json"

    def __init__(
        self,
        *,
        otel_enabled: bool = False,
        redact_keys: tuple[str, ...] = (),
        show_trace: bool = False,
        flavor: str = "default",
        service: Mapping[str, str] | None = None,
        gcp_project: str | None = None,
        withheld: WithheldTexts | None = None,
        **kwargs: Any,
    ):
        flavor = flavor if self.fmt == "json" else "default"
        render = _render_chain(
            self.fmt, tuple(redact_keys), show_trace, flavor, Service(**(service or {})), gcp_project, withheld
        )
        trace_sampled = flavor == "gcp"
        # The request line may be written without the chain (logging/request_line.py) when the chain would
        # only add the head and encode it: JSON without a flavour and no configured secret key among the
        # line's field names. With the trace step (``trace_step``), only a line that has its trace ids.
        redactor = get_redactor(tuple(redact_keys))
        # The request line's direct path writes a path as it is only when this finds nothing to redact in it
        # (a credential shape, a declared secret route).
        self.redact_text = redactor.redact_text
        self.direct_request_line = (
            self.fmt == "json" and flavor == "default" and not any(map(redactor.is_secret_key, _LINE_FIELDS))
        )
        self.trace_step = otel_enabled
        shared = _shared_chain(otel_enabled, trace_sampled)
        # Standard-library records skip add_logger_name: the name is set from the record.
        self._chain = [p for p in shared if p is not structlog.stdlib.add_logger_name] + render
        super().__init__(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_shared_chain(otel_enabled, trace_sampled)],
            processors=render,
            keep_exc_info=False,
            keep_stack_info=False,
            **kwargs,
        )

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.msg, dict):  # an event from a structlog logger
            return super().format(record)
        # Standard-library records (most lines) take a direct path: ProcessorFormatter would copy the
        # record and walk the stack to find the logger name.
        fields = {key: value for key, value in record.__dict__.items() if key not in _RECORD_ATTRIBUTES}
        message = record.getMessage()
        if record.name == "django.server" and isinstance(fields.get("request"), socket.socket):
            del fields["request"]  # runserver's connection object: "<socket.socket fd=4, ...>" says nothing
        elif self.fmt == "text" and record.name == "django.db.backends" and "\n" in message:
            message = " ".join(message.split())  # a statement's newlines and indentation, on one line
        return self.render(record, message, fields, record.exc_info)

    def render(self, record: Any, message: str, fields: dict[str, Any], exc_info: Any = None) -> str:
        """The line of a standard-library record.

        Args:
            record: the ``LogRecord``, or any object with its ``name``, ``levelname`` and ``created``
                (the request line's direct path builds no record).
            message: the formatted message; fields: the record's ``extra``.
        """
        event: Any = {  # a dict until the renderer turns it into the line
            "event": message,
            "logger": record.name,
            "_record": record,
            "_from_structlog": False,
            **fields,
        }
        if exc_info:
            event["exc_info"] = exc_info
        method = record.levelname.lower()
        for processor in self._chain:
            event = processor(None, method, event)
        return event


class JSONFormatter(_ObserveFormatter):
    """``logging.Formatter`` for JSON lines; use it in your own ``LOGGING``:

    ``"formatters": {"json": {"()": "django_observe.logging.JSONFormatter"}}``

    A platform flavour: ``{"()": "django_observe.logging.JSONFormatter", "flavor": "gcp", "gcp_project": "p"}``
    (``"datadog"`` and ``"ecs"`` take ``"service": {"name": ..., "environment": ..., "version": ...}``).
    """

    fmt = "json"


class TextFormatter(_ObserveFormatter):
    """``logging.Formatter`` for the human text line; ``{"()": "django_observe.logging.TextFormatter"}``."""

    fmt = "text"


def configure_structlog(otel_enabled: bool, trace_sampled: bool = False) -> None:
    """structlog loggers hand their events to the stdlib handlers (so one formatter renders everything)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_chain(otel_enabled, trace_sampled),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def configure_logging(
    *,
    level: str,
    fmt: str,
    otel_enabled: bool = False,
    redact_keys: tuple[str, ...] = (),
    handlers: bool = True,
    flavor: str = "default",
    service: Mapping[str, str] | None = None,
    gcp_project: str | None = None,
    otlp_handler: logging.Handler | None = None,
    deduplicate: bool = False,
    withheld: WithheldTexts | None = None,
) -> None:
    """Configure the whole process: root handler on stdout with our formatter, server loggers routed to it.

    Args:
        level: ``error``, ``warning``, ``info``, ``debug`` or ``trace``.
        fmt: ``json`` or ``text``.
        otel_enabled: add ``trace_id``/``span_id`` of the active span.
        redact_keys: extra key names whose values are replaced by ``[REDACTED]``.
        handlers: False configures structlog only (the project keeps its own ``LOGGING`` handlers).
        flavor: field names of JSON lines: ``default``, ``gcp``, ``datadog`` or ``ecs`` (``LOG_JSON_FLAVOR``).
        service: ``{"name", "environment", "version"}`` written by the datadog and ecs flavours.
        gcp_project: the project of trace names in the gcp flavour (``LOG_GCP_PROJECT``).
        otlp_handler: an extra root handler sending records over OTLP (``logging.otlp.OtlpLogHandler``,
            ``OTEL_LOGS_EXPORTER=otlp``); it replaces the one a previous call added, and is added with
            ``handlers=False`` too.
        deduplicate: drop Django's response lines of requests the request line covers (``LOG_DEDUPLICATE``).
        withheld: the messages of exceptions that left LLM calls, left out of every line (content capture
            off, ``llm.content``).
    """
    number = level_number(level)
    configure_structlog(otel_enabled, trace_sampled=fmt == "json" and flavor == "gcp")
    root = logging.getLogger()
    for previous in [h for h in root.handlers if getattr(h, "django_observe_otlp", False)]:
        root.removeHandler(previous)
        previous.close()
    if not handlers:
        _add_otlp_handler(otlp_handler, number)
        return
    install_quiet_filters(deduplicate)
    logging.captureWarnings(True)  # warnings.warn() output becomes a log line too (logger py.warnings)
    # The call site, thread and process fields stay collected for every other handler of the process
    # (a file handler with %(lineno)d, Sentry's breadcrumbs): changing logging's module flags would take
    # them from everyone. The request line, the hot path, skips the call-site lookup on its own
    # (logging/request_line.py).
    formatter = {"json": JSONFormatter, "text": TextFormatter}[fmt]
    off = _switched_off()
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "observe": {
                    "()": formatter,
                    "otel_enabled": otel_enabled,
                    "redact_keys": list(redact_keys),
                    "show_trace": number <= logging.DEBUG,
                    "flavor": flavor,
                    "service": dict(service or {}),
                    "gcp_project": gcp_project,
                    "withheld": withheld,
                }
            },
            "handlers": {"stdout": {"class": "logging.StreamHandler", "stream": sys.stdout, "formatter": "observe"}},
            "root": {"handlers": ["stdout"], "level": number},
            "loggers": {
                name: {"handlers": [], "propagate": True, "level": logging.NOTSET}
                for name in SERVER_LOGGERS
                if name not in off
            },
        }
    )
    # dictConfig resets the children of the loggers it configures ("uvicorn.access" of "uvicorn"): the ones
    # switched off stay off, or an access line the server was told not to write would cost every request.
    for name, kept_level in off.items():
        switch_off(name, kept_level)
    _add_otlp_handler(otlp_handler, number)


def _add_otlp_handler(handler: logging.Handler | None, number: int) -> None:
    if handler is None:
        return
    handler.django_observe_otlp = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    if root.level == logging.NOTSET or root.level > number:
        root.setLevel(number)
    root.addHandler(handler)
