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
import os
from collections.abc import Callable
from typing import Any

from .. import forking
from ..breaker import fail_fast_session
from ..conf import ObserveConfig
from ..identity import ServiceIdentity
from ..llm.content import WithheldTexts
from ..otlp_exporters import otlp_exporter
from .contrib import DjangoInstrumentation, instrumentation
from .mismatch import MismatchWords
from .server import ServerSpans

__all__ = [
    "TracingState",
    "build_provider",
    "configure_tracing",
    "describe",
    "flush",
    "instrument_libraries",
    "redact_exporters",
    "require_packages",
    "server_spans",
]

logger = logging.getLogger("django_observe.tracing")

FLUSH_SECONDS = 5.0
# Each logger an export problem is written to, by its exact name: a filter on a parent logger never sees the
# records of its children (logging applies a logger's filters only to what is logged on it), so the log and
# metric exporters' loggers are listed themselves.
EXPORT_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk._logs._internal.export",
    "opentelemetry.sdk.metrics._internal.export",
)


# The loggers OpenTelemetry writes a warning to for every bad entry of an incoming ``baggage`` header: one
# anonymous 1.5 KB header made 181 lines.
BAGGAGE_LOGGERS = ("opentelemetry.baggage.propagation", "opentelemetry.baggage")


class _Once(logging.Filter):
    """Lets the first warning of a logger through; an unreachable collector is reported once, not per batch."""

    def __init__(self, what: str = "tracing export problems") -> None:
        super().__init__()
        self.seen = False
        self.what = what

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        if self.seen:
            return False
        self.seen = True
        record.msg = f"{record.msg} ({self.what} are reported once per process)"
        return True


def _report_once() -> None:
    """Export and baggage problems: one line per logger and process (idempotent)."""
    for name in EXPORT_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, _Once) for f in target.filters):
            target.addFilter(MismatchWords())  # before _Once, which appends its note
            target.addFilter(_Once())
    for name in BAGGAGE_LOGGERS:
        target = logging.getLogger(name)
        if not any(isinstance(f, _Once) for f in target.filters):
            target.addFilter(_Once("malformed baggage headers"))


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
    return otlp_exporter(
        "traces",
        config.otel_exporter_otlp_endpoint,
        config.otel_exporter_otlp_protocol,
        session=fail_fast_session(os.environ),
    )


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
    announce: bool = False
    withheld: WithheldTexts | None = None
    on_drop: Callable[[int], None] | None = None

    def announce_once(self) -> None:
        """Log the ``tracing enabled`` line (serving processes and workers, once, after logging is set up)."""
        global _announced
        if self.announce and not _announced:
            _announced = True
            logger.info(describe(self.config))

    def ensure_provider(self) -> Any:
        """The provider, built on first use (Celery children and solo pools build it here)."""
        if self.provider is None:
            self.provider = build_provider(self.config, self.identity, self.withheld, self.on_drop)
        return self.provider

    def flush(self) -> None:
        """Export what is buffered (worker exit, process recycling)."""
        flush(self.provider)


