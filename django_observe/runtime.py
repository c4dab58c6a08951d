"""The runtime: everything django_observe builds for this process, in one object, the only singleton.

``AppConfig.ready()`` builds it from the validated configuration (``django_observe.wiring``) and installs it
here; the middleware, the views, the commands and the patched library functions read it at call time with
:func:`current`. Rebuilding it (``wiring.rebuild()``, run on Django's ``setting_changed`` signal for
``DJANGO_OBSERVE``, ``LOG_LEVEL``, ``LOG_FORMAT`` and ``OTEL_ENABLED``) swaps every part at once.

This module imports nothing of django_observe at run time, so every layer may read it.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

__all__ = [
    "Collector",
    "Config",
    "ConfigProblem",
    "Console",
    "Correlation",
    "Health",
    "Identity",
    "Metrics",
    "Outbound",
    "QueryCounting",
    "RequestRecorder",
    "Runtime",
    "ServerSpans",
    "SqlCommenter",
    "Tracing",
    "WithheldErrors",
    "current",
    "get_config",
    "get_runtime",
    "install",
    "uninstall",
]

# What the readers of a runtime's parts use of them, as protocols: the parts are built by the subsystems
# (``wiring.build_runtime``), which this module does not import, not even for annotations. Each protocol lists
# only what a reader outside the part's own subsystem takes from it; the subsystem that built a part and needs
# more of it narrows it back to its own class (``isinstance``), as ``conf.loaded()`` does for the configuration.


class Config(Protocol):
    """The options read straight off ``runtime.config`` (``conf.ObserveConfig`` has them all)."""

    @property
    def celery_app(self) -> str | None: ...
    @property
    def celery_heartbeat_file(self) -> str | None: ...
    @property
    def celery_heartbeat_interval(self) -> float: ...
    @property
    def console_database(self) -> str: ...
    @property
    def correlation_headers(self) -> tuple[str, ...]: ...
    @property
    def db_query_stats(self) -> bool: ...
    @property
    def django_tasks_context(self) -> bool: ...
    @property
    def health_details(self) -> str: ...
    @property
    def health_probe_bypass(self) -> bool: ...
    @property
    def health_token(self) -> str | None: ...
    @property
    def llm_currency(self) -> str: ...
    @property
    def llm_default_prices(self) -> bool: ...
    @property
    def llm_prices(self) -> Mapping[str, Any]: ...
    @property
    def log_format(self) -> str: ...
    @property
    def log_redact_keys(self) -> tuple[str, ...]: ...
    @property
    def log_redact_paths(self) -> tuple[str, ...]: ...
    @property
    def metrics_allowed_ips(self) -> tuple[str, ...]: ...
    @property
    def metrics_cache(self) -> bool: ...
    @property
    def metrics_db(self) -> bool: ...
    @property
    def metrics_token(self) -> str | None: ...
    @property
    def metrics_view_enabled(self) -> bool: ...
    @property
    def otel_instrumentation_genai_capture_message_content(self) -> str: ...
    @property
    def secret_key_names(self) -> tuple[str, ...]: ...
    @property
    def service_name(self) -> str: ...
    @property
    def service_version(self) -> str: ...


class ConfigProblem(Protocol):
    """One invalid setting (``conf.ConfigError``)."""

    @property
    def message(self) -> str: ...
    @property
    def hint(self) -> str: ...


class Correlation(Protocol):
    """Which incoming correlation IDs are accepted, and new ones (``correlation.CorrelationPolicy``)."""

    def accept(self, value: str | None) -> str | None: ...
    def new(self) -> str: ...


class Identity(Protocol):
    """The service identity every signal carries (``identity.ServiceIdentity``)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def environment(self) -> str: ...


class Health(Protocol):
    """The checks and their runner (``health.runner.HealthRunner``)."""

    @property
    def specs(self) -> Mapping[str, Any]: ...


class RequestRecorder(Protocol):
    """The request metrics ``ObserveMiddleware`` records (``metrics.http.RequestRecorder``)."""

    def begin(self) -> None: ...
    def abandon(self) -> None: ...
    def end(self, request: Any, status: int, seconds: float, state: Any = None, queries: Any = None) -> None: ...
    def exception(self, request: Any, exception: BaseException) -> None: ...


class Collector(Protocol):
    """A scrape-time collector (prometheus_client's ``Collector``)."""

    def collect(self) -> Iterable[Any]: ...


class Metrics(Protocol):
    """The metrics of this process (``metrics.setup.MetricsState``)."""

    @property
    def recorder(self) -> RequestRecorder: ...
    @property
    def multiprocess_path(self) -> str | None: ...
    @property
    def collectors(self) -> Sequence[Collector]: ...
    def close(self) -> None: ...
    def reopen(self) -> None: ...


