"""Set up the OpenTelemetry SDK and instrumentors once per process (only when ``OTEL_ENABLED``).

Process models:

- gunicorn, uvicorn, runserver: Django loads in each serving process, so the SDK is built there.
- Celery prefork: instrumentors are installed in the main process (their tracers are proxies), the provider
  is built in each child (``worker_process_init``), or on the first task for pools without children;
  ``worker_process_shutdown`` flushes, so a child recycled by ``max_tasks_per_child`` loses no span.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any

from ..conf import ObserveConfig

__all__ = ["configure_tracing"]

logger = logging.getLogger("django_observe.tracing")

_lock = threading.Lock()
_provider: Any = None
_config: ObserveConfig | None = None
_server_spans: Any = None
FLUSH_SECONDS = 5.0
EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk._shared_internal",
)


class _Once(logging.Filter):
    """Lets the first record of a logger through; an unreachable collector is reported once, not per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if self.seen:
            return False
        self.seen = True
        record.msg = f"{record.msg} (tracing export problems are reported once per process)"
        return True


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _sampler(config: ObserveConfig) -> Any:
    from opentelemetry.sdk.trace import sampling

    name, arg = config.otel_traces_sampler, config.otel_traces_sampler_arg
    base = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(arg),
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(sampling.TraceIdRatioBased(arg)),
    }[name]
    return _DropOrphanClientSpans(base)


class _DropOrphanClientSpans:
    """Wraps a sampler: a CLIENT span with no parent (Celery's broker polling, a cache call at import
    time) would be a one-span trace of noise; it is dropped. Everything else is up to the wrapped sampler."""

    def __init__(self, delegate: Any):
        self.delegate = delegate

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        from opentelemetry import trace
        from opentelemetry.sdk.trace.sampling import Decision, SamplingResult

        if kind == trace.SpanKind.CLIENT and not trace.get_current_span(parent_context).get_span_context().is_valid:
            return SamplingResult(Decision.DROP)
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"DropOrphanClientSpans({self.delegate.get_description()})"


def _exporter(config: ObserveConfig) -> Any:
    if config.otel_traces_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    endpoint = config.otel_exporter_otlp_endpoint
    if config.otel_exporter_otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint or "http://localhost:4317")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The endpoint setting is a base URL, as in the OTLP spec; the HTTP exporter wants the full path.
    return OTLPSpanExporter(endpoint=(endpoint or "http://localhost:4318").rstrip("/") + "/v1/traces")


def build_provider(config: ObserveConfig) -> Any:
    """Create and install the global TracerProvider for this process (once)."""
    global _provider
    with _lock:
        if _provider is not None:
            return _provider
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from .. import tracing as tracing_package

        resource = Resource.create(
            {
                "service.name": config.otel_service_name or config.service_name,
                "service.version": config.service_version,
                "deployment.environment.name": config.service_environment,
            }
        )
        provider = TracerProvider(resource=resource, sampler=_sampler(config))
        if config.otel_traces_exporter != "none":
            from .redaction import RedactingSpanExporter

            provider.add_span_processor(
                BatchSpanProcessor(RedactingSpanExporter(_exporter(config), config.log_redact_keys))
            )
        trace.set_tracer_provider(provider)
        for name in EXPORT_LOGGERS:
            logging.getLogger(name).addFilter(_Once())
        _provider = provider
        tracing_package._enabled = True
        return provider


def flush() -> None:
    """Export what is buffered (worker exit, process recycling)."""
    if _provider is not None:
        _provider.force_flush(int(FLUSH_SECONDS * 1000))


def _describe(config: ObserveConfig) -> str:
    def src(field: str) -> str:
        return config.sources.get(field, "default")

    endpoint = config.otel_exporter_otlp_endpoint or (
        "http://localhost:4317" if config.otel_exporter_otlp_protocol == "grpc" else "http://localhost:4318"
    )
    return (
        f"tracing enabled: service={config.otel_service_name or config.service_name} "
        f"({src('otel_service_name') if config.otel_service_name else src('service_name')}), "
        f"exporter={config.otel_traces_exporter} ({src('otel_traces_exporter')}), "
        f"endpoint={endpoint} ({src('otel_exporter_otlp_endpoint')}), "
        f"protocol={config.otel_exporter_otlp_protocol} ({src('otel_exporter_otlp_protocol')}), "
        f"sampler={config.otel_traces_sampler}:{config.otel_traces_sampler_arg:g} ({src('otel_traces_sampler')})"
    )


def get_server_spans() -> Any:
    """The request-span helper ``ObserveMiddleware`` uses (None when tracing is off)."""
    return _server_spans


def _instrument(config: ObserveConfig, django_settings: Any) -> None:
    global _server_spans
    from .server import ServerSpans

    # Request spans come from ObserveMiddleware (see server.py), not from the contrib Django middleware.
    _server_spans = ServerSpans(config.tracing_excluded_urls)
    optional = [
        ("celery", "opentelemetry.instrumentation.celery", "CeleryInstrumentor"),
        ("redis", "opentelemetry.instrumentation.redis", "RedisInstrumentor"),
        ("psycopg", "opentelemetry.instrumentation.psycopg", "PsycopgInstrumentor"),
        ("psycopg2", "opentelemetry.instrumentation.psycopg2", "Psycopg2Instrumentor"),
        ("sqlite3", "opentelemetry.instrumentation.sqlite3", "SQLite3Instrumentor"),
        ("requests", "opentelemetry.instrumentation.requests", "RequestsInstrumentor"),
        ("httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
    ]
    for library, module, cls in optional:
        if _installed(library) and _installed(module):
            instrumentor = getattr(importlib.import_module(module), cls)()
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument()


def configure_tracing(config: ObserveConfig, *, role: str, django_settings: Any) -> bool:
    """Instrument and (except in a Celery worker's main process) build the provider. False when disabled."""
    global _config
    if not config.otel_enabled:
        return False
    if not _installed("opentelemetry.sdk") or not _installed("opentelemetry.instrumentation"):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "OTEL_ENABLED is true but the OpenTelemetry packages are missing: pip install 'django-observe[otel]'"
        )
    _config = config
    _instrument(config, django_settings)
    if role == "worker":
        _connect_celery_worker(config)
    else:
        build_provider(config)
    if role in ("web", "worker"):
        logger.info(_describe(config))
    return True


def _connect_celery_worker(config: ObserveConfig) -> None:
    from celery import signals

    def on_process_init(**kwargs: Any) -> None:
        build_provider(config)

    def on_prerun(**kwargs: Any) -> None:
        if _provider is None:  # solo/threads pools: no child process init
            build_provider(config)

    def on_process_shutdown(**kwargs: Any) -> None:
        flush()

    signals.worker_process_init.connect(on_process_init, weak=False)
    signals.task_prerun.connect(on_prerun, weak=False)
    signals.worker_process_shutdown.connect(on_process_shutdown, weak=False)
    signals.worker_shutdown.connect(on_process_shutdown, weak=False)
