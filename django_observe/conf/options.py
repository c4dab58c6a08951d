"""The option table: every setting django_observe reads is a field of :class:`ObserveConfig`.

A field's metadata (see :func:`option`) says how its raw value is parsed, what it means and, for a
computed default, what that default is; loading (``loading.py``) and the configuration reference
(``reference.py``) are driven by it alone.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django_observe.llm.pricing import Price, parse_currency, parse_prices
from django_observe.objectives import Objective

from . import defaults
from .parsers import (
    attribute_names,
    boolean,
    buckets,
    check_list,
    choice,
    header_list,
    hook,
    host_patterns,
    integer,
    key_names,
    mapping,
    metric_prefix,
    networks,
    number,
    optional_choice,
    optional_integer,
    optional_number,
    optional_text,
    regex,
    regex_list,
    resource_attributes,
    route_patterns,
    sample_rates,
    slo_list,
    text,
    text_list,
    url,
    url_template,
)

__all__ = ["LOG_JSON_FLAVORS", "ObserveConfig", "option", "option_fields", "option_names"]

T = TypeVar("T")

# The values of LOG_JSON_FLAVOR, named once: logging.flavours.FLAVORS has one row per name (a processor, None
# for "default"), and tests/unit/test_logging_flavours.py checks the two agree.
LOG_JSON_FLAVORS = ("default", "gcp", "datadog", "ecs")


def option(
    default: T,
    parse: Callable[[Any], T],
    doc: str,
    *,
    top_level: bool = False,
    secret: bool = False,
    default_from: Callable[[Any], T] | None = None,
    default_doc: str | None = None,
) -> T:
    """Declare one option: a dataclass field whose metadata drives loading and the docs.

    Args:
        default: the value when nothing is set (already clean). A dict default is copied for each config.
        parse: turns a raw value into a clean one, raising ``ValueError``.
        doc: one sentence for the configuration reference.
        top_level: read from a top-level Django setting instead of ``DJANGO_OBSERVE``.
        secret: never echo the value in error messages or ``observe_config`` output.
        default_from: computes the default from the Django settings object.
        default_doc: the computed default as the reference shows it (Markdown); default: the first
            paragraph of ``default_from``'s docstring.

    Raises:
        TypeError: for a list or set default (use a tuple), or a computed default without a description.
    """
    if isinstance(default, (list, set)):
        raise TypeError("use a tuple or None as the default of an option")
    if default_from is not None and default_doc is None:
        default_doc = (inspect.getdoc(default_from) or "").split("\n\n")[0].replace("\n", " ").strip() or None
        if default_doc is None:
            raise TypeError(f"{default_from.__name__} computes a default: give it a docstring or pass default_doc")
    metadata = {
        "parse": parse,
        "doc": doc,
        "top_level": top_level,
        "secret": secret,
        "default": default,
        "default_from": default_from,
        "default_doc": default_doc,
    }
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: copy.copy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class ObserveConfig:
    """The validated configuration of django_observe (read-only)."""

    # Top-level settings customers already know.
    log_level: str = option(
        "info",
        choice("error", "warning", "info", "debug", "trace", aliases={"warn": "warning"}),
        "Minimum level of log lines: error, warning (or warn), info, debug or trace; any case.",
        top_level=True,
    )
    log_format: str = option(
        "json",
        choice("json", "text"),
        'Log line format: "json" for production, "text" for development; defaults to text when DEBUG, else json.',
        top_level=True,
        default_from=defaults.log_format_from_debug,
    )
    otel_enabled: bool = option(False, boolean, "Turn on OpenTelemetry tracing.", top_level=True)

    # Service identity (health bodies, logs, traces, metrics): resolved by django_observe.identity.
    service_name: str = option(
        "django",
        text,
        "Name of the service in health bodies, logs, traces and metrics (`OTEL_SERVICE_NAME` wins over it).",
        default_doc="`service.name` of `OTEL_RESOURCE_ATTRIBUTES`, else the settings package "
        '(`DJANGO_SETTINGS_MODULE="acme.settings"` gives `"acme"`), else `"django"`',
    )
    service_version: str = option(
        "unknown",
        text,
        'Version of the service: /health "version", logs, traces and metrics.',
        default_doc="`service.version` of `OTEL_RESOURCE_ATTRIBUTES`, else the installed distribution's version of "
        'the settings package, else `"unknown"`',
    )
    service_environment: str = option(
        "production",
        text,
        "Deployment environment name (production, staging, ...): logs, traces and metrics.",
        default_doc="`deployment.environment.name` (or `deployment.environment`) of `OTEL_RESOURCE_ATTRIBUTES`, "
        'else `"development"` when `DEBUG`, else `"production"`',
    )

    # Wiring.
    auto_middleware: bool = option(
        True,
        boolean,
        "Insert django_observe's middleware into MIDDLEWARE automatically (a position you list yourself is kept).",
    )

    # Health.
    health_timeout: float = option(2.0, number(0.05, 300), "Default timeout of each health check, in seconds.")
    health_cache_ttl: float = option(
        1.0, number(0, 3600), "Seconds a health result is reused; concurrent probes share one run (0 = no cache)."
    )
    health_details: str = option(
        "always",
        choice("always", "authorized", "never"),
        'What /health shows: "always" (component words and human errors), "authorized" (only to token or staff), '
        '"never" (status only). Raw exception text is only ever shown to authorized callers.',
    )
    health_token: str | None = option(
        None,
        optional_text,
        "Bearer token that authorizes full health details (Authorization: Bearer <token>).",
        secret=True,
    )
    health_checks: tuple[str | Mapping[str, Any], ...] = option(
        (),
        check_list,
        'Custom checks: dotted paths to django-health-check HealthCheck classes, or dicts {"path", "id", "critical", '
        '"timeout", "options"}.',
    )
    health_check_options: dict[str, Any] = option(
        {},
        mapping,
        'Per built-in check id: {"critical": bool, "timeout": seconds, "enabled": bool}, '
        'e.g. {"celery": {"critical": true}}.',
    )
    health_probe_bypass: bool = option(
        True,
        boolean,
        "Answer /healthz and /readyz before the rest of the middleware, so ALLOWED_HOSTS, HTTPS redirects and "
        "login middleware cannot break probes.",
    )
    health_drain_seconds: float = option(
        0.0,
        number(0, 600),
        "On SIGTERM, report /readyz 503 for this many seconds before the server starts its own shutdown.",
    )
    health_disk_paths: tuple[str, ...] = option((".",), text_list, "Paths whose filesystems the disk check watches.")
    health_disk_warn_percent: float = option(
        90.0, number(1, 100), "Disk usage percent above which the disk check warns."
    )
    health_memory_warn_percent: float = option(
        90.0, number(1, 100), "Memory usage percent above which the memory check warns."
    )
    redis_urls: tuple[str, ...] = option(
        (),
        text_list,
        "Redis URLs to check (PING); defaults to the REDIS_URL setting or environment variable.",
        secret=True,
        default_from=defaults.redis_url_setting,
    )
    celery_app: str | None = option(
        None,
        optional_text,
        'Dotted path to the Celery app ("proj.celery:app" or "proj.celery.app"); default: the current Celery app when '
        "Celery is configured.",
    )
    celery_min_workers: int = option(
        1, integer(0, 10_000), "Workers that must answer a ping for the celery check to pass."
    )
    celery_heartbeat_file: str | None = option(
        None,
        optional_text,
        "File a Celery worker touches while its consumer loop runs, read by ``manage.py observe_health "
        "--celery-worker``, which checks every worker's; default: one file per project and worker, "
        "``celery-worker-<SERVICE_NAME>-<node name>.heartbeat``, in a directory private to the user "
        "(``$XDG_RUNTIME_DIR/django_observe`` or ``<temp dir>/django_observe-<uid>``, mode 0700, refused when "
        "another user can write to it); the file is written to a new name and renamed, never through a link "
        '("" or "off": no heartbeat).',
    )
    celery_heartbeat_interval: float = option(
        5.0, number(0.2, 300), "Seconds between two touches of ``CELERY_HEARTBEAT_FILE``."
    )
    django_tasks_context: bool = option(
        True,
        boolean,
        "Carry the correlation ID and trace context from ``Task.enqueue()`` to the task run in the reserved "
        "keyword argument ``_django_observe`` (Django's tasks framework; see docs/django-tasks.md).",
    )

    # Logging and correlation.
    log_configure: str = option(
        "auto",
        choice("auto", "on", "off"),
        'Configure logging for the whole process: "auto" (unless the project defines its own LOGGING), '
        '"on" (always), "off" (never; use django_observe.logging.JSONFormatter/TextFormatter in your LOGGING).',
    )
    log_requests: bool = option(True, boolean, "Log one line per request (logger django_observe.request).")
    log_deduplicate: bool = option(
        False,
        boolean,
        "Drop Django's own response lines (django.request, runserver's django.server) of requests whose request "
        "line django_observe writes, so a request or a 500 is logged once.",
        default_from=defaults.true_under_debug,
    )
    log_redact_keys: tuple[str, ...] = option(
        (),
        text_list,
        "Extra secret key names whose values are replaced by [REDACTED] in logs, span attributes and health "
        "errors (secret-looking keys always are; merged with SECRET_KEY_NAMES; see docs/security.md).",
    )
    log_redact_paths: tuple[str, ...] = option(
        (),
        route_patterns,
        "URL route patterns whose <placeholders> are secret path segments, replaced by [REDACTED] wherever the "
        "path is written (request lines, `url.path` and span names, Django's 404 records, health bodies); "
        "Django's password-reset route `reset/<uidb64>/<token>/` always is. Example: `['invite/<code>/accept/']`.",
    )
    secret_key_names: tuple[str, ...] = option(
        (),
        key_names,
        "Extra key names treated as secret wherever values are redacted (health errors, span attributes, log lines, "
        "`observe_config` output), in addition to the built-in ones (password, token, api_key, ...); compared "
        "case-insensitively.",
    )
    correlation_headers: tuple[str, ...] = option(
        ("X-Correlation-ID", "X-Request-ID"),
        header_list,
        "Request headers read for an incoming correlation ID, in order; the first is also the response header.",
    )
    correlation_id_pattern: str = option(
        r"[A-Za-z0-9._:-]{1,128}",
        regex,
        "Regular expression an incoming correlation ID must match in full (else a new ID is generated).",
    )
    correlation_id_prefix: str = option("req_", text, "Prefix of generated correlation IDs (req_ + 24 hex digits).")
    correlation_propagate: bool = option(
        True,
        boolean,
        "Send the current correlation ID in the first CORRELATION_HEADERS header on outbound requests and httpx calls "
        "(a header the caller set is kept).",
    )
    correlation_propagate_hosts: tuple[str, ...] = option(
        ("*",),
        host_patterns,
        'Hosts outbound calls may carry the correlation ID to: "*" (all), exact hosts or IP addresses, or '
        '"*.example.com" (every subdomain of example.com, not example.com itself).',
    )
    log_json_flavor: str = option(
        "default",
        choice(*LOG_JSON_FLAVORS),
        "Field names of JSON lines: our own schema, or the names GCP Cloud Logging, Datadog or the Elastic Common "
        "Schema understand natively (see the logging pages per platform).",
    )
    log_gcp_project: str | None = option(
        None,
        optional_text,
        'GCP project of the "gcp" flavour: trace IDs are written as `projects/PROJECT/traces/TRACE_ID` (without '
        "a project, the bare trace ID).",
        default_from=defaults.gcp_project_from_environment,
    )
    log_requests_sample: dict[str, float] = option(
        {},
        sample_rates,
        'Keep rates of successful request lines, by path prefix (`"/api/ping"`) or route pattern '
        '(`"api/items/<int:pk>"`), e.g. `{"/api/ping": 0.1}`; errors (status >= 400) and slow requests are always '
        "logged.",
    )
    log_slow_request_ms: float = option(
        1000.0,
        number(0, 3_600_000),
        "Request lines at least this slow (milliseconds) are always logged, whatever LOG_REQUESTS_SAMPLE says.",
    )

    # Metrics.
    metrics_enabled: bool = option(True, boolean, "Record Prometheus metrics.")
    metrics_address: str = option(
        "0.0.0.0",
        text,
        "Address the metrics port binds to (keep the port off the public network).",
        default_from=defaults.metrics_address_from_debug,
    )
    metrics_port: int = option(8001, integer(0, 65535), "Metrics port of web processes (0: no exporter).")
    metrics_worker_port: int = option(8002, integer(0, 65535), "Metrics port of Celery workers (0: no exporter).")
    metrics_connection_timeout: float = option(
        10.0, number(0.1, 300), "Read/write timeout of each connection to the metrics port, in seconds."
    )
    metrics_max_connections: int = option(
        16, integer(1, 1024), "Connections the metrics port serves at once; more wait in the listen backlog."
    )
    metrics_namespace: str = option("", metric_prefix, "Prefix added to every metric name (none by default).")
    metrics_buckets: tuple[float, ...] = option(
        (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
        buckets,
        "Latency histogram buckets in seconds (OpenTelemetry's recommended boundaries by default).",
    )
    metrics_max_label_values: int = option(
        200,
        integer(1, 100_000),
        "Distinct values per label of the built-in metrics, and label-value combinations (series) per GenAI and "
        "business metric, over every process of the service, before further ones are folded into __other__.",
    )
    metrics_exclude_apps: tuple[str, ...] = option(
        (), text_list, "URL app names whose requests are not recorded (django_observe's own always are not)."
    )
    metrics_db: bool = option(True, boolean, "Time database queries (db_client_* metrics).")
    db_query_stats: bool = option(
        True,
        boolean,
        "Count and time the SQL of each request and task (db_queries, db_ms on their log lines; queries per request).",
    )
    db_repeated_query_threshold: int = option(
        10,
        integer(1, 100000),
        "A request or task running one statement shape more often than this is logged and counted as an N+1.",
    )
    metrics_cache: bool = option(True, boolean, "Count cache operations (cache_operations_total).")
    metrics_models: bool = option(
        True, boolean, "Count model inserts, updates and deletes by model (db_model_operations_total)."
    )
    metrics_migrations: bool = option(
        True,
        boolean,
        "Applied and unapplied migrations per database alias (db_migrations_applied, db_migrations_unapplied), "
        "read at scrape time and cached for a minute.",
    )
    metrics_view_enabled: bool = option(False, boolean, "Serve /metrics in django_observe.urls too.")
    metrics_token: str | None = option(
        None, optional_text, "Bearer token required on the metrics port and the /metrics view.", secret=True
    )
    metrics_allowed_ips: tuple[str, ...] = option(
        (), networks, "Client addresses or networks allowed on the metrics port and view (empty: all)."
    )
    metrics_multiproc_dir: str | None = option(
        None,
        optional_text,
        "Base directory for multiprocess metric files (default: a private per-user directory, mode 0700, under "
        "$XDG_RUNTIME_DIR or the system temp dir; see docs/metrics.md).",
    )
    # Scrape-time infrastructure collectors.
    metrics_collector_timeout: float = option(
        0.5, number(0.05, 10), "Deadline of each scrape-time collector in seconds; a slower one counts an error."
    )
    metrics_collector_cache_seconds: float = option(
        1.0,
        number(0, 60),
        "Scrape-time infrastructure collectors (database, Redis, disk, host, Celery) reuse their last result for this "
        "many seconds, so a scrape flood reaches each dependency at most once per interval; 0 disables.",
    )
    metrics_db_connections: bool = option(
        True,
        boolean,
        "Database connection metrics: psycopg pool usage per process (summed) and PostgreSQL server-side "
        "connections against max_connections.",
    )
    metrics_redis: bool = option(
        True, boolean, "Redis used memory, max memory and connected clients for each of REDIS_URLS."
    )
    metrics_disk: bool = option(True, boolean, "Disk used and total bytes for METRICS_DISK_PATHS.")
    metrics_disk_paths: tuple[str, ...] = option(
        (".",),
        text_list,
        "Paths whose filesystems the disk metrics report; default: the working directory and MEDIA_ROOT if set.",
        default_from=defaults.disk_paths_with_media_root,
    )
    metrics_process: bool = option(
        True,
        boolean,
        "Process CPU and memory summed over the live processes of the group (multiprocess mode), and host memory.",
    )
    metrics_active_users: bool = option(
        True, boolean, "Count distinct authenticated users seen in a sliding window (active_users)."
    )
    metrics_active_users_window: int = option(5, integer(1, 1440), "Length of the active-users window in minutes.")

    slos: tuple[Objective, ...] = option(
        (),
        slo_list,
        'Service level objectives for `manage.py observe_rules`: dicts {"name", "kind" (availability or latency), '
        '"objective" (percent), "routes" (regex on the route label), "window" (7d, 28d or 30d), "threshold_ms" '
        "(latency: a METRICS_BUCKETS boundary)}; see docs/slos.md.",
    )

    # LLM cost and budgets (docs/llm.md).
    llm_currency: str = option(
        "USD", parse_currency, "Currency of LLM_PRICES and of the cost metrics, an ISO 4217 code (USD, EUR, ...)."
    )
    llm_prices: dict[str, Price] = option(
        {},
        parse_prices,
        'LLM prices per million tokens by model, in LLM_CURRENCY: {"gpt-4o-mini": {"input": 0.15, "output": 0.6, '
        '"cache_read": 0.075}}; keys input, output (required), cache_read, cache_write, reasoning. Over the shipped '
        "defaults (docs/llm.md); a model with no price is counted as unpriced.",
    )
    llm_default_prices: bool = option(
        True,
        boolean,
        "Use the shipped USD prices of common models (dated, docs/llm.md) under LLM_PRICES; only when "
        "LLM_CURRENCY is USD.",
    )
    llm_daily_budget: float | None = option(
        None,
        optional_number(0),
        'Daily LLM spend budget in LLM_CURRENCY: `observe_rules` adds the "Daily spending exceeds threshold" and '
        "projected-overrun alerts.",
    )
    llm_hourly_budget: float | None = option(
        None, optional_number(0), "Hourly LLM spend budget in LLM_CURRENCY: `observe_rules` adds an alert for it."
    )
    llm_daily_token_budget: float | None = option(
        None,
        optional_number(0),
        "Daily LLM token budget (input + output tokens): `observe_rules` adds an alert when it is exceeded.",
    )

    # Tracing. The OTEL_* names are OpenTelemetry's standard environment variables.
    otel_service_name: str | None = option(
        None, optional_text, "Service name of every signal; wins over SERVICE_NAME (OpenTelemetry's standard variable)."
    )
    otel_resource_attributes: dict[str, str] = option(
        {},
        resource_attributes,
        "OpenTelemetry resource attributes, `key=value,key=value` (values percent-encoded): `service.name`, "
        "`service.version` and `deployment.environment.name` fill the identity when SERVICE_* are not set; the "
        "others are added to the resource of every OTLP signal.",
    )
    otel_exporter_otlp_endpoint: str | None = option(
        None,
        url,
        "OTLP collector base URL, e.g. http://jaeger:4318 (HTTP) or http://collector:4317 (gRPC); default: the "
        "protocol's localhost port.",
    )
    otel_exporter_otlp_protocol: str = option(
        "http/protobuf", choice("http/protobuf", "grpc"), "OTLP transport: http/protobuf (port 4318) or grpc (4317)."
    )
    tracing: str | None = option(
        None,
        optional_choice("opentelemetry", "jaeger", "none"),
        "Seed-style switch: `opentelemetry` or `jaeger` turns tracing on when OTEL_ENABLED is not set (`jaeger` "
        "sends OTLP to OTEL_EXPORTER_JAEGER_AGENT_HOST, Jaeger's OTLP port); `none` keeps it off.",
    )
    otel_exporter_jaeger_agent_host: str | None = option(
        None,
        optional_text,
        "Jaeger host of the older Jaeger exporter's variable: without OTEL_EXPORTER_OTLP_ENDPOINT, spans go over "
        "OTLP to this host's port 4318 (HTTP) or 4317 (gRPC), which Jaeger serves; the start-up line says so.",
    )
    otel_exporter_jaeger_agent_port: int | None = option(
        None,
        optional_integer(1, 65535),
        "Jaeger agent port (6831/6832 UDP, Thrift) of the older exporter: not used (Jaeger takes OTLP on "
        "4317/4318); 4317 or 4318 here is taken as that OTLP port.",
    )
    otel_traces_exporter: str = option(
        "otlp", choice("otlp", "console", "none"), "Where spans go: otlp, console (development) or none."
    )
    otel_metrics_exporter: str = option(
        "none",
        choice("none", "otlp", "prometheus"),
        "With OTEL_ENABLED, `otlp` also pushes the metrics catalogue to the OTLP endpoint (one process per group "
        "exports the aggregate); `none` and `prometheus` keep the metrics port only (it is on in every case).",
    )
    otel_export_shutdown_timeout: float = option(
        3.0,
        number(0, 120),
        "Seconds each exporter (spans, OTLP logs, OTLP metrics) may take at exit to deliver what it holds; the rest "
        "is dropped and one line per exporter says how much (a collector that never answers cannot hold a "
        "stopping process past this).",
    )
    otel_metric_export_interval: float = option(
        60000.0, number(100, 3_600_000), "Milliseconds between two OTLP metric exports."
    )
    otel_logs_exporter: str = option(
        "none",
        choice("none", "otlp"),
        "With OTEL_ENABLED, `otlp` also sends every log record (redacted, with trace and correlation IDs) to the "
        "OTLP endpoint; stdout lines stay as they are.",
    )
    otel_traces_sampler: str = option(
        "parentbased_always_on",
        choice(
            "always_on",
            "always_off",
            "traceidratio",
            "parentbased_always_on",
            "parentbased_always_off",
            "parentbased_traceidratio",
        ),
        "Which traces are recorded.",
    )
    otel_traces_sampler_arg: float = option(1.0, number(0, 1), "Sampling ratio for the traceidratio samplers (0 to 1).")
    tracing_excluded_urls: tuple[str, ...] = option(
        (r"/healthz$", r"/readyz$", r"/health$", r"/health/[^/]+$", r"/metrics$"),
        text_list,
        "Regular expressions (searched in the request path) of requests that are not traced.",
    )
    otel_instrumentation_genai_capture_message_content: str = option(
        "false",
        choice(
            "false",
            "true",
            "no_content",
            "span_only",
            "event_only",
            "span_and_event",
            aliases={"0": "false", "no": "false", "off": "false", "1": "true", "yes": "true", "on": "true"},
        ),
        "Record LLM prompts and completions on GenAI spans (`true`, `span_only`, `span_and_event`; redacted). "
        "Off by default: they may hold personal data and secrets. Set it in the environment for the OpenAI "
        "instrumentation too.",
    )
    # The options of OpenTelemetry's Django instrumentation, under its environment variable names.
    otel_python_django_excluded_urls: tuple[str, ...] = option(
        (),
        regex_list,
        "Regular expressions searched in the full request URL (scheme, host and path, no query string), as "
        "opentelemetry-instrumentation-django does; matching requests are not traced. Adds to TRACING_EXCLUDED_URLS.",
    )
    otel_python_excluded_urls: tuple[str, ...] = option(
        (),
        regex_list,
        "Used instead of OTEL_PYTHON_DJANGO_EXCLUDED_URLS when that one is empty (OpenTelemetry's generic variable).",
    )
    otel_python_django_traced_request_attrs: tuple[str, ...] = option(
        (),
        attribute_names,
        "Attributes of the request copied onto its span as strings under the same key (path_info, content_type...).",
    )
    otel_instrumentation_http_capture_headers_server_request: tuple[str, ...] = option(
        (),
        regex_list,
        "Request headers recorded on the span as http.request.header.<name> (lists of values): regular expressions "
        "matching the whole header name, any case.",
    )
    otel_instrumentation_http_capture_headers_server_response: tuple[str, ...] = option(
        (),
        regex_list,
        "Response headers recorded on the span as http.response.header.<name>, like the request headers.",
    )
    otel_instrumentation_http_capture_headers_sanitize_fields: tuple[str, ...] = option(
        (),
        regex_list,
        "Captured headers whose name these regular expressions find (any case) are recorded as [REDACTED]; "
        "secret-named headers (Authorization, Cookie, Set-Cookie, X-Api-Key...) always are.",
    )
    tracing_request_hook: Any = option(
        None,
        hook,
        "Called as hook(span, request) right after the request span starts (before any other middleware runs): a "
        "callable or its dotted path. Its exceptions are logged, never raised.",
    )
    tracing_response_hook: Any = option(
        None,
        hook,
        "Called as hook(span, request, response) before the request span ends (request.user is there): a callable "
        "or its dotted path. Its exceptions are logged, never raised.",
    )
    tracing_sql_commenter: bool = option(
        False,
        boolean,
        "Append a sqlcommenter comment (controller, framework, route, traceparent...) to every SQL statement run "
        "while a request is served.",
    )

    # The console (django_observe.console in INSTALLED_APPS; docs/console.md).
    console_database: str = option(
        "default", text, "Database alias the console writes to and reads from (its tables live there; migrate it)."
    )
    console_permission: Any = option(
        None,
        hook,
        "Who may open the console: a callable (or its dotted path) called as permission(request) -> bool, replacing "
        "the default rule (superusers, and staff users with the observe_console.view_console permission).",
    )
    console_flush_seconds: float = option(
        5.0, number(0.05, 3600), "Seconds between two writes of each process's console batch (a background thread)."
    )
    console_retention_days: int = option(
        7, integer(1, 7), "Days of console data kept; older rows are deleted by the flush thread."
    )
    console_slow_request_ms: float = option(
        1000.0, number(0), "Requests at least this slow (milliseconds) are kept with their timeline and log lines."
    )
    console_slow_query_ms: float = option(
        100.0, number(0), "Statements at least this slow (milliseconds) are counted as slow on the console."
    )
    console_sample_rate: float = option(
        0.0, number(0, 1), "Share of the other requests (neither slow nor failed) kept with their timeline (0 to 1)."
    )
    console_max_keys: int = option(
        5000,
        integer(10, 1_000_000),
        "Aggregate cells (type, key, minute) one process holds between two flushes; more are counted as overflow.",
    )
    console_max_entries: int = option(
        200,
        integer(1, 100_000),
        "Kept requests, exception occurrences and failed jobs one process holds between two flushes; more are "
        "counted as overflow.",
    )
    console_trace_url: str | None = option(
        None,
        url_template,
        "Link from a kept request to its trace when tracing is on: a URL with {trace_id}, e.g. "
        '"http://jaeger:16686/trace/{trace_id}" or "http://grafana:3000/explore?traceId={trace_id}".',
    )

    # Filled by load_config: where each value came from (option name -> source).
    sources: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)


def option_fields() -> list[dataclasses.Field[Any]]:
    """The fields of :class:`ObserveConfig` that are options, in declaration order."""
    return [f for f in dataclasses.fields(ObserveConfig) if "parse" in f.metadata]


def option_names() -> list[str]:
    """Every setting name django_observe reads (upper case), in declaration order."""
    return [f.name.upper() for f in option_fields()]
