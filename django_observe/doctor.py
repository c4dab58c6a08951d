"""``manage.py observe_doctor``: find the misconfigurations that fail silently, and prove each signal arrives.

Each check is a function ``(facts) -> list[Finding]``; :func:`diagnose` runs them all. The checks that talk to
something (the OTLP collector, the metrics port, the Celery workers, the health checks) do it for real: a test
span (and a test log record and metric when those exporters are on) sent through the service's own exporters,
which the collector must acknowledge, a scrape, a broadcast ping, a run of every check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import logging
import os
import re
import tempfile
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from .conf import CONFIGURATION_URL, ObserveConfig
from .otlp_exporters import otlp_exporter
from .runtime import ConfigProblem

__all__ = ["CHECKS", "Facts", "Finding", "diagnose"]

logger = logging.getLogger("django_observe.doctor")

TIMEOUT = 3.0


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem: a stable ``id``, what is wrong, and how to fix it."""

    id: str
    problem: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Facts:
    """What the checks look at (the command fills it from the running project).

    Attributes:
        config: the loaded configuration (the defaults when it is invalid).
        errors: the configuration's errors (``runtime.errors``).
        settings: the Django settings object (``LOGGING``, ``DATABASES``).
        health: the health runner, or None.
        celery_app: the project's Celery app, or None.
        multiprocess_base: the metrics multiprocess base directory (None: single-process metrics).
    """

    config: ObserveConfig
    errors: tuple[ConfigProblem, ...] = ()
    settings: Any = None
    health: Any = None
    celery_app: Any = None
    multiprocess_base: str | None = None
    installed: Callable[[str], bool] = dataclasses.field(
        default=lambda module: importlib.util.find_spec(module) is not None
    )


def check_configuration(facts: Facts) -> list[Finding]:
    return [
        Finding("config.invalid", error.message, f"Fix the setting; accepted values: {CONFIGURATION_URL}")
        for error in facts.errors
    ]


def check_project_logging(facts: Facts) -> list[Finding]:
    from .checks import logging_override_warnings

    return [
        Finding("logging.overridden", str(warning.msg), str(warning.hint))
        for warning in logging_override_warnings(facts.settings, facts.config)
    ]


def check_metrics_exposure(facts: Facts) -> list[Finding]:
    from .checks import metrics_exposure_warnings

    return [
        Finding("metrics.exposed", str(warning.msg), str(warning.hint))
        for warning in metrics_exposure_warnings(facts.config)
    ]


def check_jaeger_without_tracing(facts: Facts) -> list[Finding]:
    config = facts.config
    if config.otel_enabled or not (config.otel_exporter_jaeger_agent_host or config.otel_exporter_jaeger_agent_port):
        return []
    return [
        Finding(
            "tracing.jaeger_ignored",
            "OTEL_EXPORTER_JAEGER_AGENT_HOST/_PORT are set but tracing is off, so no span is sent to Jaeger",
            'Set OTEL_ENABLED=true (or TRACING="jaeger"); spans then go over OTLP to that host\'s port 4318',
        )
    ]


def _url_for(address: str, port: int) -> str:
    host = "127.0.0.1" if address in ("", "0.0.0.0", "localhost") else ("::1" if address == "::" else address)
    return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"


