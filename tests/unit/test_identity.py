"""The service identity: OTEL_RESOURCE_ATTRIBUTES parsing, the precedence of every source, and its uses."""

import importlib.metadata
import io
import logging
import types

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from django_observe import conf, identity
from django_observe.identity import ServiceIdentity, parse_resource_attributes
from django_observe.metrics.collectors.target_info import TargetInfoCollector


def load(options=None, environ=None, settings_module="acme.settings"):
    settings = types.SimpleNamespace(DEBUG=False, DJANGO_OBSERVE=options or {}, SETTINGS_MODULE=settings_module)
    return conf.load_config(settings, environ=environ or {})


# --- OTEL_RESOURCE_ATTRIBUTES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("service.name=shop", {"service.name": "shop"}),
        (" a = 1 , b=2 ", {"a": "1", "b": "2"}),
        ("a=1,,b=2,", {"a": "1", "b": "2"}),
        ("team=pay%20ments,note=a%2Cb%3Dc", {"team": "pay ments", "note": "a,b=c"}),
        ("k=caf%C3%A9", {"k": "café"}),
        ("k=1,k=2", {"k": "2"}),
        ("empty=", {"empty": ""}),
    ],
)
def test_resource_attributes_are_parsed_as_the_spec_says(text, expected):
    assert parse_resource_attributes(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=x", "bad key=1", "k=%zz", "k=100%"])
def test_invalid_resource_attributes_are_rejected(text):
    with pytest.raises(ValueError):
        parse_resource_attributes(text)


def test_invalid_resource_attributes_fail_at_startup_naming_the_variable():
    with pytest.raises(conf.InvalidConfiguration) as caught:
        load(environ={"OTEL_RESOURCE_ATTRIBUTES": "service.name"})
    assert "environment variable OTEL_RESOURCE_ATTRIBUTES" in str(caught.value)


# --- precedence (first match wins), each row: options, environment, expected (name, version, environment)

PRECEDENCE = [
    ({}, {}, ("acme", "unknown", "production")),
    ({"SERVICE_NAME": "shop"}, {}, ("shop", "unknown", "production")),
    ({"SERVICE_NAME": "shop"}, {"SERVICE_NAME": "env-shop"}, ("env-shop", "unknown", "production")),
    ({"SERVICE_NAME": "shop"}, {"OTEL_SERVICE_NAME": "otel-shop"}, ("otel-shop", "unknown", "production")),
    ({"OTEL_SERVICE_NAME": "otel-shop", "SERVICE_NAME": "shop"}, {}, ("otel-shop", "unknown", "production")),
    (
        {},
        {"OTEL_RESOURCE_ATTRIBUTES": "service.name=res,service.version=1.2,deployment.environment.name=staging"},
        ("res", "1.2", "staging"),
    ),
    ({}, {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=qa"}, ("acme", "unknown", "qa")),
    (
        {},
        {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=old,deployment.environment.name=new"},
        ("acme", "unknown", "new"),
    ),
    (
        {"SERVICE_NAME": "shop", "SERVICE_VERSION": "9", "SERVICE_ENVIRONMENT": "dev"},
        {"OTEL_RESOURCE_ATTRIBUTES": "service.name=res,service.version=1.2,deployment.environment.name=staging"},
        ("shop", "9", "dev"),
    ),
    (
        {},
        {"OTEL_SERVICE_NAME": "otel", "OTEL_RESOURCE_ATTRIBUTES": "service.name=res"},
        ("otel", "unknown", "production"),
    ),
    ({"OTEL_RESOURCE_ATTRIBUTES": {"service.version": "3"}}, {}, ("acme", "3", "production")),
    ({"SERVICE_VERSION": "1"}, {"SERVICE_VERSION": "2"}, ("acme", "2", "production")),
]


@pytest.mark.parametrize(("options", "environ", "expected"), PRECEDENCE)
def test_identity_precedence(options, environ, expected):
    config = load(options, environ)
    assert (config.service_name, config.service_version, config.service_environment) == expected


def test_sources_say_where_each_value_came_from():
    config = load(
        {"SERVICE_VERSION": "9"},
        {"OTEL_SERVICE_NAME": "otel", "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=qa"},
    )
    assert config.sources["service_name"] == "environment variable OTEL_SERVICE_NAME"
    assert config.sources["service_version"] == 'DJANGO_OBSERVE["SERVICE_VERSION"]'
    assert (
        config.sources["service_environment"]
        == "environment variable OTEL_RESOURCE_ATTRIBUTES (deployment.environment)"
    )
    defaults = load()
    assert defaults.sources["service_name"] == "default: settings package of acme.settings"


def test_name_defaults_to_django_without_a_settings_module():
    assert load(settings_module=None).service_name == "django"


def test_version_defaults_to_the_installed_distribution_of_the_settings_package():
    config = load(settings_module="structlog.settings")
    assert config.service_name == "structlog"
    assert config.service_version == importlib.metadata.version("structlog")
    assert config.sources["service_version"] == "default: installed distribution of structlog"


def test_instance_id_is_per_process_and_the_identity_owns_its_keys():
    ident = ServiceIdentity(name="shop", version="1", environment="dev", extra={"team": "pay", "service.name": "x"})
    attributes = ident.resource_attributes()
    assert attributes == {
        "team": "pay",
        "service.name": "shop",
        "service.version": "1",
        "deployment.environment.name": "dev",
        "service.instance.id": identity.instance_id(),
    }
    assert identity.instance_id() == identity.instance_id()
    previous = identity._instance
    identity._instance = (-1, "other-process")  # as after a fork: another pid
    try:
        assert identity.instance_id() not in ("other-process", previous[1])
    finally:
        identity._instance = previous


def test_target_info_has_the_identity_but_no_instance():
    registry = CollectorRegistry()
    registry.register(TargetInfoCollector(ServiceIdentity("shop", "1.0", "staging", {"team": "pay"})))
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    assert (
        'target_info{deployment_environment_name="staging",service_name="shop",service_version="1.0",team="pay"} 1.0'
        in text
    )
    assert "instance" not in text


def test_every_signal_gets_the_same_identity(observe):
    from django_observe import runtime

    observe(SERVICE_NAME="shop", SERVICE_VERSION="4.2", SERVICE_ENVIRONMENT="staging")
    rt = runtime.current()
    assert rt.identity == ServiceIdentity("shop", "4.2", "staging", {})
    labels = next(c for c in rt.metrics.collectors if type(c).__name__ == "BuildInfoCollector").labels
    assert labels["service_version"] == "4.2"


def test_observe_config_shows_the_source_of_the_identity(observe):
    from django.core.management import call_command

    observe(SERVICE_NAME="shop")
    out = io.StringIO()
    call_command("observe_config", stdout=out)
    lines = out.getvalue().splitlines()
    assert "SERVICE_NAME = 'shop'  (DJANGO_OBSERVE[\"SERVICE_NAME\"])" in lines
    assert "SERVICE_VERSION = '1.0.0'  (DJANGO_OBSERVE[\"SERVICE_VERSION\"])" in lines  # the test project's
    assert "SERVICE_ENVIRONMENT = 'production'  (default)" in lines


# --- OTLP metric conversion


def test_prometheus_families_become_otlp_metrics():
    from opentelemetry.sdk.metrics.export import AggregationTemporality, Sum
    from opentelemetry.sdk.metrics.export import Gauge as OtelGauge
    from opentelemetry.sdk.metrics.export import Histogram as OtelHist

    from django_observe.metrics.otlp import to_metrics

    registry = CollectorRegistry()
    counter = Counter("jobs", "Jobs.", ["kind"], registry=registry)
    counter.labels("a").inc(3)
    Gauge("depth", "Depth.", registry=registry).set(7)
    hist = Histogram(
        "http_server_request_duration_seconds",
        "Duration.",
        ["method", "route", "status_code"],
        buckets=[0.1, 1],
        registry=registry,
    )
    for value in (0.05, 0.5, 5):
        hist.labels("GET", "items/", "200").observe(value)
    metrics = {m.name: m for m in to_metrics(registry.collect(), start_ns=1, now_ns=2)}
    jobs = metrics["jobs"].data
    assert isinstance(jobs, Sum) and jobs.is_monotonic
    assert jobs.aggregation_temporality == AggregationTemporality.CUMULATIVE
    assert [(p.attributes, p.value) for p in jobs.data_points] == [({"kind": "a"}, 3.0)]
    assert isinstance(metrics["depth"].data, OtelGauge) and metrics["depth"].data.data_points[0].value == 7
    duration = metrics["http_server_request_duration_seconds"]
    assert isinstance(duration.data, OtelHist) and duration.unit == "s"
    (point,) = duration.data.data_points
    assert point.attributes == {"http.request.method": "GET", "http.route": "items/", "http.response.status_code": 200}
    assert (point.count, point.explicit_bounds, list(point.bucket_counts)) == (3, [0.1, 1.0], [1, 1, 1])
    assert point.sum == pytest.approx(5.55)


# --- OTLP logs


@pytest.fixture
def otlp_logs():
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    from django_observe.logging.otlp import OtlpLogHandler

    exporter = InMemoryLogRecordExporter()
    handler = OtlpLogHandler(
        identity=ServiceIdentity("shop", "1", "dev"), exporter_factory=lambda: exporter, otel_enabled=True
    )
    logger = logging.getLogger("tests.otlp_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def records():
        handler.flush()
        return [r.log_record for r in exporter.get_finished_logs()]

    yield logger, records
    logger.removeHandler(handler)
    logger.propagate = True


def test_log_records_carry_fields_ids_and_identity(otlp_logs):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from django_observe.correlation import bind_correlation_id, reset_correlation_id

    logger, records = otlp_logs
    tracer = TracerProvider().get_tracer("t")
    token = bind_correlation_id("req_abc")
    try:
        with tracer.start_as_current_span("work") as span:
            logger.warning("order %s placed", 7, extra={"order_id": 7, "items": ["a", "b"]})
            context = span.get_span_context()
    finally:
        reset_correlation_id(token)
    (record,) = records()
    assert record.body == "order 7 placed"
    assert record.severity_text == "WARNING"
    assert record.trace_id == context.trace_id and record.span_id == context.span_id
    assert record.attributes["correlation_id"] == "req_abc"
    assert record.attributes["order_id"] == 7 and record.attributes["logger"] == "tests.otlp_logs"
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_log_records_are_redacted_like_stdout(otlp_logs):
    logger, records = otlp_logs
    logger.info("login with password=planted", extra={"password": "planted", "note": "token=planted"})
    (record,) = records()
    assert "planted" not in str(record.body)
    assert all("planted" not in str(v) for v in record.attributes.values())
    assert record.attributes["password"] == "[REDACTED]"


def test_flush_otlp_logs_exports_what_the_root_handlers_buffered():
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter

    from django_observe.logging import flush_otlp_logs
    from django_observe.logging.otlp import OtlpLogHandler

    exporter = InMemoryLogRecordExporter()
    handler = OtlpLogHandler(
        identity=ServiceIdentity("shop", "1", "dev"), exporter_factory=lambda: exporter, otel_enabled=True
    )
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("tests.flush_otlp_logs").error("leaving with os._exit")
        assert exporter.get_finished_logs() == ()  # buffered: the batch's delay has not elapsed
        flush_otlp_logs()
        assert [r.log_record.body for r in exporter.get_finished_logs()] == ["leaving with os._exit"]
    finally:
        root.removeHandler(handler)
        handler.close()
