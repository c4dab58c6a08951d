"""Set up the OpenTelemetry SDK and instrumentors once per process (only when ``OTEL_ENABLED``).

Process models:

- gunicorn, uvicorn, runserver: Django loads in each serving process, so the SDK is built there.
- Celery prefork: instrumentors are installed in the main process (their tracers are proxies), the provider
  is built in each child (``worker_process_init``), or on the first task for pools without children;
  ``worker_process_shutdown`` flushes, so a child recycled by ``max_tasks_per_child`` loses no span.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
from typing import Any

from ..conf import ObserveConfig
from ..identity import ServiceIdentity
from .contrib import DjangoInstrumentation, instrumentation
from .server import ServerSpans

__all__ = [
    "TracingState",
    "build_provider",
    "configure_tracing",
    "flush",
    "instrument_libraries",
    "redact_exporters",
    "require_packages",
    "server_spans",
]

logger = logging.getLogger("django_observe.tracing")

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
        from opentelemetry import trace
        from opentelemetry.sdk.trace.sampling import Decision, SamplingResult

        self.delegate = delegate
        self._client, self._current_span = trace.SpanKind.CLIENT, trace.get_current_span
        self._drop = SamplingResult(Decision.DROP)

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None, trace_state=None):
        if kind == self._client and not self._current_span(parent_context).get_span_context().is_valid:
            return self._drop
        return self.delegate.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"DropOrphanClientSpans({self.delegate.get_description()})"


def _exporter(config: ObserveConfig) -> Any:
    if config.otel_traces_exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    endpoint = config.otel_exporter_otlp_endpoint
    if config.otel_exporter_otlp_protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter(endpoint=endpoint or "http://localhost:4317")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The endpoint setting is a base URL, as in the OTLP spec; the HTTP exporter wants the full path.
    return OTLPSpanExporter(endpoint=(endpoint or "http://localhost:4318").rstrip("/") + "/v1/traces")


@dataclasses.dataclass
class TracingState:
    """Tracing in this process.

    Attributes:
        spans: starts and ends the SERVER span of each request (``ObserveMiddleware``).
        provider: the SDK ``TracerProvider``; None in a Celery worker's main process until a child builds it.
        config: what the provider is built from (a Celery child builds it after the fork).
    """

    spans: ServerSpans
    config: ObserveConfig
    provider: Any = None
    identity: ServiceIdentity | None = None

    def ensure_provider(self) -> Any:
        """The provider, built on first use (Celery children and solo pools build it here)."""
        if self.provider is None:
            self.provider = build_provider(self.config, self.identity)
        return self.provider

    def flush(self) -> None:
        """Export what is buffered (worker exit, process recycling)."""
        flush(self.provider)


def build_provider(config: ObserveConfig, identity: ServiceIdentity | None = None) -> Any:
    """Create and install the global TracerProvider, or return the SDK provider already installed.

    OpenTelemetry accepts one global provider per process; a rebuilt runtime keeps it. Its resource is the
    service identity (with this process's ``service.instance.id``), the same as the logs' and metrics'.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        redact_exporters(existing, config.log_redact_keys + config.secret_key_names)
        return existing
    identity = identity or ServiceIdentity.from_config(config)
    resource = Resource.create(identity.resource_attributes())
    provider = TracerProvider(resource=resource, sampler=_sampler(config))
    if config.otel_traces_exporter != "none":
        from .redaction import RedactingSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(
                RedactingSpanExporter(_exporter(config), config.log_redact_keys + config.secret_key_names)
            )
        )
    trace.set_tracer_provider(provider)
    for name in EXPORT_LOGGERS:
        logging.getLogger(name).addFilter(_Once())
    return provider


def redact_exporters(provider: Any, secret_keys: tuple[str, ...]) -> int:
    """Wrap the exporters of a provider someone else built (``opentelemetry-instrument``) in redaction.

    The SDK has no public way to reach a batch processor's exporter; this reads its private attribute and
    leaves a processor it does not know as it is (tests/unit/test_private_apis.py checks the SDK's shape).

    Returns:
        How many exporters are now wrapped.
    """
    from .redaction import RedactingSpanExporter

    wrapped = 0
    multi = getattr(provider, "_active_span_processor", None)
    for processor in getattr(multi, "_span_processors", ()):
        holder, name = processor, "span_exporter"  # SimpleSpanProcessor
        if hasattr(processor, "_batch_processor"):  # BatchSpanProcessor
            holder, name = processor._batch_processor, "_exporter"
        exporter = getattr(holder, name, None)
        if isinstance(exporter, RedactingSpanExporter):
            wrapped += 1
        elif exporter is not None and hasattr(exporter, "export"):
            setattr(holder, name, RedactingSpanExporter(exporter, secret_keys))
            wrapped += 1
    return wrapped


def flush(provider: Any) -> None:
    """Export what ``provider`` buffers (no-op for None)."""
    if provider is not None:
        provider.force_flush(int(FLUSH_SECONDS * 1000))