def check_metrics_port(facts: Facts) -> list[Finding]:
    """The web metrics port answers a scrape here (run the doctor beside the server, on its host or pod)."""
    config = facts.config
    if not config.metrics_enabled or not config.metrics_port:
        return []
    url = _url_for(config.metrics_address, config.metrics_port)
    request = urllib.request.Request(url)  # noqa: S310 - an http URL built here
    if config.metrics_token:
        request.add_header("Authorization", f"Bearer {config.metrics_token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - our own port
            body = response.read(1_000_000).decode("utf-8", "replace")
    except Exception as exc:
        return [
            Finding(
                "metrics.port_unreachable",
                f"nothing answers a scrape on {url} ({_reason(exc)})",
                "Start the server (gunicorn, uvicorn, runserver) on this host, or make METRICS_PORT/METRICS_ADDRESS "
                "here the same as the server's; under gunicorn use -c python:django_observe.gunicorn",
            )
        ]
    if "_info" not in body and "# TYPE" not in body:
        return [
            Finding(
                "metrics.port_not_ours",
                f"{url} answers, but not with Prometheus metrics",
                "Another program holds METRICS_PORT: pick a free port for METRICS_PORT",
            )
        ]
    return []


def check_multiprocess_dir(facts: Facts) -> list[Finding]:
    """The multiprocess base directory is writable: every worker of a server writes its samples there."""
    base = facts.multiprocess_base
    if not facts.config.metrics_enabled or base is None:
        return []
    try:
        os.makedirs(base, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=base, prefix=".doctor-"):
            pass
    except OSError as exc:
        return [
            Finding(
                "metrics.multiprocess_dir",
                f"the metrics multiprocess directory {base} is not writable ({exc.strerror or exc}): each "
                "worker would serve only its own samples, so the metrics port shows one worker at a time",
                "Set METRICS_MULTIPROC_DIR to a directory this user can write, shared by the server's workers",
            )
        ]
    return []


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.messages.append(record.getMessage())


TEST_NAME = "observe_doctor test"  # the span's name, the log record's body
TEST_METRIC = "observe_doctor_test"  # the metric's name (a gauge of 1)


def _resource(config: ObserveConfig) -> Any:
    from opentelemetry.sdk.resources import Resource

    return Resource.create({"service.name": config.service_name})


def _send_span(config: ObserveConfig) -> bool:
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=_resource(config))
    span = provider.get_tracer("django_observe.doctor").start_span(f"{TEST_NAME} span")
    span.end()
    exporter = otlp_exporter(
        "traces", config.otel_exporter_otlp_endpoint, config.otel_exporter_otlp_protocol, timeout=TIMEOUT
    )
    try:
        return getattr(exporter.export([span]), "name", "") == "SUCCESS"
    finally:
        exporter.shutdown()