class ServerSpans(Protocol):
    """Starts and ends the SERVER span of each request (``tracing.server.ServerSpans``)."""

    def start(self, request: Any) -> tuple[Any, Any] | None: ...
    def finish(self, request: Any, span: Any, *args: Any) -> None: ...


class Tracing(Protocol):
    """Tracing in this process (``tracing.setup.TracingState``)."""

    @property
    def spans(self) -> ServerSpans: ...
    def announce_once(self) -> None: ...
    def ensure_provider(self) -> Any: ...
    def flush(self) -> None: ...


class QueryCounting(Protocol):
    """Per-request and per-task statement counting (``queries.QueryCounter``)."""

    @property
    def enabled(self) -> bool: ...
    def new(self) -> Any: ...
    def begin(self) -> Any: ...


class SqlCommenter(Protocol):
    """The sqlcommenter comments on a request's SQL (``integrations.sqlcomment.SqlComments``)."""

    def begin(self, request: Any) -> Any: ...


class Outbound(Protocol):
    """Who gets the correlation header on outbound HTTP calls (``integrations.http_clients.OutboundPolicy``)."""

    @property
    def header(self) -> str: ...


class Console(Protocol):
    """The console's recorder (``console.recorder.ConsoleRecorder``): told about requests and LLM calls."""

    def begin(self) -> Any: ...
    def abandon(self) -> None: ...
    def end_request(self, request: Any, status: int, elapsed_ns: int, correlation_id: str) -> None: ...
    def llm_call(self, call: Any, seconds: float) -> None: ...


class WithheldErrors(Protocol):
    """The messages of exceptions that left LLM calls, kept off spans, log lines and the console
    (``llm.content.WithheldTexts``)."""

    def add(self, error: BaseException) -> None: ...


@dataclasses.dataclass(eq=False)
class Runtime:
    """What this process runs.

    Attributes:
        config: the validated configuration.
        role: ``web``, ``worker``, ``beat`` or ``command`` (``django_observe.process.process_role``).
        correlation: which incoming correlation IDs are accepted, and how new ones look.
        identity: the service identity every signal carries (``django_observe.identity``).
        health: the checks and their runner.
        metrics: the catalogue, the request recorder and the scrape-time collectors; None with metrics off.
        tracing: the tracer provider and the request-span factory; None with tracing off.
        queries: per-request and per-task statement counting.
        sql_comments: the sqlcommenter comments on a request's SQL (``TRACING_SQL_COMMENTER``); None when off.
        outbound: who gets the correlation header on outbound HTTP calls; None with propagation off.
        logging_setup: configures the process's logging (None when the project keeps its own); Celery calls
            it when a worker starts.
        errors: configuration errors found at start-up (reported by ``manage.py check``).
        integrations: the libraries wired (``celery``, ``requests``, ...).
        console: the console's recorder (``django_observe.console`` installed), else None.
        llm_errors: the messages of exceptions that left LLM calls, kept off spans, log lines and the console
            while content capture is off (``llm.content``); None with content capture on.
    """

    config: Config
    role: str
    correlation: Correlation
    identity: Identity | None = None
    health: Health | None = None
    metrics: Metrics | None = None
    tracing: Tracing | None = None
    queries: QueryCounting | None = None
    sql_comments: SqlCommenter | None = None
    outbound: Outbound | None = None
    logging_setup: Callable[[], None] | None = None
    errors: tuple[ConfigProblem, ...] = ()
    integrations: tuple[str, ...] = ()
    console: Console | None = None
    llm_errors: WithheldErrors | None = None


_lock = threading.Lock()
_current: Runtime | None = None


def current() -> Runtime | None:
    """The installed runtime, or None before ``django.setup()``."""
    return _current


def get_runtime() -> Runtime:
    """The installed runtime.

    Raises:
        RuntimeError: django_observe is not set up (not in ``INSTALLED_APPS``, or ``django.setup()`` not run).
    """
    runtime = _current
    if runtime is None:
        raise RuntimeError('django_observe is not set up: add "django_observe" to INSTALLED_APPS')
    return runtime


def get_config() -> Config:
    """The validated configuration of this process (``django_observe.get_config()``).

    Raises:
        RuntimeError: django_observe is not set up.
        ImproperlyConfigured: the configuration is invalid (a management command runs on the defaults then,
            so that ``manage.py check`` can report why; nothing should use them).
    """
    runtime = get_runtime()
    if runtime.errors:
        from django.core.exceptions import ImproperlyConfigured

        problems = "\n".join(f"  - {error.message}" for error in runtime.errors)
        raise ImproperlyConfigured(f"django_observe configuration is invalid:\n{problems}")
    return runtime.config


def install(runtime: Runtime) -> Runtime | None:
    """Make ``runtime`` the current one; returns the one it replaces."""
    global _current
    with _lock:
        previous, _current = _current, runtime
    return previous


def uninstall() -> Runtime | None:
    """Remove the current runtime (tests); returns it."""
    global _current
    with _lock:
        previous, _current = _current, None
    return previous
