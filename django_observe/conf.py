"""The one place that reads Django settings and the environment.

Every option is a field of :class:`ObserveConfig`. Its metadata says how the
raw value is parsed and validated and what it means; the documentation's
configuration reference is checked against these fields by a test.

Where a value comes from, first match wins:

1. an environment variable of the same name (``HEALTH_TIMEOUT=5``);
2. for the few top-level options (``LOG_LEVEL``, ``LOG_FORMAT``,
   ``OTEL_ENABLED``), the Django setting of that name;
3. the key of that name in ``settings.DJANGO_OBSERVE``;
4. the default.

Subsystems receive the frozen config object; they never read
``django.conf.settings`` themselves.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "ConfigError",
    "InvalidConfiguration",
    "ObserveConfig",
    "get_config",
    "load_config",
    "option_names",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


# --- parsers: raw value (Python value from settings, or str from the environment) -> clean value.
# Each raises ValueError with a message that states the accepted values.


def boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError("must be a boolean (true/false, 1/0, yes/no, on/off)")


def number(minimum: float | None = None, maximum: float | None = None) -> Callable[[Any], float]:
    def parse(raw: Any) -> float:
        try:
            if isinstance(raw, bool):
                raise TypeError
            value = float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number{_range(minimum, maximum)}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(f"must be a number{_range(minimum, maximum)}")
        return value

    return parse


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        try:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise TypeError
            value = int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"must be an integer{_range(minimum, maximum)}") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(f"must be an integer{_range(minimum, maximum)}")
        return value

    return parse


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f" >= {minimum:g}"
    if maximum is not None:
        return f" <= {maximum:g}"
    return ""


def choice(*accepted: str, aliases: Mapping[str, str] | None = None) -> Callable[[Any], str]:
    """Case-insensitive choice among ``accepted``; ``aliases`` map extra spellings."""
    aliases = dict(aliases or {})

    def parse(raw: Any) -> str:
        if isinstance(raw, str):
            value = raw.strip().lower()
            value = aliases.get(value, value)
            if value in accepted:
                return value
        shown = ", ".join(f'"{a}"' for a in (*accepted, *aliases))
        raise ValueError(f"must be one of {shown}")

    parse.accepted = accepted  # type: ignore[attr-defined]
    return parse


def text(raw: Any) -> str:
    if isinstance(raw, str):
        return raw
    raise ValueError("must be a string")


def optional_text(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    return text(raw)


def text_list(raw: Any) -> tuple[str, ...]:
    """A list of strings; from the environment, comma-separated."""
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, (list, tuple)) and all(isinstance(v, str) for v in raw):
        return tuple(raw)
    raise ValueError("must be a list of strings (comma-separated in the environment)")


def mapping(raw: Any) -> dict[str, Any]:
    """A dict; from the environment, a JSON object."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError:
            raise ValueError("must be a JSON object") from None
    if isinstance(raw, Mapping) and all(isinstance(k, str) for k in raw):
        return dict(raw)
    raise ValueError("must be a dict with string keys (a JSON object in the environment)")


def regex(raw: Any) -> str:
    """A regular expression (compiled once at startup to validate it)."""
    import re

    if not isinstance(raw, str) or not raw:
        raise ValueError("must be a non-empty regular expression string")
    try:
        re.compile(raw)
    except re.error as exc:
        raise ValueError(f"must be a valid regular expression ({exc})") from None
    return raw


def header_list(raw: Any) -> tuple[str, ...]:
    """HTTP header names (at least one)."""
    import re

    names = text_list(raw)
    if not names or not all(re.fullmatch(r"[A-Za-z0-9-]{1,64}", n) for n in names):
        raise ValueError("must be a non-empty list of HTTP header names (letters, digits, dashes)")
    return names