def _send_log(config: ObserveConfig) -> bool:
    """A log record through the exporter the OTLP log handler uses (``logging.otlp``)."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    made = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=_resource(config))
    provider.add_log_record_processor(SimpleLogRecordProcessor(made))
    provider.get_logger("django_observe.doctor").emit(
        severity_number=SeverityNumber.INFO, severity_text="INFO", body=f"{TEST_NAME} log record"
    )
    exporter = otlp_exporter(
        "logs", config.otel_exporter_otlp_endpoint, config.otel_exporter_otlp_protocol, timeout=TIMEOUT
    )
    try:
        return getattr(exporter.export(list(made.get_finished_logs())), "name", "") == "SUCCESS"
    finally:
        exporter.shutdown()


def _send_metric(config: ObserveConfig) -> bool:
    """A gauge through the exporter and the conversion the metrics pusher uses (``metrics.otlp``)."""
    import time

    from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from prometheus_client.core import GaugeMetricFamily

    from .metrics.otlp import SCOPE, to_metrics

    now = time.time_ns()
    family = GaugeMetricFamily(TEST_METRIC, "observe_doctor test metric", value=1)
    metrics = to_metrics([family], start_ns=now, now_ns=now)
    data = MetricsData(
        [ResourceMetrics(_resource(config), [ScopeMetrics(InstrumentationScope(SCOPE), metrics, "")], "")]
    )
    exporter = otlp_exporter(
        "metrics", config.otel_exporter_otlp_endpoint, config.otel_exporter_otlp_protocol, timeout=TIMEOUT
    )
    try:
        return getattr(exporter.export(data, timeout_millis=TIMEOUT * 1000), "name", "") == "SUCCESS"
    finally:
        exporter.shutdown()


# signal -> (what is sent, the finding ids' prefix, how it is sent); traces keep their first ids (otlp.*)
_SIGNALS: dict[str, tuple[str, str, Callable[[ObserveConfig], bool]]] = {
    "traces": ("a test span", "otlp", _send_span),
    "logs": ("a test log record", "otlp.logs", _send_log),
    "metrics": ("a test metric", "otlp.metrics", _send_metric),
}


def _why(said: str, endpoint: str) -> str:
    """The reason an export failed, in words, from what the exporter logged."""
    if "Connection refused" in said or "ConnectionRefusedError" in said:
        return f"connection refused: nothing listens at {endpoint}"
    status = re.search(r"batch code: (\d{3})", said)
    if status:
        return f"the collector answered HTTP status {status.group(1)}"
    if "DEADLINE_EXCEEDED" in said or "due to timeout" in said or "timed out" in said.lower():
        return f"no answer within {TIMEOUT:g}s (timeout)"
    return said[:300] if said else "not acknowledged"


def _probe(config: ObserveConfig, signal: str) -> list[Finding]:
    """Send ``signal``'s test item through the service's own exporter; a finding unless the collector
    acknowledged it."""
    from .tracing.mismatch import explain
    from .tracing.setup import EXPORT_LOGGERS

    what, prefix, send = _SIGNALS[signal]
    endpoint = config.otel_exporter_otlp_endpoint or (
        "http://localhost:4317" if config.otel_exporter_otlp_protocol == "grpc" else "http://localhost:4318"
    )
    captured = _Captured()
    loggers = [logging.getLogger(name) for name in EXPORT_LOGGERS]
    # The exporter loggers' filters (reported once per process, reworded) are set aside: the raw words count.
    saved = [(each, each.propagate, each.filters[:]) for each in loggers]
    disabled = logging.root.manager.disable
    logging.disable(logging.NOTSET)  # the command silences logging; the exporter's words are read here
    for each in loggers:
        each.addHandler(captured)
        each.propagate, each.filters = False, []
    try:
        accepted = send(config)
    except Exception as exc:  # an exporter that cannot even be built (a missing package)
        captured.messages.append(str(exc))
        accepted = False
    finally:
        for each, propagate, filters in saved:
            each.removeHandler(captured)
            each.propagate, each.filters = propagate, filters
        logging.disable(disabled)
    if accepted:
        return []
    said = " ".join(captured.messages)
    words = explain(said)
    if words is not None:
        return [Finding(f"{prefix}.protocol_mismatch", f"{what} ({signal}) to {endpoint} failed: {words}", words)]
    return [
        Finding(
            f"{prefix}.unreachable",
            f"{what} ({signal}) to {endpoint} ({config.otel_exporter_otlp_protocol}) was not acknowledged: "
            + _why(said, endpoint),
            "Start the collector, or set OTEL_EXPORTER_OTLP_ENDPOINT (and OTEL_EXPORTER_OTLP_PROTOCOL: grpc on "
            "4317, http/protobuf on 4318) to where it listens",
        )
    ]


def check_otlp(facts: Facts) -> list[Finding]:
    """With tracing on and the OTLP exporter: a test span is sent and the collector must acknowledge it."""
    config = facts.config
    if not config.otel_enabled or config.otel_traces_exporter != "otlp":
        return []
    return _probe(config, "traces")


def check_otlp_logs(facts: Facts) -> list[Finding]:
    """With the OTLP log exporter on (``OTEL_LOGS_EXPORTER=otlp``): a test log record the collector must
    acknowledge."""
    config = facts.config
    if not (config.otel_enabled and config.otel_logs_exporter == "otlp"):
        return []
    return _probe(config, "logs")


def check_otlp_metrics(facts: Facts) -> list[Finding]:
    """With the OTLP metrics exporter on (``OTEL_METRICS_EXPORTER=otlp``): a test metric the collector must
    acknowledge."""
    config = facts.config
    if not (config.otel_enabled and config.otel_metrics_exporter == "otlp"):
        return []
    return _probe(config, "metrics")


def _configured_queues(app: Any) -> set[str]:
    conf = app.conf
    queues = {getattr(q, "name", str(q)) for q in (conf.task_queues or ())}
    queues.add(conf.task_default_queue or "celery")
    routes = conf.task_routes or {}
    if isinstance(routes, Mapping):
        for route in routes.values():
            if isinstance(route, Mapping) and route.get("queue"):
                queues.add(str(route["queue"]))
    return queues


def check_celery_workers(facts: Facts) -> list[Finding]:
    """Every configured queue has a live worker consuming it (a broadcast ``active_queues``)."""
    app = facts.celery_app
    if app is None or app.conf.task_always_eager:
        return []
    try:
        replies = app.control.inspect(timeout=TIMEOUT).active_queues() or {}
    except Exception as exc:
        return [
            Finding(
                "celery.broker_unreachable",
                f"the Celery broker does not answer ({_reason(exc)})",
                "Start the broker, or fix CELERY_BROKER_URL",
            )
        ]
    consumed = {queue.get("name") for queues in replies.values() for queue in (queues or ())}
    return [
        Finding(
            "celery.no_worker",
            f'no live Celery worker consumes the queue "{queue}": its tasks wait forever',
            f"Start a worker for it: celery -A <project> worker -Q {queue}",
        )
        for queue in sorted(_configured_queues(app) - consumed)
    ]


# (library, the instrumentation that traces it, the extra that installs it)
_INSTRUMENTATIONS = (
    ("openai", "opentelemetry.instrumentation.genai.openai", "django-observe[genai]"),
    ("anthropic", "opentelemetry.instrumentation.genai.anthropic", "django-observe[genai]"),
    ("psycopg", "opentelemetry.instrumentation.psycopg", "opentelemetry-instrumentation-psycopg"),
    ("psycopg2", "opentelemetry.instrumentation.psycopg2", "opentelemetry-instrumentation-psycopg2"),
    ("redis", "opentelemetry.instrumentation.redis", "opentelemetry-instrumentation-redis"),
    ("celery", "opentelemetry.instrumentation.celery", "opentelemetry-instrumentation-celery"),
)


def _postgres_driver() -> str | None:
    """The driver Django's PostgreSQL backend imports: psycopg (3) when installed, else psycopg2."""
    for driver in ("psycopg", "psycopg2"):
        with contextlib.suppress(ImportError, ValueError):
            if importlib.util.find_spec(driver) is not None:
                return driver
    return None


