"""OpenTelemetry tracing behind ``OTEL_ENABLED``.

``get_tracer(__name__)`` works whether tracing is on or off::

    from django_observe.tracing import get_tracer

    tracer = get_tracer(__name__)
    with tracer.start_as_current_span("my_custom_operation") as span:
        span.set_attribute("custom.key", "value")

With tracing off nothing is instrumented and nothing beyond the OpenTelemetry API is imported (and not even
that when the API is not installed): the tracer is a no-op.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["get_tracer", "is_enabled"]


def is_enabled() -> bool:
    """True once an OpenTelemetry SDK tracer provider is installed in this process (``OTEL_ENABLED``)."""
    sdk = sys.modules.get("opentelemetry.sdk.trace")  # never imported with tracing off: nothing to check
    if sdk is None:
        return False
    from opentelemetry import trace

    return isinstance(trace.get_tracer_provider(), sdk.TracerProvider)


class _NoOpSpan:
    """Stands in for a span when the OpenTelemetry API is not installed."""

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Any) -> None:
        pass

    def add_event(self, name: str, attributes: Any = None, timestamp: Any = None) -> None:
        pass

    def record_exception(self, exception: BaseException, *args: Any, **kwargs: Any) -> None:
        pass

    def set_status(self, *args: Any, **kwargs: Any) -> None:
        pass

    def is_recording(self) -> bool:
        return False

    def end(self, end_time: Any = None) -> None:
        pass

    def __enter__(self) -> _NoOpSpan:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class _NoOpTracer:
    @contextlib.contextmanager
    def start_as_current_span(self, name: str, *args: Any, **kwargs: Any) -> Iterator[_NoOpSpan]:
        yield _NoOpSpan()

    def start_span(self, name: str, *args: Any, **kwargs: Any) -> _NoOpSpan:
        return _NoOpSpan()


def get_tracer(name: str, version: str | None = None) -> Any:
    """A tracer for custom spans: OpenTelemetry's when tracing is on, a no-op one otherwise."""
    try:
        from opentelemetry import trace
    except ImportError:
        return _NoOpTracer()
    if not is_enabled():
        return trace.NoOpTracer()
    return trace.get_tracer(name, version)
