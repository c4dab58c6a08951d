"""LOG_JSON_FLAVOR field mappings, request line sampling, and the correlation ID on error pages."""

import json
import logging
import sys

import pytest
from django.template import Context, Template
from django.test import Client, RequestFactory

from django_observe import conf
from django_observe.context_processors import correlation
from django_observe.correlation import correlation_context
from django_observe.logging import JSONFormatter
from django_observe.logging.flavours import FLAVORS, Service, flavor_processor, traceback_text
from django_observe.logging.sampling import RequestSampler

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
SERVICE = {"name": "shop", "environment": "staging", "version": "2.1.0"}


def request_record(status=200, level=logging.INFO, exc=False, **extra):
    record = logging.LogRecord("django_observe.request", level, __file__, 1, "GET /api/items", (), None)
    fields = {
        "correlation_id": "req_abc123",
        "method": "GET",
        "path": "/api/items",
        "route": "api/items",
        "status": status,
        "duration_ms": 123.45,
        "user_id": "42",
        "trace_id": TRACE_ID,
        "span_id": SPAN_ID,
        "trace_sampled": True,
        "user_agent": "curl/8.5",
    }
    fields.update(extra)
    record.__dict__.update(fields)
    if exc:
        try:
            raise RuntimeError("db down password=hunter2")
        except RuntimeError:
            record.exc_info = sys.exc_info()
    return record


def render(flavor, record, **kwargs):
    line = JSONFormatter(flavor=flavor, service=SERVICE, **kwargs).format(record)
    assert "\n" not in line
    return json.loads(line)


# --- config


def test_flavor_option_env_overrides_the_setting(settings):
    settings.DJANGO_OBSERVE = {"LOG_JSON_FLAVOR": "ecs"}
    assert conf.load_config(settings, environ={}).log_json_flavor == "ecs"
    config = conf.load_config(settings, environ={"LOG_JSON_FLAVOR": "GCP"})
    assert config.log_json_flavor == "gcp"
    assert config.sources["log_json_flavor"] == "environment variable LOG_JSON_FLAVOR"
    settings.DJANGO_OBSERVE = {}
    assert conf.load_config(settings, environ={}).log_json_flavor == "default"


def test_invalid_flavor_names_the_setting_and_the_accepted_values(settings):
    with pytest.raises(conf.InvalidConfiguration) as info:
        conf.load_config(settings, environ={"LOG_JSON_FLAVOR": "splunk"})
    message = str(info.value)
    assert "environment variable LOG_JSON_FLAVOR must be one of" in message
    assert all(f'"{name}"' in message for name in ("default", "gcp", "datadog", "ecs"))
    assert "'splunk'" in message


def test_gcp_project_defaults_to_google_cloud_project(settings, monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "my-proj")
    assert conf.load_config(settings, environ={}).log_gcp_project == "my-proj"
    assert conf.load_config(settings, environ={"LOG_GCP_PROJECT": "other"}).log_gcp_project == "other"
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    assert conf.load_config(settings, environ={}).log_gcp_project is None


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ('{"/api/ping": 1.5}', "keep rates from 0 to 1"),
        ('{"/api/ping": "half"}', "keep rates from 0 to 1"),
        ('{"/api/ping": true}', "keep rates from 0 to 1"),
        ('{"": 0.5}', "empty key"),
        ("[1, 2]", "must be a dict"),
        ("{not json", "JSON object"),
    ],
)
def test_invalid_sample_rates_fail_at_startup(settings, raw, error):
    with pytest.raises(conf.InvalidConfiguration) as info:
        conf.load_config(settings, environ={"LOG_REQUESTS_SAMPLE": raw})
    assert "environment variable LOG_REQUESTS_SAMPLE" in str(info.value)
    assert error in str(info.value)


def test_sample_rates_and_slow_threshold_parse(settings):
    settings.DJANGO_OBSERVE = {"LOG_REQUESTS_SAMPLE": {"/api/ping": 0.1, "api/items": 0}, "LOG_SLOW_REQUEST_MS": 250}
    config = conf.load_config(settings, environ={})
    assert config.log_requests_sample == {"/api/ping": 0.1, "api/items": 0.0}
    assert config.log_slow_request_ms == 250.0
    with pytest.raises(conf.InvalidConfiguration, match="LOG_SLOW_REQUEST_MS must be a number"):
        conf.load_config(settings, environ={"LOG_SLOW_REQUEST_MS": "-1"})


# --- default flavour: unchanged