def build_provider(
    config: ObserveConfig,
    identity: ServiceIdentity | None = None,
    withheld: WithheldTexts | None = None,
    on_drop: Callable[[int], None] | None = None,
) -> Any:
    """Create and install the global TracerProvider, or return the SDK provider already installed.

    OpenTelemetry accepts one global provider per process; a rebuilt runtime keeps it. Its resource is the
    service identity (with this process's ``service.instance.id``), the same as the logs' and metrics'.
    ``withheld``: the LLM error texts the exporter keeps off spans (content capture off). The OTLP exporter sits
    behind the dead-collector breaker (``django_observe.breaker``); ``on_drop`` counts the spans it drops.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    existing = trace.get_tracer_provider()
    if isinstance(existing, TracerProvider):
        redact_exporters(existing, config.log_redact_keys + config.secret_key_names + config.log_redact_paths, withheld)
        _report_once()
        return existing
    identity = identity or ServiceIdentity.from_config(config)
    resource = Resource.create(identity.resource_attributes())
    provider = TracerProvider(resource=resource, sampler=_sampler(config))
    if config.otel_traces_exporter != "none":
        from opentelemetry.sdk.trace.export import SpanExportResult

        from ..breaker import ExportBreaker
        from .redaction import RedactingSpanExporter

        where = config.otel_exporter_otlp_endpoint or "the OTLP collector"
        exporter: Any = RedactingSpanExporter(
            _exporter(config),
            config.log_redact_keys + config.secret_key_names + config.log_redact_paths,
            where=where,
            withheld=withheld,
        )
        if config.otel_traces_exporter == "otlp":
            # Outermost: a batch dropped while the collector is down costs neither redaction nor a request.
            exporter = ExportBreaker(
                exporter,
                what="spans",
                where=where,
                failure=SpanExportResult.FAILURE,
                succeeded=lambda result: result == SpanExportResult.SUCCESS,
                on_drop=on_drop,
            )
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _report_once()
    return provider


def redact_exporters(provider: Any, secret_keys: tuple[str, ...], withheld: WithheldTexts | None = None) -> int:
    """Wrap the exporters of a provider someone else built (``opentelemetry-instrument``) in redaction.

    The SDK has no public way to reach a batch processor's exporter; this reads its private attribute and
    leaves a processor it does not know as it is (tests/unit/test_private_apis.py checks the SDK's shape).

    Returns:
        How many exporters are now wrapped.
    """
    from ..breaker import ExportBreaker
    from .redaction import RedactingSpanExporter

    wrapped = 0
    multi = getattr(provider, "_active_span_processor", None)
    for processor in getattr(multi, "_span_processors", ()):
        holder, name = processor, "span_exporter"  # SimpleSpanProcessor
        if hasattr(processor, "_batch_processor"):  # BatchSpanProcessor
            holder, name = processor._batch_processor, "_exporter"
        exporter = getattr(holder, name, None)
        if isinstance(exporter, ExportBreaker):  # ours (build_provider): redaction is behind it
            holder, name, exporter = exporter, "exporter", exporter.exporter
        if isinstance(exporter, RedactingSpanExporter):
            exporter.withheld = withheld  # a rebuilt runtime's
            wrapped += 1
        elif exporter is not None and hasattr(exporter, "export"):
            setattr(holder, name, RedactingSpanExporter(exporter, secret_keys, withheld=withheld))
            wrapped += 1
    return wrapped


def flush(provider: Any) -> None:
    """Export what ``provider`` buffers (no-op for None)."""
    if provider is not None:
        provider.force_flush(int(FLUSH_SECONDS * 1000))


_announced = False


def describe(config: ObserveConfig) -> str:
    """The ``tracing enabled`` start-up line: the effective exporter settings and where each came from."""

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
    # GenAI spans of the openai and anthropic SDKs (opentelemetry-instrumentation-genai-*, the `genai` extra);
    # llm_call opens none for them, and tracing.genai_cost.CostHook puts the cost on theirs.
    ("openai", "opentelemetry.instrumentation.genai.openai", "OpenAIInstrumentor"),
    ("anthropic", "opentelemetry.instrumentation.genai.anthropic", "AnthropicInstrumentor"),
)
_GENAI_MODULES = frozenset(module for library, module, _ in _INSTRUMENTORS if library in ("openai", "anthropic"))


def _instrument_kwargs(module: str) -> dict[str, Any]:
    if module not in _GENAI_MODULES:
        return {}
    from opentelemetry.util.genai.completion_hook import load_completion_hook

    from .genai_cost import CostHook

    return {"completion_hook": CostHook(load_completion_hook())}


def instrument_libraries() -> None:
    """The client instrumentors of the libraries the project uses: each one when its library is imported (at
    once for a library imported already), never because the library is merely installed; an instrumentor
    module imports its library, so importing it earlier would load, say, the openai SDK into every process.
    Once per library: the instrumentors remember it."""
    for library, module, cls in _INSTRUMENTORS:
        if (library, module) in _hooked or not _installed(module):
            continue
        _hooked.add((library, module))
        from wrapt import register_post_import_hook  # opentelemetry-instrumentation's own dependency

        register_post_import_hook(_instrumenting(library, module, cls), library)
        # From now on wrapt's finder takes this lock on every import: a child forked while another thread imports
        # must not inherit it held.
        forking.reinit_in_child(getattr(importlib.import_module("wrapt.importer"), "_post_import_hooks_lock", None))


_hooked: set[tuple[str, str]] = set()


def _instrumenting(library: str, module: str, cls: str) -> Any:
    def instrument(_imported: Any) -> None:
        try:
            instrumentor = getattr(importlib.import_module(module), cls)()
        except ImportError as exc:  # an instrumentation whose own dependencies do not match
            logger.warning("%s cannot be imported, %s calls are not traced: %s", module, library, exc)
            return
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(**_instrument_kwargs(module))

    return instrument


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
        secret_keys=config.log_redact_keys + config.secret_key_names + config.log_redact_paths,
        request_hooks=request_hooks,
        response_hooks=response_hooks,
    )


def configure_tracing(
    config: ObserveConfig,
    *,
    role: str,
    identity: ServiceIdentity | None = None,
    withheld: WithheldTexts | None = None,
    on_drop: Callable[[int], None] | None = None,
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
    state = TracingState(
        spans=server_spans(config, instrumentation()),
        config=config,
        identity=identity,
        withheld=withheld,
        on_drop=on_drop,
    )
    if role != "worker":
        state.ensure_provider()
    state.announce = role in ("web", "worker")
    return state
