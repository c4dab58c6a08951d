"""The contrib Django instrumentation's options on our request spans (pure: RequestFactory, in-memory spans)."""

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import resolve
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from django_observe.conf import load_config
from django_observe.conf.loading import InvalidConfiguration
from django_observe.tracing.server import ServerSpans
from django_observe.tracing.setup import server_spans


@pytest.fixture
def memory():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def serve(spans, request, response=None):
    started = spans.start(request)
    if started is None:
        return None
    request.resolver_match = resolve(request.path_info)
    response = response if response is not None else HttpResponse("ok")
    spans.finish(request, started, response.status_code, "cid", None, None, response)
    return response


def only_span(exporter):
    (span,) = exporter.get_finished_spans()
    return span


def test_excluded_urls_are_searched_in_the_full_url(memory):
    provider, exporter = memory
    spans = ServerSpans(url_excluded=("testserver/api/ping$", r"^https://"), tracer_provider=provider)
    assert spans.start(RequestFactory().get("/api/ping?x=1")) is None
    assert spans.start(RequestFactory().get("/api/chat", secure=True)) is None
    serve(spans, RequestFactory().get("/api/chat"))
    assert only_span(exporter).name == "GET api/chat"


def test_a_disallowed_host_does_not_raise(memory, settings):
    provider, exporter = memory
    spans = ServerSpans(url_excluded=("nothing-matches",), tracer_provider=provider)
    serve(spans, RequestFactory().get("/api/chat", HTTP_HOST="evil.example"))
    assert only_span(exporter).name == "GET api/chat"


def test_traced_request_attrs_are_strings_under_the_same_key(memory):
    provider, exporter = memory
    spans = ServerSpans(traced_request_attrs=("path_info", "content_type", "missing"), tracer_provider=provider)
    serve(spans, RequestFactory().get("/api/chat"))
    attributes = only_span(exporter).attributes
    assert attributes["path_info"] == "/api/chat"
    assert attributes["content_type"] == ""
    assert "missing" not in attributes


def test_captured_headers_lists_normalised_names_and_sanitising(memory):
    provider, exporter = memory
    spans = ServerSpans(
        request_headers=("x-custom-.*", "Authorization", "cookie", "user-agent"),
        response_headers=("x-reply", "content-type", "x-api-key"),
        sanitize_headers=("custom-SECRET",),
        tracer_provider=provider,
    )
    response = HttpResponse("ok", content_type="text/plain")
    response["X-Reply"] = "r1"
    response["X-Api-Key"] = "KEYVALUE"
    request = RequestFactory().get(
        "/api/chat",
        HTTP_X_CUSTOM_ONE="v1",
        HTTP_X_CUSTOM_SECRET_TWO="hidden",
        HTTP_AUTHORIZATION="Bearer TOKENVALUE",
        HTTP_COOKIE="sessionid=SESSIONVALUE",
        HTTP_USER_AGENT="probe/1.0",
        HTTP_X_OTHER="not captured",
    )
    serve(spans, request, response)
    attributes = only_span(exporter).attributes
    assert attributes["http.request.header.x_custom_one"] == ("v1",)
    assert attributes["http.request.header.x_custom_secret_two"] == ("[REDACTED]",)
    # Secret-named headers are sanitised even when captured and not listed in SANITIZE_FIELDS.
    assert attributes["http.request.header.authorization"] == ("[REDACTED]",)
    assert attributes["http.request.header.cookie"] == ("[REDACTED]",)
    assert attributes["http.request.header.user_agent"] == ("probe/1.0",)
    assert "http.request.header.x_other" not in attributes
    assert attributes["http.response.header.x_reply"] == ("r1",)
    assert attributes["http.response.header.content_type"] == ("text/plain",)
    assert attributes["http.response.header.x_api_key"] == ("[REDACTED]",)
    for secret in ("SESSIONVALUE", "TOKENVALUE", "KEYVALUE"):
        assert secret not in str(dict(attributes))


def test_hooks_get_the_span_request_and_response_and_their_errors_are_logged(memory, caplog):
    provider, exporter = memory
    seen = []

    def request_hook(span, request):
        seen.append(("request", span.is_recording(), request.path))
        span.set_attribute("from.request_hook", 1)

    def response_hook(span, request, response):
        seen.append(("response", response.status_code))
        span.set_attribute("from.response_hook", 1)
        raise RuntimeError("hook bug")

    spans = ServerSpans(request_hooks=(request_hook,), response_hooks=(response_hook,), tracer_provider=provider)
    serve(spans, RequestFactory().get("/api/chat"))
    assert seen == [("request", True, "/api/chat"), ("response", 200)]
    attributes = only_span(exporter).attributes
    assert attributes["from.request_hook"] == 1 and attributes["from.response_hook"] == 1
    assert "tracing_response_hook_failed" in caplog.text


def test_no_option_set_means_no_per_request_extras():
    spans = ServerSpans(("/healthz$",))
    assert spans._on_start is None and spans._on_finish is None and spans._url_excluded is None


def test_options_from_settings_and_environment(memory):
    environ = {
        "OTEL_PYTHON_EXCLUDED_URLS": "generic",
        "OTEL_PYTHON_DJANGO_TRACED_REQUEST_ATTRS": "path_info, method",
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "x-a,x-b",
    }
    settings = type("S", (), {"DJANGO_OBSERVE": {"TRACING_REQUEST_HOOK": "tests.unit.test_server_span_options.hook"}})
    config = load_config(settings, environ=environ)
    assert config.otel_python_excluded_urls == ("generic",)
    assert config.otel_python_django_traced_request_attrs == ("path_info", "method")
    assert config.otel_instrumentation_http_capture_headers_server_request == ("x-a", "x-b")
    spans = server_spans(config)
    assert spans._request_hooks == (hook,)
    assert spans._url_excluded("http://testserver/generic")
    # The Django-specific variable wins over the generic one, as in the contrib.
    config = load_config(settings, environ={**environ, "OTEL_PYTHON_DJANGO_EXCLUDED_URLS": "specific"})
    spans = server_spans(config)
    assert not spans._url_excluded("http://testserver/generic") and spans._url_excluded("http://h/specific")


def hook(span, request):
    pass


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_PYTHON_DJANGO_EXCLUDED_URLS", "ok,(unclosed"),
        ("OTEL_PYTHON_DJANGO_TRACED_REQUEST_ATTRS", "path info"),
        ("TRACING_RESPONSE_HOOK", "not a path"),
    ],
)
def test_invalid_values_name_the_setting(name, value):
    with pytest.raises(InvalidConfiguration, match=name):
        load_config(type("S", (), {})(), environ={name: value})


def test_a_hook_that_cannot_be_imported_fails_at_start_naming_the_setting():
    from django.core.exceptions import ImproperlyConfigured

    config = load_config(type("S", (), {})(), environ={"TRACING_REQUEST_HOOK": "tests.nowhere.hook"})
    with pytest.raises(ImproperlyConfigured, match="TRACING_REQUEST_HOOK"):
        server_spans(config)