def test_default_flavour_is_the_flat_schema_without_flavour_fields():
    record = request_record()
    del record.trace_sampled, record.user_agent  # the middleware adds these for the other flavours only
    event = json.loads(JSONFormatter().format(record))
    assert list(event)[:5] == ["timestamp", "level", "logger", "message", "correlation_id"]
    assert event["status"] == 200 and event["trace_id"] == TRACE_ID and event["method"] == "GET"
    assert flavor_processor("default") is None


def test_unknown_flavour_is_refused():
    with pytest.raises(ValueError, match="LOG_JSON_FLAVOR must be one of"):
        flavor_processor("splunk")


# --- gcp


def test_gcp_request_line_uses_cloud_logging_special_fields():
    event = render("gcp", request_record(), gcp_project="my-proj")
    assert event["severity"] == "INFO"
    assert event["message"] == "GET /api/items"
    assert event["time"].endswith("Z")
    assert event["logging.googleapis.com/trace"] == f"projects/my-proj/traces/{TRACE_ID}"
    assert event["logging.googleapis.com/spanId"] == SPAN_ID
    assert event["logging.googleapis.com/trace_sampled"] is True
    assert event["httpRequest"] == {
        "requestMethod": "GET",
        "requestUrl": "/api/items",
        "status": 200,
        "latency": "0.12345s",
        "userAgent": "curl/8.5",
    }
    # jsonPayload keeps what the queries of the docs use.
    assert event["correlation_id"] == "req_abc123" and event["user_id"] == "42"
    assert event["route"] == "api/items" and event["duration_ms"] == 123.45
    for gone in ("level", "timestamp", "trace_id", "span_id", "trace_sampled", "method", "path", "status"):
        assert gone not in event


def test_gcp_without_project_writes_the_bare_trace_id_and_maps_levels():
    assert render("gcp", request_record())["logging.googleapis.com/trace"] == TRACE_ID
    for level, severity in [(5, "DEBUG"), (10, "DEBUG"), (30, "WARNING"), (40, "ERROR"), (50, "CRITICAL")]:
        record = logging.LogRecord("app", level, __file__, 1, "x", (), None)
        record.levelname = logging.getLevelName(level)
        assert render("gcp", record)["severity"] == severity


def test_gcp_exception_becomes_a_redacted_python_stack_trace():
    event = render("gcp", request_record(500, logging.ERROR, exc=True))
    assert event["severity"] == "ERROR"
    assert event["stack_trace"].startswith("Traceback (most recent call last):\n  File ")
    assert event["stack_trace"].endswith("RuntimeError: db down password=[REDACTED]")
    assert "exception" not in event and "hunter2" not in json.dumps(event)


def test_gcp_user_keys_cannot_pose_as_special_fields():
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "x", (), None)
    record.severity = "EMERGENCY"
    record.httpRequest = {"status": 1}
    record.__dict__["logging.googleapis.com/trace"] = "projects/evil/traces/1"
    event = render("gcp", record)
    assert event["severity"] == "INFO"
    assert event["severity_"] == "EMERGENCY" and event["httpRequest_"] == {"status": 1}
    assert "logging.googleapis.com/trace" not in event
    assert event["logging.googleapis.com/trace_"] == "projects/evil/traces/1"


# --- datadog


def test_datadog_fields():
    event = render("datadog", request_record(503, logging.ERROR, exc=True))
    assert event["status"] == "error"
    assert event["message"] == "GET /api/items" and event["timestamp"].endswith("Z")
    assert event["service"] == event["dd.service"] == "shop"
    assert event["dd.env"] == "staging" and event["dd.version"] == "2.1.0"
    # Datadog's form: the lower 64 bits of the OpenTelemetry IDs, unsigned decimal strings.
    assert event["dd.trace_id"] == str(int(TRACE_ID[16:], 16)) == "11803532876627986230"
    assert event["dd.span_id"] == str(int(SPAN_ID, 16))
    assert event["logger.name"] == "django_observe.request"
    assert event["http.method"] == "GET" and event["http.status_code"] == 503
    assert event["http.url_details.path"] == "/api/items" and event["http.useragent"] == "curl/8.5"
    assert event["duration"] == 123_450_000  # nanoseconds
    assert event["usr.id"] == "42" and event["correlation_id"] == "req_abc123"
    assert event["error.kind"] == "RuntimeError" and "[REDACTED]" in event["error.message"]
    assert event["error.stack"].startswith("Traceback")
    for gone in ("level", "trace_id", "span_id", "trace_sampled", "exception", "user_id", "method"):
        assert gone not in event


