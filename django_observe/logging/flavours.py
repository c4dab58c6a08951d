"""JSON line flavours: our event dict renamed to the fields a log platform understands natively.

Each flavour is a processor that runs last before rendering (after redaction, so every value it moves
is already redacted) and returns a new dict in the platform's field names. The ``default`` flavour has
no such processor: its lines cost exactly what they did before flavours existed.

- ``gcp``: Cloud Logging's special fields of structured logs (``severity``, ``time``,
  ``logging.googleapis.com/trace``, ``httpRequest``, ...).
- ``datadog``: Datadog's reserved and standard attributes (``status``, ``service``, ``dd.trace_id``, ...).
- ``ecs``: Elastic Common Schema field names (``@timestamp``, ``log.level``, ``trace.id``, ...).

A key of yours that has the name of a field the flavour writes is kept with ``_`` appended
(``status`` becomes ``status_`` in the datadog flavour), so it can never pose as the platform's field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["FLAVORS", "DatadogFlavour", "EcsFlavour", "GcpFlavour", "Service", "flavor_processor", "traceback_text"]

ECS_VERSION = "8.11.0"
REQUEST_LOGGER = "django_observe.request"

# Keys the request line (middleware) and the trace processor add for the non-default flavours only.
USER_AGENT = "user_agent"
TRACE_SAMPLED = "trace_sampled"


@dataclasses.dataclass(frozen=True)
class Service:
    """The service identity written by the flavours that have a place for it (datadog, ecs)."""

    name: str = "django"
    environment: str = ""
    version: str = ""


def traceback_text(chain: list[dict[str, Any]]) -> str:
    """Python's traceback text from our structured ``exception`` list (platforms parse this form).

    The chain is innermost cause last, as in ``exception``; the text prints causes first, as Python does.
    """
    blocks = []
    for exc in reversed(chain):
        lines = ["Traceback (most recent call last):"]
        lines.extend(f'  File "{f["filename"]}", line {f["lineno"]}, in {f["name"]}' for f in exc.get("frames", ()))
        value = exc.get("value")
        lines.append(f"{exc.get('type')}: {value}" if value else str(exc.get("type")))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _seconds(duration_ms: Any) -> str | None:
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, (int, float)):
        return None
    return f"{duration_ms / 1000:.9f}".rstrip("0").rstrip(".") + "s"


def _move_rest(source: dict, target: dict, reserved: frozenset[str] = frozenset(), prefix: str = "\0") -> dict:
    """Copy the remaining keys; one that the flavour wrote or the platform reads specially becomes ``key_``."""
    for key, value in source.items():
        if key in target or key in reserved or key.startswith(prefix):
            key += "_"
        target[key] = value
    return target


_GCP_SEVERITY = {
    "TRACE": "DEBUG",
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "WARNING": "WARNING",
    "ERROR": "ERROR",
    "CRITICAL": "CRITICAL",
}
_GCP_PREFIX = "logging.googleapis.com/"
# Special fields Cloud Logging takes out of jsonPayload (besides logging.googleapis.com/...).
_GCP_RESERVED = frozenset({"severity", "time", "timestamp", "timestampSeconds", "timestampNanos", "httpRequest"})


class GcpFlavour:
    """Google Cloud Logging (structured logs read from stdout by Cloud Run, GKE, App Engine, Cloud Functions).

    ``severity``, ``time``, ``message``, ``logging.googleapis.com/trace`` (``projects/<project>/traces/<id>``
    with a project, else the bare ID), ``logging.googleapis.com/spanId``,
    ``logging.googleapis.com/trace_sampled`` and, on the request line, ``httpRequest``. Everything else
    (``correlation_id``, ``logger``, ``user_id``, ``route``, ``duration_ms``, ...) stays in ``jsonPayload``.
    An exception becomes ``stack_trace`` (Python's traceback text, which Error Reporting groups).

    Args:
        project: the GCP project ID of ``LOG_GCP_PROJECT``.
    """

    __slots__ = ("_trace_prefix",)

    def __init__(self, project: str | None = None):
        self._trace_prefix = f"projects/{project}/traces/" if project else ""

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> dict:
        pop = event_dict.pop
        out: dict[str, Any] = {
            "severity": _GCP_SEVERITY.get(pop("level", ""), "DEFAULT"),
            "time": pop("timestamp", None),
            "logger": pop("logger", None),
            "message": pop("message", ""),
        }
        if "correlation_id" in event_dict:
            out["correlation_id"] = pop("correlation_id")
        trace_id = pop("trace_id", None)
        span_id = pop("span_id", None)
        sampled = pop(TRACE_SAMPLED, None)
        if trace_id is not None:
            out[_GCP_PREFIX + "trace"] = self._trace_prefix + str(trace_id)
            if span_id is not None:
                out[_GCP_PREFIX + "spanId"] = span_id
            if sampled is not None:
                out[_GCP_PREFIX + "trace_sampled"] = bool(sampled)
        user_agent = pop(USER_AGENT, None)
        if out["logger"] == REQUEST_LOGGER and "status" in event_dict:
            request: dict[str, Any] = {
                "requestMethod": pop("method", None),
                "requestUrl": pop("path", None),
                "status": pop("status"),
            }
            latency = _seconds(event_dict.get("duration_ms"))
            if latency is not None:
                request["latency"] = latency
            if user_agent:
                request["userAgent"] = user_agent
            out["httpRequest"] = request
        exception = pop("exception", None)
        if exception:
            out["stack_trace"] = traceback_text(exception) if isinstance(exception, list) else str(exception)
        return _move_rest(event_dict, out, _GCP_RESERVED, _GCP_PREFIX)


# Datadog's reserved attributes (and the tracer's dd.* keys): only the flavour writes them.
_DD_RESERVED = frozenset(
    {"host", "service", "status", "message", "date", "timestamp", "trace_id", "span_id", "source", "ddsource", "ddtags"}
)


def _dd_id(hex_id: Any, width: int) -> str | None:
    """Datadog's form of an OpenTelemetry ID: the lower 64 bits as an unsigned decimal string."""
    try:
        return str(int(str(hex_id)[-16:], 16)) if len(str(hex_id)) == width else None
    except ValueError:
        return None


class _FieldNames(NamedTuple):
    """Where a platform wants the request line's HTTP fields and an exception."""

    method: str
    path: str
    status: str
    user_agent: str
    duration_ns: str
    error_type: str
    error_message: str
    error_stack: str


_DD_NAMES = _FieldNames(
    "http.method",
    "http.url_details.path",
    "http.status_code",
    "http.useragent",
    "duration",
    "error.kind",
    "error.message",
    "error.stack",
)
_ECS_NAMES = _FieldNames(
    "http.request.method",
    "url.path",
    "http.response.status_code",
    "user_agent.original",
    "event.duration",
    "error.type",
    "error.message",
    "error.stack_trace",
)


def _request_and_error(event_dict: dict, out: dict[str, Any], request_line: bool, names: _FieldNames) -> None:
    """Move the request line's HTTP fields (when ``request_line``) and the exception to ``names``."""
    pop = event_dict.pop
    user_agent = pop(USER_AGENT, None)
    if request_line and "status" in event_dict:
        out[names.method] = pop("method", None)
        out[names.path] = pop("path", None)
        out[names.status] = pop("status")
        if user_agent:
            out[names.user_agent] = user_agent
        duration_ms = event_dict.get("duration_ms")
        if isinstance(duration_ms, (int, float)) and not isinstance(duration_ms, bool):
            out[names.duration_ns] = int(duration_ms * 1_000_000)
    exception = pop("exception", None)
    if exception:
        if isinstance(exception, list):
            out[names.error_type] = exception[0].get("type")
            out[names.error_message] = exception[0].get("value")
            out[names.error_stack] = traceback_text(exception)
        else:
            out[names.error_stack] = str(exception)


class DatadogFlavour:
    """Datadog (the Agent tailing stdout or a container's logs, JSON parsed automatically).

    Reserved attributes ``timestamp``, ``status`` (the level, lower case), ``message``, ``service``;
    trace correlation ``dd.trace_id``/``dd.span_id`` (decimal, lower 64 bits of the OpenTelemetry IDs) with
    ``dd.service``, ``dd.env``, ``dd.version``; standard attributes ``logger.name``, ``usr.id``, and on the
    request line ``http.method``, ``http.url_details.path``, ``http.status_code``, ``http.useragent``,
    ``duration`` (nanoseconds); ``error.kind``, ``error.message``, ``error.stack``. ``correlation_id``,
    ``route`` and ``duration_ms`` keep their names.
    """

    __slots__ = ("_service",)

    def __init__(self, service: Service = Service()):
        self._service = service

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> dict:
        pop = event_dict.pop
        service = self._service
        out: dict[str, Any] = {
            "timestamp": pop("timestamp", None),
            "status": str(pop("level", "info")).lower(),
            "logger.name": pop("logger", None),
            "message": pop("message", ""),
        }
        if "correlation_id" in event_dict:
            out["correlation_id"] = pop("correlation_id")
        out["service"] = service.name
        out["dd.service"] = service.name
        out["dd.env"] = service.environment
        out["dd.version"] = service.version
        trace_id = _dd_id(pop("trace_id", None), 32)
        span_id = _dd_id(pop("span_id", None), 16)
        pop(TRACE_SAMPLED, None)
        if trace_id is not None:
            out["dd.trace_id"] = trace_id
            if span_id is not None:
                out["dd.span_id"] = span_id
        if "user_id" in event_dict:
            out["usr.id"] = pop("user_id")
        _request_and_error(event_dict, out, out["logger.name"] == REQUEST_LOGGER, _DD_NAMES)
        return _move_rest(event_dict, out, _DD_RESERVED, "dd.")


_ECS_LEVEL = {"TRACE": "trace", "DEBUG": "debug", "INFO": "info", "WARNING": "warning", "ERROR": "error"}


class EcsFlavour:
    """Elastic Common Schema (Filebeat / Elastic Agent reading JSON lines), as dotted keys.

    ``@timestamp``, ``log.level`` (lower case), ``message``, ``ecs.version``, ``log.logger``,
    ``service.name``/``service.version``/``service.environment``, ``event.dataset`` (``<service>.log``),
    ``trace.id``, ``span.id``, ``labels.correlation_id``, ``user.id``, and on the request line
    ``http.request.method``, ``url.path``, ``http.response.status_code``, ``user_agent.original``,
    ``event.duration`` (nanoseconds); ``error.type``, ``error.message``, ``error.stack_trace``.
    Other keys (``route``, ``duration_ms``, task fields, yours) keep their names.
    """

    __slots__ = ("_service",)

    def __init__(self, service: Service = Service()):
        self._service = service

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> dict:
        pop = event_dict.pop
        service = self._service
        level = pop("level", "INFO")
        out: dict[str, Any] = {
            "@timestamp": pop("timestamp", None),
            "log.level": _ECS_LEVEL.get(level, str(level).lower()),
            "message": pop("message", ""),
            "ecs.version": ECS_VERSION,
            "log.logger": pop("logger", None),
            "service.name": service.name,
            "service.version": service.version,
            "service.environment": service.environment,
            "event.dataset": f"{service.name}.log",
        }
        if "correlation_id" in event_dict:
            out["labels.correlation_id"] = pop("correlation_id")
        trace_id = pop("trace_id", None)
        span_id = pop("span_id", None)
        pop(TRACE_SAMPLED, None)
        if trace_id is not None:
            out["trace.id"] = trace_id
            if span_id is not None:
                out["span.id"] = span_id
        if "user_id" in event_dict:
            out["user.id"] = pop("user_id")
        _request_and_error(event_dict, out, out["log.logger"] == REQUEST_LOGGER, _ECS_NAMES)
        return _move_rest(event_dict, out)


def flavor_processor(
    flavor: str, *, service: Service = Service(), gcp_project: str | None = None
) -> Callable[[Any, str, dict], dict] | None:
    """The processor of ``LOG_JSON_FLAVOR``; None for ``default`` (no work at all).

    Raises:
        ValueError: an unknown flavour.
    """
    if flavor not in FLAVORS:
        raise ValueError(f"LOG_JSON_FLAVOR must be one of {', '.join(FLAVORS)}, got {flavor!r}")
    make = FLAVORS[flavor]
    return None if make is None else make(service, gcp_project)


Processor = Callable[[Any, str, dict], dict]

# The flavours, one row each: LOG_JSON_FLAVOR's value -> how its processor is made from the service identity
# and LOG_GCP_PROJECT (None: no processor). The setting accepts exactly these names (conf's LOG_JSON_FLAVORS,
# named at the bottom layer, since conf imports no subsystem; a test checks the two agree).
FLAVORS: dict[str, Callable[[Service, str | None], Processor] | None] = {
    "default": None,
    "gcp": lambda service, gcp_project: GcpFlavour(gcp_project),
    "datadog": lambda service, gcp_project: DatadogFlavour(service),
    "ecs": lambda service, gcp_project: EcsFlavour(service),
}