def _describe(config: ObserveConfig) -> str:
    def src(field: str) -> str:
        return config.sources.get(field, "default")

    endpoint = config.otel_exporter_otlp_endpoint or (
        "http://localhost:4317" if config.otel_exporter_otlp_protocol == "grpc" else "http://localhost:4318"
    )
    return (
        f"tracing enabled: service={config.service_name} ({src('service_name')}), "
        f"exporter={config.otel_traces_exporter} ({src('otel_traces_exporter')}), "
        f"endpoint={endpoint} ({src('otel_exporter_otlp_endpoint')}), "
        f"protocol={config.otel_exporter_otlp_protocol} ({src('otel_exporter_otlp_protocol')}), "
        f"sampler={config.otel_traces_sampler}:{config.otel_traces_sampler_arg:g} ({src('otel_traces_sampler')})"
    )


_INSTRUMENTORS = (
    ("celery", "opentelemetry.instrumentation.celery", "CeleryInstrumentor"),
    ("redis", "opentelemetry.instrumentation.redis", "RedisInstrumentor"),
    ("psycopg", "opentelemetry.instrumentation.psycopg", "PsycopgInstrumentor"),
    ("psycopg2", "opentelemetry.instrumentation.psycopg2", "Psycopg2Instrumentor"),
    ("sqlite3", "opentelemetry.instrumentation.sqlite3", "SQLite3Instrumentor"),
    ("requests", "opentelemetry.instrumentation.requests", "RequestsInstrumentor"),
    ("httpx", "opentelemetry.instrumentation.httpx", "HTTPXClientInstrumentor"),
    # GenAI spans of the openai SDK (opentelemetry-instrumentation-openai-v2); llm_call opens none for them.
    ("openai", "opentelemetry.instrumentation.openai_v2", "OpenAIInstrumentor"),
)


def instrument_libraries() -> None:
    """The client instrumentors of the installed libraries (once: the instrumentors remember it)."""
    for library, module, cls in _INSTRUMENTORS:
        if _installed(library) and _installed(module):
            try:
                instrumentor = getattr(importlib.import_module(module), cls)()
            except ImportError as exc:  # an instrumentation whose own dependencies do not match
                logger.warning("%s cannot be imported, %s calls are not traced: %s", module, library, exc)
                continue
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument()


def require_packages() -> None:
    """Raises ``ImproperlyConfigured`` when ``OTEL_ENABLED`` is on and the SDK is missing."""
    if not _installed("opentelemetry.sdk") or not _installed("opentelemetry.instrumentation"):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "OTEL_ENABLED is true but the OpenTelemetry packages are missing: pip install 'django-observe[otel]'"
        )


def _hook(config: ObserveConfig, field: str) -> Any:
    value = getattr(config, field)
    if value is None or callable(value):
        return value
    from django.core.exceptions import ImproperlyConfigured
    from django.utils.module_loading import import_string

    try:
        hook = import_string(value)
    except ImportError as exc:
        raise ImproperlyConfigured(f"{field.upper()} {value!r} cannot be imported: {exc}") from None
    if not callable(hook):
        raise ImproperlyConfigured(f"{field.upper()} {value!r} is not callable")
    return hook


def server_spans(config: ObserveConfig, contrib: DjangoInstrumentation | None = None) -> ServerSpans:
    """The request-span factory for ``config``, plus what the contrib's ``instrument()`` was given.

    Raises:
        ImproperlyConfigured: a hook's dotted path cannot be imported.
    """
    url_excluded = config.otel_python_django_excluded_urls or config.otel_python_excluded_urls
    request_hooks = [h for h in (_hook(config, "tracing_request_hook"),) if h is not None]
    response_hooks = [h for h in (_hook(config, "tracing_response_hook"),) if h is not None]
    contrib_check = None
    if contrib is not None:
        request_hooks += [contrib.request_hook] if contrib.request_hook is not None else []
        response_hooks += [contrib.response_hook] if contrib.response_hook is not None else []
        if contrib.excluded_urls and tuple(contrib.excluded_urls) != tuple(url_excluded):
            contrib_check = contrib.url_disabled
    return ServerSpans(
        config.tracing_excluded_urls,
        url_excluded=url_excluded,
        url_excluded_check=contrib_check,
        traced_request_attrs=config.otel_python_django_traced_request_attrs,
        request_headers=config.otel_instrumentation_http_capture_headers_server_request,
        response_headers=config.otel_instrumentation_http_capture_headers_server_response,
        sanitize_headers=config.otel_instrumentation_http_capture_headers_sanitize_fields,
        secret_keys=config.log_redact_keys + config.secret_key_names,
        request_hooks=request_hooks,
        response_hooks=response_hooks,
    )


def configure_tracing(
    config: ObserveConfig, *, role: str, identity: ServiceIdentity | None = None
) -> TracingState | None:
    """Instrument and (except in a Celery worker's main process) build the provider. None when disabled.

    Request spans come from ``ObserveMiddleware`` (see server.py), not from the contrib Django middleware.
    In a Celery worker the provider is built after the fork (``integrations.celery``).

    Raises:
        ImproperlyConfigured: tracing is on and the OpenTelemetry packages are missing.
    """
    if not config.otel_enabled:
        return None
    require_packages()
    state = TracingState(spans=server_spans(config, instrumentation()), config=config, identity=identity)
    if role != "worker":
        state.ensure_provider()
    if role in ("web", "worker"):
        logger.info(_describe(config))
    return state