def host_patterns(raw: Any) -> tuple[str, ...]:
    """Host allowlist entries: ``*``, exact hosts (``api.internal``, ``10.0.0.7``, ``::1``) or ``*.example.com``.

    Entries are lower-cased; brackets around an IPv6 address and a trailing dot are dropped.
    """
    import ipaddress
    import re

    values = text_list(raw)
    if not values:
        raise ValueError(
            'must list at least one host ("*" for all); set CORRELATION_PROPAGATE to false to send the header nowhere'
        )
    label = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
    hostname = re.compile(rf"{label}(\.{label})*")
    clean = []
    for value in values:
        host = value.strip().lower().rstrip(".")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if host == "*":
            clean.append(host)
            continue
        name = host[2:] if host.startswith("*.") else host
        try:
            ipaddress.ip_address(name)
            is_ip = True
        except ValueError:
            is_ip = False
        if is_ip and name == host or (not is_ip and len(name) <= 253 and hostname.fullmatch(name)):
            clean.append(host)
            continue
        raise ValueError(
            'must be a list of hosts: "*" (all), exact host names or IP addresses ("api.internal", "10.0.0.7"), or '
            f'"*.example.com" for every subdomain; no scheme, port, path or other wildcard ({value!r} is none of these)'
        )
    return tuple(clean)


def url(raw: Any) -> str | None:
    """An http(s) URL with a host, or None."""
    from urllib.parse import urlsplit

    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            parts = None
        if parts is not None and parts.scheme in ("http", "https") and parts.hostname:
            return raw
    raise ValueError("must be an http:// or https:// URL with a host, e.g. http://collector:4318")


def metric_prefix(raw: Any) -> str:
    import re

    if isinstance(raw, str) and (raw == "" or re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", raw)):
        return raw
    raise ValueError("must be empty or a Prometheus name (letters, digits, underscores; not starting with a digit)")


def buckets(raw: Any) -> tuple[float, ...]:
    values = text_list(raw) if isinstance(raw, str) else raw
    try:
        result = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError("must be a list of increasing positive numbers") from None
    if not result or any(b <= 0 for b in result) or any(a >= b for a, b in zip(result, result[1:], strict=False)):
        raise ValueError("must be a list of increasing positive numbers")
    return result


def networks(raw: Any) -> tuple[str, ...]:
    import ipaddress

    values = text_list(raw)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"must be IP addresses or networks (CIDR); {value!r} is neither") from None
    return values


def sample_rates(raw: Any) -> dict[str, float]:
    """Keep rates of request lines: ``{"/path/prefix" or "route pattern": rate from 0 to 1}``.

    From the environment, a JSON object.
    """
    rates = mapping(raw)
    for key, value in rates.items():
        if not key.strip():
            raise ValueError("keys must be path prefixes (starting with /) or route patterns, got an empty key")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"values must be keep rates from 0 to 1 (0.1 keeps 1 line in 10); {key!r} has {value!r}")
        rates[key] = float(value)
    return rates