def test_datadog_level_names_and_a_user_status_key():
    record = logging.LogRecord("app", logging.WARNING, __file__, 1, "queued", (), None)
    record.status = "queued"
    event = render("datadog", record)
    assert event["status"] == "warning" and event["status_"] == "queued"


# --- ecs


def test_ecs_fields():
    event = render("ecs", request_record(404, logging.WARNING))
    assert list(event)[:3] == ["@timestamp", "log.level", "message"]  # the ecs-logging spec's order
    assert event["log.level"] == "warning" and event["ecs.version"].startswith("8.")
    assert event["log.logger"] == "django_observe.request"
    assert event["service.name"] == "shop" and event["event.dataset"] == "shop.log"
    assert event["trace.id"] == TRACE_ID and event["span.id"] == SPAN_ID
    assert event["labels.correlation_id"] == "req_abc123"
    assert event["http.request.method"] == "GET" and event["http.response.status_code"] == 404
    assert event["url.path"] == "/api/items" and event["user_agent.original"] == "curl/8.5"
    assert event["event.duration"] == 123_450_000
    assert event["user.id"] == "42"
    for gone in ("level", "timestamp", "trace_id", "correlation_id", "status", "path"):
        assert gone not in event


def test_ecs_error_fields():
    event = render("ecs", request_record(500, logging.ERROR, exc=True))
    assert event["error.type"] == "RuntimeError"
    assert event["error.message"] == "db down password=[REDACTED]"
    assert "Traceback" in event["error.stack_trace"]


# --- guarantees shared by every flavour


