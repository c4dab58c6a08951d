"""django_observe's request spans against opentelemetry-instrumentation-django's, on the same requests.

The benchmark project runs twice in subprocesses, once with django_observe (``observe_otel``) and once with
the raw contrib instrumentor (``otel_raw``), with the same contrib environment variables; both export to
one OTLP receiver. The contrib runs with ``OTEL_SEMCONV_STABILITY_OPT_IN=http`` (the stable HTTP names,
which django_observe always uses).
"""

import subprocess

import pytest

from tests import support, support_otlp

pytestmark = pytest.mark.integration
SERVER = 2  # OTLP SpanKind

REQUESTS = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.test import Client
from opentelemetry import trace
client = Client()
headers = dict(HTTP_X_CUSTOM_ONE="v1", HTTP_X_CUSTOM_SECRET="hidden", HTTP_AUTHORIZATION="Bearer TOKEN")
for method, path in [("get", "/ping"), ("post", "/ping"), ("get", "/ping?q=1"), ("get", "/nope"), ("get", "/db-cache")]:
    getattr(client, method)(path, **headers)
trace.get_tracer_provider().force_flush()
"""

OPTIONS = {
    "OTEL_PYTHON_DJANGO_EXCLUDED_URLS": "db-cache",
    "OTEL_PYTHON_DJANGO_TRACED_REQUEST_ATTRS": "path_info,method",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST": "x-custom-.*,authorization",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE": "content-type,x-frame-options",
    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS": "x-custom-secret",
    "OTEL_SEMCONV_STABILITY_OPT_IN": "http",
}
OPTION_KEYS = ("http.request.header.", "http.response.header.", "path_info", "method")


def run(config, tmp_path):
    with support_otlp.HttpReceiver() as receiver:
        env = support.project_env(
            DJANGO_SETTINGS_MODULE="benchmarks.project.settings",
            BENCH_CONFIG=config,
            BENCH_DB=str(tmp_path / f"{config}.sqlite3"),
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
            OTEL_TRACES_EXPORTER="otlp",
            **OPTIONS,
        )
        done = subprocess.run(
            [support.PYTHON, "-c", REQUESTS], cwd=support.ROOT, env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr[-3000:]
        spans = [
            (s.name, sorted(k for k in s.attributes if k.startswith(OPTION_KEYS)), s.attributes)
            for s in receiver.spans
            if s.kind == SERVER
        ]
        return sorted(spans, key=lambda span: (span[0], span[1]))


def test_same_span_names_and_option_attributes_as_the_contrib_instrumentor(tmp_path):
    ours, contrib = run("observe_otel", tmp_path), run("otel_raw", tmp_path)
    assert [(name, keys) for name, keys, _ in ours] == [(name, keys) for name, keys, _ in contrib]
    assert [name for name, _, _ in ours] == ["GET", "GET ping", "GET ping", "POST ping"]  # /db-cache: no span
    for (_, _, attributes), (_, _, theirs) in zip(ours, contrib, strict=True):
        assert attributes["http.request.header.x_custom_one"] == theirs["http.request.header.x_custom_one"]
        assert attributes["http.request.header.x_custom_secret"] == theirs["http.request.header.x_custom_secret"]
        assert attributes["path_info"] == theirs["path_info"] and attributes["method"] == theirs["method"]
        assert attributes["http.response.header.content_type"] == theirs["http.response.header.content_type"]
        # Ours never lets a secret-named header through, even captured; the contrib only sanitises what it is told.
        assert "TOKEN" not in str(attributes["http.request.header.authorization"])