def check_list(raw: Any) -> tuple[Any, ...]:
    """Custom health checks: dotted paths or dicts ``{"path": ..., "id": ..., ...}``."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw) if raw.strip().startswith("[") else text_list(raw)
        except json.JSONDecodeError:
            raise ValueError("must be a JSON list or comma-separated dotted paths") from None
    if not isinstance(raw, (list, tuple)):
        raise ValueError('must be a list of dotted paths or dicts with a "path" key')
    allowed = {"path", "id", "critical", "timeout", "options"}
    for item in raw:
        if isinstance(item, str):
            continue
        if not isinstance(item, Mapping) or not isinstance(item.get("path"), str):
            raise ValueError('must be a list of dotted paths or dicts with a "path" key')
        extra = set(item) - allowed
        if extra:
            raise ValueError(f"entries accept the keys {sorted(allowed)}, got unknown {sorted(extra)}")
    return tuple(raw)


def slo_list(raw: Any) -> tuple[Any, ...]:
    """Service level objectives: a list of dicts; from the environment, a JSON list (see ``django_observe.slo``)."""
    from django_observe.slo import parse_objectives

    return parse_objectives(raw)


slo_list.shows_value = True  # type: ignore[attr-defined]  # its messages quote the bad entry, not the whole list


# --- the options


def option(
    default: Any,
    parse: Callable[[Any], Any],
    doc: str,
    *,
    top_level: bool = False,
    secret: bool = False,
    default_from: Callable[[Any], Any] | None = None,
) -> Any:
    """Declare one option: a dataclass field whose metadata drives loading and the docs.

    Args:
        default: the value when nothing is set (already clean).
        parse: turns a raw value into a clean one, raising ``ValueError``.
        doc: one sentence for the configuration reference.
        top_level: read from a top-level Django setting instead of ``DJANGO_OBSERVE``.
        secret: never echo the value in error messages.
        default_from: computes the default from the Django settings object.
    """
    metadata = {
        "parse": parse,
        "doc": doc,
        "top_level": top_level,
        "secret": secret,
        "default_from": default_from,
    }
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or None as the default of an option")
    return dataclasses.field(default=default, metadata=metadata)


def _default_log_format(settings: Any) -> str:
    return "text" if getattr(settings, "DEBUG", False) else "json"


def _default_disk_paths(settings: Any) -> tuple[str, ...]:
    media_root = getattr(settings, "MEDIA_ROOT", "")
    return (".", str(media_root)) if media_root else (".",)


def _default_redis_urls(settings: Any) -> tuple[str, ...]:
    url = getattr(settings, "REDIS_URL", None) or os.environ.get("REDIS_URL")
    return (url,) if url else ()


def _default_gcp_project(settings: Any) -> str | None:
    return os.environ.get("GOOGLE_CLOUD_PROJECT") or None


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
        default_from=_default_log_format,
    )
    otel_enabled: bool = option(False, boolean, "Turn on OpenTelemetry tracing.", top_level=True)

    # Service identity (health bodies, logs, traces).
    service_name: str = option("django", text, "Name of the service in health bodies, logs and traces.")
    service_version: str = option("unknown", text, 'Version reported by /health ("version") and in traces.')
    service_environment: str = option("production", text, "Deployment environment name (production, staging, ...).")

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
    health_checks: tuple[Any, ...] = option(
        (),
        check_list,
        'Custom checks: dotted paths to django-health-check HealthCheck classes, or dicts {"path", "id", "critical", '
        '"timeout", "options"}.',
    )
    health_check_options: dict[str, Any] = option(
        None,
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
        default_from=_default_redis_urls,
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

    # --- Logging and correlation (issue #3).
    log_configure: str = option(
        "auto",
        choice("auto", "on", "off"),
        'Configure logging for the whole process: "auto" (unless the project defines its own LOGGING), '
        '"on" (always), "off" (never; use django_observe.logging.JSONFormatter/TextFormatter in your LOGGING).',
    )
    log_requests: bool = option(True, boolean, "Log one line per request (logger django_observe.request).")
    log_redact_keys: tuple[str, ...] = option(
        (),
        text_list,
        "Extra secret key names whose values are replaced by [REDACTED] in logs, span attributes and health "
        "errors (secret-looking keys always are; see docs/security.md).",
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
        choice("default", "gcp", "datadog", "ecs"),
        "Field names of JSON lines: our own schema, or the names GCP Cloud Logging, Datadog or the Elastic Common "
        "Schema understand natively (see the logging pages per platform).",
    )
    log_gcp_project: str | None = option(
        None,
        optional_text,
        'GCP project of the "gcp" flavour: trace IDs are written as `projects/PROJECT/traces/TRACE_ID` (without '
        "a project, the bare trace ID).",
        default_from=_default_gcp_project,
    )
    log_requests_sample: dict[str, float] = option(
        None,
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

    # --- Metrics (issue #4).
    metrics_enabled: bool = option(True, boolean, "Record Prometheus metrics.")
    metrics_address: str = option(
        "0.0.0.0", text, "Address the metrics port binds to (keep the port off the public network)."
    )
    metrics_port: int = option(8001, integer(0, 65535), "Metrics port of web processes (0: no exporter).")
    metrics_worker_port: int = option(8002, integer(0, 65535), "Metrics port of Celery workers (0: no exporter).")
    metrics_namespace: str = option("", metric_prefix, "Prefix added to every metric name (none by default).")
    metrics_buckets: tuple[float, ...] = option(
        (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
        buckets,
        "Latency histogram buckets in seconds (OpenTelemetry's recommended boundaries by default).",
    )
    metrics_max_label_values: int = option(
        200,
        integer(1, 100_000),
        "Distinct values per label (per business metric: label-value combinations) before further ones are "
        "folded into __other__.",
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
    metrics_view_enabled: bool = option(False, boolean, "Serve /metrics in django_observe.urls too.")
    metrics_token: str | None = option(
        None, optional_text, "Bearer token required on the metrics port and the /metrics view.", secret=True
    )
    metrics_allowed_ips: tuple[str, ...] = option(
        (), networks, "Client addresses or networks allowed on the metrics port and view (empty: all)."
    )
    metrics_multiproc_dir: str | None = option(
        None, optional_text, "Base directory for multiprocess metric files (default: the system temp dir)."
    )
    # Scrape-time infrastructure collectors (issue #9).
    metrics_collector_timeout: float = option(
        0.5, number(0.05, 10), "Deadline of each scrape-time collector in seconds; a slower one counts an error."
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
        default_from=_default_disk_paths,
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

    slos: tuple[Any, ...] = option(
        (),
        slo_list,
        'Service level objectives for `manage.py observe_rules`: dicts {"name", "kind" (availability or latency), '
        '"objective" (percent), "routes" (regex on the route label), "window" (7d, 28d or 30d), "threshold_ms" '
        "(latency: a METRICS_BUCKETS boundary)}; see docs/slos.md.",
    )

    # --- Tracing (issue #5). The OTEL_* names are OpenTelemetry's standard environment variables.
    otel_service_name: str | None = option(None, optional_text, "Service name in traces (default: SERVICE_NAME).")
    otel_exporter_otlp_endpoint: str | None = option(
        None,
        url,
        "OTLP collector base URL, e.g. http://jaeger:4318 (HTTP) or http://collector:4317 (gRPC); default: the "
        "protocol's localhost port.",
    )
    otel_exporter_otlp_protocol: str = option(
        "http/protobuf", choice("http/protobuf", "grpc"), "OTLP transport: http/protobuf (port 4318) or grpc (4317)."
    )
    otel_traces_exporter: str = option(
        "otlp", choice("otlp", "console", "none"), "Where spans go: otlp, console (development) or none."
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

    # Filled by load_config: where each value came from (option name -> source).
    sources: Mapping[str, str] = dataclasses.field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.health_check_options is None:
            object.__setattr__(self, "health_check_options", {})
        if self.log_requests_sample is None:
            object.__setattr__(self, "log_requests_sample", {})
        if self.sources is None:
            object.__setattr__(self, "sources", {})


def _options() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(ObserveConfig) if "parse" in f.metadata]


def option_names() -> list[str]:
    """Every setting name django_observe reads (upper case), in declaration order."""
    return [f.name.upper() for f in _options()]


@dataclasses.dataclass(frozen=True)
class ConfigError:
    """One invalid setting: where it came from and what is accepted."""

    setting: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return self.message


class InvalidConfiguration(ImproperlyConfigured):
    """Raised by :func:`load_config`; ``errors`` lists every invalid setting."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("django_observe configuration is invalid:\n" + "\n".join(f"  - {e}" for e in errors))