@pytest.mark.parametrize("flavor", ["default", "gcp", "datadog", "ecs"])
def test_every_flavour_escapes_and_redacts(flavor):
    record = logging.LogRecord("api", logging.INFO, __file__, 1, 'evil\n{"level":"ERROR"}\r\x1b[31m', (), None)
    record.api_token = "tok-123"
    record.note = "redis://:pw123@cache:6379/0"
    record.user_agent = "ua\nInjected: 1"
    line = JSONFormatter(flavor=flavor, service=SERVICE).format(record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    event = json.loads(line)
    assert "tok-123" not in line and "pw123" not in line
    assert event["message"] == 'evil\n{"level":"ERROR"}\r\x1b[31m'  # intact as data, escaped in the line


def test_structlog_events_get_the_flavour_too():
    import structlog

    formatter = JSONFormatter(flavor="ecs", service=SERVICE)
    record = logging.LogRecord("api", logging.INFO, __file__, 1, {"event": "hello", "password": "x"}, (), None)
    record._logger = structlog.get_logger("api")
    record._name = "info"
    event = json.loads(formatter.format(record))
    assert event["message"] == "hello" and event["log.level"] == "info" and event["password"] == "[REDACTED]"


def test_traceback_text_prints_causes_first():
    chain = [
        {"type": "RuntimeError", "value": "outer", "frames": [{"filename": "a.py", "lineno": 1, "name": "f"}]},
        {"type": "KeyError", "value": "", "frames": []},
    ]
    text = traceback_text(chain)
    assert text.index("KeyError") < text.index("RuntimeError: outer")


# --- sampling


def sampler(rates, slow_ms=1000.0, draws=(0.5,)):
    built = RequestSampler.from_config(rates, slow_ms)
    values = iter(draws * 1000)
    return RequestSampler(built.routes, built.prefixes, built.slow_ms, random=lambda: next(values))


def test_no_rates_means_no_sampler():
    assert RequestSampler.from_config({}, 1000) is None


def test_rates_by_prefix_and_route():
    s = sampler({"/api": 0.5, "/api/ping": 0.0, "api/items/<int:pk>": 1.0, "/": 0.25})
    assert s.rate("/api/ping", "api/ping") == 0.0
    assert s.rate("/api/ping/deep", "x") == 0.0
    assert s.rate("/api/pingpong", "api/pingpong") == 0.5  # whole segments only
    assert s.rate("/api/items/3", "api/items/<int:pk>") == 1.0  # the route wins over a prefix
    assert s.rate("/other", "other") == 0.25
    assert RequestSampler.from_config({"/api/": 0.3}, 1000).rate("/api/x", "") == 0.3


def test_errors_and_slow_requests_are_always_kept():
    s = sampler({"/": 0.0}, slow_ms=500)
    assert not s.keep("/api/ping", "api/ping", 200, 10.0)
    assert not s.keep("/api/ping", "api/ping", 399, 499.9)
    assert s.keep("/api/ping", "api/ping", 400, 1.0)
    assert s.keep("/api/ping", "api/ping", 500, 1.0)
    assert s.keep("/api/ping", "api/ping", 200, 500.0)


def test_rate_draws():
    s = sampler({"/api/ping": 0.1}, draws=(0.05, 0.5, 0.09, 0.99))
    kept = [s.keep("/api/ping", "api/ping", 200, 1.0) for _ in range(4)]
    assert kept == [True, False, True, False]
    unmatched = sampler({"/api/ping": 0.0})
    assert unmatched.keep("/api/other", "api/other", 200, 1.0)


def test_seeded_rate_keeps_about_the_rate():
    import random

    rng = random.Random(1234)
    built = RequestSampler.from_config({"/api/ping": 0.1}, 1000)
    s = RequestSampler(built.routes, built.prefixes, built.slow_ms, random=rng.random)
    kept = sum(s.keep("/api/ping", "api/ping", 200, 1.0) for _ in range(10_000))
    assert 850 < kept < 1150


# --- correlation ID on error pages


def test_template_tag_and_context_processor():
    template = Template("{% load observe %}[{% correlation_id %}]")
    assert template.render(Context()) == "[]"
    with correlation_context("req_tag1"):
        assert template.render(Context()) == "[req_tag1]"
        assert correlation(RequestFactory().get("/"))["correlation_id"] == "req_tag1"
    with correlation_context("<b>x</b>"):
        assert template.render(Context()) == "[&lt;b&gt;x&lt;/b&gt;]"  # escaped like any value
    request = RequestFactory().get("/")
    request.correlation_id = "req_attr"
    assert correlation(request) == {"correlation_id": "req_attr"}


@pytest.mark.django_db
def test_error_responses_carry_the_id_and_the_pages_show_it(settings):
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    crash = client.get("/api/crash", HTTP_X_CORRELATION_ID="req_page500")
    assert crash.status_code == 500 and crash["X-Correlation-ID"] == "req_page500"
    assert '<code id="correlation-id">req_page500</code>' in crash.content.decode()
    missing = client.get("/no/such/page", HTTP_X_CORRELATION_ID="req_page404")
    assert missing.status_code == 404 and missing["X-Correlation-ID"] == "req_page404"
    assert '<code id="correlation-id">req_page404</code>' in missing.content.decode()
    bad_host = client.get("/api/ping", HTTP_HOST="evil.example", HTTP_X_CORRELATION_ID="req_page400")
    assert bad_host.status_code == 400 and bad_host["X-Correlation-ID"] == "req_page400"


def test_the_flavour_is_ignored_by_the_text_format():
    from django_observe.logging import TextFormatter

    record = request_record()
    del record.trace_sampled, record.user_agent
    line = TextFormatter(flavor="gcp").format(record)
    assert "] GET /api/items (req_abc123) - 123.45ms method=GET" in line and "severity" not in line


@pytest.mark.parametrize(
    ("fmt", "flavor", "expected"), [("json", "gcp", True), ("json", "default", False), ("text", "ecs", False)]
)
def test_middleware_adds_flavour_fields_only_for_a_json_flavour(settings, fmt, flavor, expected):
    from django_observe.middleware import ObserveMiddleware

    settings.DJANGO_OBSERVE = {"LOG_JSON_FLAVOR": flavor}
    settings.LOG_FORMAT = fmt  # setting_changed rebuilds the runtime
    assert ObserveMiddleware(lambda request: None).request_line.flavor_fields is expected


# --- one table


def test_the_setting_accepts_exactly_the_rows_of_the_flavour_table():
    parse = {field.name: field for field in conf.option_fields()}["log_json_flavor"].metadata["parse"]
    assert parse.accepted == tuple(FLAVORS) == conf.options.LOG_JSON_FLAVORS
    for name in FLAVORS:
        assert parse(name.upper()) == name
        processor = flavor_processor(name, service=Service("shop"))
        assert (processor is None) == (name == "default")


def test_a_flavour_is_one_row_of_the_table(monkeypatch):
    def shout(service, gcp_project):
        return lambda logger, method, event: {"MESSAGE": event["message"].upper(), "SERVICE": service.name}

    monkeypatch.setitem(FLAVORS, "loud", shout)
    processor = flavor_processor("loud", service=Service("shop"))
    assert processor(None, "info", {"message": "hi"}) == {"MESSAGE": "HI", "SERVICE": "shop"}