def check_instrumentation(facts: Facts) -> list[Finding]:
    """With tracing on: libraries the project uses whose calls nothing traces."""
    if not facts.config.otel_enabled:
        return []
    engines = {str(db.get("ENGINE", "")) for db in (getattr(facts.settings, "DATABASES", None) or {}).values()}
    postgres = any("postgresql" in engine for engine in engines)
    driver = _postgres_driver() if postgres else None
    findings = []
    for library, instrumentation, package in _INSTRUMENTATIONS:
        if library in ("psycopg", "psycopg2"):
            if library != driver:
                continue
        elif not facts.installed(library):
            continue
        if facts.installed(instrumentation):
            continue
        other = {"psycopg": "psycopg2", "psycopg2": "psycopg"}.get(library)
        wrong = other is not None and facts.installed(f"opentelemetry.instrumentation.{other}")
        findings.append(
            Finding(
                "tracing.not_instrumented",
                f"{library} is installed but {instrumentation} is not: its calls make no spans"
                + (f" (the {other} instrumentation is installed, for the other driver)" if wrong else ""),
                f"pip install {package}",
            )
        )
    return findings


def check_health(facts: Facts) -> list[Finding]:
    """Every health check, run now."""
    runner = facts.health
    if runner is None:
        return []
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # the checks' own warnings would repeat the findings
    try:
        results = runner.run_sync(runner.select())
    finally:
        logging.disable(previous)
    return [
        Finding(
            f"health.{result.id}",
            f"health check {result.id} {'fails' if result.status == 'fail' else 'warns'}: {result.error}"
            + (f" ({result.detail})" if result.detail else ""),
            "See manage.py observe_health --json for every check's detail",
        )
        for result in results
        if result.status != "pass"
    ]


CHECKS: tuple[Callable[[Facts], list[Finding]], ...] = (
    check_configuration,
    check_project_logging,
    check_metrics_exposure,
    check_jaeger_without_tracing,
    check_metrics_port,
    check_multiprocess_dir,
    check_otlp,
    check_otlp_logs,
    check_otlp_metrics,
    check_celery_workers,
    check_instrumentation,
    check_health,
)


def diagnose(facts: Facts, checks: tuple[Callable[[Facts], list[Finding]], ...] = CHECKS) -> list[Finding]:
    """Every finding of ``checks`` (a check that breaks is itself a finding)."""
    findings: list[Finding] = []
    for check in checks:
        try:
            findings.extend(check(facts))
        except Exception as exc:
            findings.append(Finding(f"doctor.{check.__name__}", f"{check.__name__} could not run: {exc}", ""))
    return findings