def load_config(settings: Any = None, environ: Mapping[str, str] | None = None) -> ObserveConfig:
    """Read, validate and freeze the configuration.

    Args:
        settings: a Django settings object (default: ``django.conf.settings``).
        environ: the environment (default: ``os.environ``).

    Raises:
        InvalidConfiguration: naming each bad setting, its value and the accepted values.
    """
    if settings is None:
        from django.conf import settings
    if environ is None:
        environ = os.environ

    errors: list[ConfigError] = []
    user = getattr(settings, "DJANGO_OBSERVE", None) or {}
    if not isinstance(user, Mapping):
        errors.append(ConfigError("DJANGO_OBSERVE", f"DJANGO_OBSERVE must be a dict, got {type(user).__name__}"))
        user = {}

    known = {f.name.upper(): f for f in _options()}
    for key in user:
        field = known.get(key) if isinstance(key, str) else None
        if field is None or field.metadata["top_level"]:
            close = difflib.get_close_matches(str(key), [k for k, f in known.items() if not f.metadata["top_level"]], 1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            where = " is a top-level setting, not a DJANGO_OBSERVE key" if field is not None else " is not an option"
            errors.append(
                ConfigError(
                    f'DJANGO_OBSERVE["{key}"]',
                    f'DJANGO_OBSERVE["{key}"]{where}{hint}; see the configuration reference for accepted keys',
                )
            )

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for field in _options():
        name = field.name.upper()
        meta = field.metadata
        if name in environ:
            raw, source = environ[name], f"environment variable {name}"
        elif meta["top_level"] and hasattr(settings, name):
            raw, source = getattr(settings, name), f"settings.{name}"
        elif name in user:
            raw, source = user[name], f'DJANGO_OBSERVE["{name}"]'
        else:
            default_from = meta["default_from"]
            values[field.name] = default_from(settings) if default_from else field.default
            sources[field.name] = "default"
            continue
        try:
            values[field.name] = meta["parse"](raw)
        except ValueError as exc:
            if getattr(meta["parse"], "shows_value", False):
                errors.append(ConfigError(source, f"{source} {exc}"))
            else:
                shown = "<hidden>" if meta["secret"] else repr(raw)
                errors.append(ConfigError(source, f"{source} {exc}, got {shown}"))
        sources[field.name] = source

    if not errors:
        errors.extend(_cross_check(values, sources))
    if errors:
        raise InvalidConfiguration(errors)
    return ObserveConfig(**values, sources=sources)


def _cross_check(values: dict[str, Any], sources: dict[str, str]) -> list[ConfigError]:
    """Rules that involve several options."""
    import re

    errors = []
    sample = values["correlation_id_prefix"] + "0" * 24
    if not re.fullmatch(values["correlation_id_pattern"], sample):
        errors.append(
            ConfigError(
                sources["correlation_id_prefix"],
                f"CORRELATION_ID_PREFIX {values['correlation_id_prefix']!r} makes generated IDs ({sample!r}) "
                f"that CORRELATION_ID_PATTERN {values['correlation_id_pattern']!r} rejects; change one of them",
            )
        )
    if values["slos"]:
        from django_observe.slo import threshold_problem

        for index, objective in enumerate(values["slos"]):
            problem = threshold_problem(objective, values["metrics_buckets"])
            if problem:
                errors.append(
                    ConfigError(sources["slos"], f'{sources["slos"]} entry {index} ("{objective.name}"): {problem}')
                )
    return errors


_config: ObserveConfig | None = None


def get_config() -> ObserveConfig:
    """The configuration loaded by the app at startup (loaded on first use otherwise)."""
    global _config
    if _config is None:
        _config = load_config()
    return _config


def set_config(config: ObserveConfig | None) -> None:
    """Install a config (the app does this in ``ready()``; tests may too)."""
    global _config
    _config = config


def reference_markdown() -> str:
    """The configuration reference table (docs/configuration.md is generated from it)."""
    rows = [
        "| Setting | Where | Default | Meaning |",
        "| --- | --- | --- | --- |",
    ]
    for field in _options():
        meta = field.metadata
        where = "top-level setting" if meta["top_level"] else "`DJANGO_OBSERVE` key"
        if meta["default_from"] is not None:
            default = {
                "log_format": '`"text"` when `DEBUG`, else `"json"`',
                "redis_urls": "`REDIS_URL` if set",
                "log_gcp_project": "`GOOGLE_CLOUD_PROJECT` if set",
            }.get(field.name, "computed")
        else:
            default = "none" if field.default is None else f"`{json.dumps(field.default)}`"
        accepted = getattr(meta["parse"], "accepted", None)
        doc = meta["doc"].replace("|", "\\|")
        if accepted:
            doc += " Accepted: " + ", ".join(f"`{a}`" for a in accepted) + "."
        rows.append(f"| `{field.name.upper()}` | {where} | {default} | {doc} |")
    return "\n".join(rows) + "\n"
