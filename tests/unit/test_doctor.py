"""observe_doctor's checks fed plain facts (issue #32); tests/integration/test_observe_doctor.py runs them
against real processes."""

from __future__ import annotations

import http.server
import socket
import threading
import types

from django_observe import doctor
from django_observe.checks import logging_override_warnings
from django_observe.conf import load_config
from tests import support

PRODUCTION = types.SimpleNamespace(DEBUG=False)


def test_project_logging_overriding_ours_is_a_silenceable_warning_and_a_finding():
    project = types.SimpleNamespace(DEBUG=False, LOGGING={"version": 1}, LOG_LEVEL="debug")
    config = load_config(project, {})
    warnings = logging_override_warnings(project, config)
    assert [w.id for w in warnings] == ["django_observe.W006"]
    assert "LOG_LEVEL is not applied" in warnings[0].msg
    assert "SILENCED_SYSTEM_CHECKS" in warnings[0].hint
    found = doctor.diagnose(doctor.Facts(config=config, settings=project), (doctor.check_project_logging,))
    assert [f.id for f in found] == ["logging.overridden"]
    assert (
        logging_override_warnings(
            types.SimpleNamespace(DEBUG=False, LOGGING={"version": 1}), load_config(PRODUCTION, {})
        )
        == []
    )
    on = load_config(project, {"LOG_CONFIGURE": "on"})
    assert logging_override_warnings(project, on) == []


def test_libraries_installed_but_not_instrumented():
    config = load_config(PRODUCTION, {"OTEL_ENABLED": "true"})
    present = {"openai", "opentelemetry.instrumentation.redis", "redis"}
    facts = doctor.Facts(config=config, settings=types.SimpleNamespace(DATABASES={}), installed=present.__contains__)
    found = doctor.check_instrumentation(facts)
    assert [f.problem.split(" is installed")[0] for f in found] == ["openai"]
    assert "opentelemetry.instrumentation.genai.openai" in found[0].problem
    assert found[0].fix == "pip install django-observe[genai]"
    off = doctor.Facts(config=load_config(PRODUCTION, {}), installed=present.__contains__)
    assert doctor.check_instrumentation(off) == []


def test_wrong_psycopg_instrumentor_is_named(monkeypatch):
    config = load_config(PRODUCTION, {"OTEL_ENABLED": "true"})
    monkeypatch.setattr(doctor, "_postgres_driver", lambda: "psycopg")
    databases = {"default": {"ENGINE": "django.db.backends.postgresql"}}
    present = {"opentelemetry.instrumentation.psycopg2"}
    facts = doctor.Facts(
        config=config, settings=types.SimpleNamespace(DATABASES=databases), installed=present.__contains__
    )
    (finding,) = doctor.check_instrumentation(facts)
    assert finding.problem.startswith("psycopg is installed but opentelemetry.instrumentation.psycopg is not")
    assert "the psycopg2 instrumentation is installed, for the other driver" in finding.problem


def test_a_collector_that_is_not_there_is_unreachable():
    port = support.free_port()
    config = load_config(
        PRODUCTION, {"OTEL_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    )
    (finding,) = doctor.check_otlp(doctor.Facts(config=config))
    assert finding.id == "otlp.unreachable"
    assert f"http://127.0.0.1:{port}" in finding.problem


def test_a_check_that_breaks_is_a_finding():
    def broken(facts):
        raise RuntimeError("no")

    found = doctor.diagnose(doctor.Facts(config=load_config(PRODUCTION, {})), (broken,))
    assert [f.id for f in found] == ["doctor.broken"]


class _Answer404(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _signals_on(endpoint: str) -> doctor.Facts:
    return doctor.Facts(
        config=load_config(
            PRODUCTION,
            {
                "OTEL_ENABLED": "true",
                "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
                "OTEL_LOGS_EXPORTER": "otlp",
                "OTEL_METRICS_EXPORTER": "otlp",
            },
        )
    )


def test_an_http_status_and_a_timeout_are_named_for_each_signal():
    """A collector answering 404 is reported with the status; one that accepts the connection and never
    answers, as a timeout (the doctor's own, so it returns)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer404)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        facts = _signals_on(f"http://127.0.0.1:{server.server_address[1]}")
        for check, finding in (
            (doctor.check_otlp, "otlp.unreachable"),
            (doctor.check_otlp_logs, "otlp.logs.unreachable"),
            (doctor.check_otlp_metrics, "otlp.metrics.unreachable"),
        ):
            (found,) = check(facts)
            assert found.id == finding
            assert found.problem.endswith("was not acknowledged: the collector answered HTTP status 404")
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        facts = _signals_on(f"http://127.0.0.1:{silent.getsockname()[1]}")
        (found,) = doctor.check_otlp_metrics(facts)
        assert found.problem.endswith(f"no answer within {doctor.TIMEOUT:g}s (timeout)"), found.problem


def test_log_and_metric_probes_only_when_their_exporter_is_on():
    port = support.free_port()
    traces_only = load_config(
        PRODUCTION, {"OTEL_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    )
    found = doctor.diagnose(
        doctor.Facts(config=traces_only), (doctor.check_otlp, doctor.check_otlp_logs, doctor.check_otlp_metrics)
    )
    assert [f.id for f in found] == ["otlp.unreachable"]
