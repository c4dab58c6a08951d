"""The OTLP exporter of each signal (spans, log records, metrics), over HTTP or gRPC, made in one place.

The tracer provider, the OTLP log handler, the metrics pusher and ``observe_doctor``'s test sends use the
same function, so the doctor tests the exporter the process will use.
"""

from __future__ import annotations

import importlib
from typing import Any, Literal

__all__ = ["Signal", "otlp_exporter"]

Signal = Literal["traces", "logs", "metrics"]

# signal -> (module of opentelemetry.exporter.otlp.proto.{http,grpc}, exporter class)
_EXPORTERS: dict[str, tuple[str, str]] = {
    "traces": ("trace_exporter", "OTLPSpanExporter"),
    "logs": ("_log_exporter", "OTLPLogExporter"),
    "metrics": ("metric_exporter", "OTLPMetricExporter"),
}


def otlp_exporter(
    signal: Signal, endpoint: str | None, protocol: str, *, timeout: float | None = None, session: Any = None
) -> Any:
    """The OTLP exporter of ``signal`` for ``endpoint`` (``OTEL_EXPORTER_OTLP_ENDPOINT``, a base URL) and
    ``protocol`` (``grpc``, else HTTP/protobuf).

    Args:
        timeout: seconds; default the SDK's.
        session: the HTTP exporter's ``requests`` session (``breaker.fail_fast_session``); default its own.
    """
    module_name, class_name = _EXPORTERS[signal]
    if protocol == "grpc":
        module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.grpc.{module_name}")
        return getattr(module, class_name)(endpoint=endpoint or "http://localhost:4317", timeout=timeout)
    module = importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{module_name}")
    # The endpoint setting is a base URL, as in the OTLP spec; the HTTP exporter wants the signal's full path.
    url = (endpoint or "http://localhost:4318").rstrip("/") + f"/v1/{signal}"
    extra = {"session": session} if session is not None else {}
    return getattr(module, class_name)(endpoint=url, timeout=timeout, **extra)
