"""Outbound propagation against a real local HTTP server that records the headers it receives.

In-process: the patched ``requests``/``httpx`` (sync, async, module-level) under a correlation context.
Subprocesses: the test project under gunicorn and uvicorn, and a real Celery worker (SQLite and the
filesystem broker), calling the recording server through the demo views and the ``fetch`` task.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests

from django_observe import conf, wiring
from django_observe.correlation import correlation_context, wrap_with_context
from django_observe.integrations import http_clients as propagation
from tests import support, support_otlp

pytestmark = pytest.mark.integration

HEADER = "x-correlation-id"
TRACE_HEADER = "traceparent"


class RecordingServer:
    """HTTP on a free loopback port; ``hits`` lists (path, headers with lower-case names) per request.

    ``/redirect?to=<url>`` answers 302 to ``<url>``; everything else 200.
    """

    def __init__(self) -> None:
        self.hits: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                with recorder.lock:
                    recorder.hits.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                parts = urlsplit(self.path)
                if parts.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", parse_qs(parts.query)["to"][0])
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", support.free_port()), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> RecordingServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def headers(self, path: str) -> list[dict[str, str]]:
        """Headers of every request received for ``path`` (query string included)."""
        with self.lock:
            return [headers for hit_path, headers in self.hits if hit_path == path]

    def one(self, path: str, timeout: float = 15.0) -> dict[str, str]:
        return support.wait_until(lambda: self.headers(path), timeout=timeout, message=f"a request for {path}")[0]


@pytest.fixture
def recorder():
    with RecordingServer() as server:
        yield server


@pytest.fixture
def propagate():
    """Install propagation with the given environment-style options; restores the process config after."""

    def apply(**environ: str) -> conf.ObserveConfig:
        return wiring.rebuild(environ=environ).config

    yield apply
    wiring.rebuild()


# --- in-process: the patches themselves


def call_all(url: str) -> None:
    """The same GET with every supported client: requests, Session, httpx.get, Client, AsyncClient."""
    requests.get(url + "?c=requests", timeout=5)
    with requests.Session() as session:
        session.get(url + "?c=session", timeout=5)
    httpx.get(url + "?c=httpx", timeout=5)
    with httpx.Client(timeout=5) as client:
        client.get(url + "?c=client")

    async def async_call() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            await client.get(url + "?c=async")

    asyncio.run(async_call())


CLIENTS = ("requests", "session", "httpx", "client", "async")


def test_every_client_carries_the_current_id_and_nothing_outside_a_context(recorder, propagate):
    propagate()
    call_all(recorder.url + "/outside")
    with correlation_context("req_inproc"):
        call_all(recorder.url + "/inside")
    for client in CLIENTS:
        assert HEADER not in recorder.one(f"/outside?c={client}"), client
        assert recorder.one(f"/inside?c={client}")[HEADER] == "req_inproc", client


def test_the_header_is_the_first_correlation_header(recorder, propagate):
    propagate(CORRELATION_HEADERS="X-Request-ID,X-Correlation-ID")
    with correlation_context("req_named"):
        requests.get(recorder.url + "/named", timeout=5)
    headers = recorder.one("/named")
    assert headers["x-request-id"] == "req_named" and HEADER not in headers


def test_a_header_the_caller_set_is_never_overwritten(recorder, propagate):
    propagate()
    with correlation_context("req_ours"):
        requests.get(recorder.url + "/explicit?c=requests", headers={"X-CORRELATION-ID": "theirs-1"}, timeout=5)
        with requests.Session() as session:
            session.headers["x-correlation-id"] = "theirs-2"
            session.get(recorder.url + "/explicit?c=session", timeout=5)
        httpx.get(recorder.url + "/explicit?c=httpx", headers={"x-correlation-id": "theirs-3"}, timeout=5)
        with httpx.Client(headers={"X-Correlation-Id": "theirs-4"}, timeout=5) as client:
            client.get(recorder.url + "/explicit?c=client")
    values = [recorder.one(f"/explicit?c={c}")[HEADER] for c in ("requests", "session", "httpx", "client")]
    assert values == ["theirs-1", "theirs-2", "theirs-3", "theirs-4"]


def test_switched_off_nothing_is_sent(recorder, propagate):
    propagate(CORRELATION_PROPAGATE="false")
    assert propagation.installed() == ()
    with correlation_context("req_off"):
        call_all(recorder.url + "/off")
    for client in CLIENTS:
        assert HEADER not in recorder.one(f"/off?c={client}"), client


def test_hosts_outside_the_allowlist_get_nothing(recorder, propagate):
    propagate(CORRELATION_PROPAGATE_HOSTS="localhost,*.internal.example")
    with correlation_context("req_allow"):
        call_all(recorder.url + "/by-ip")  # 127.0.0.1: not listed
        call_all(f"http://localhost:{recorder.port}/by-name")
    for client in CLIENTS:
        assert HEADER not in recorder.one(f"/by-ip?c={client}"), client
        assert recorder.one(f"/by-name?c={client}")[HEADER] == "req_allow", client


def test_a_redirect_to_a_host_outside_the_allowlist_drops_the_header(recorder, propagate):
    propagate(CORRELATION_PROPAGATE_HOSTS="localhost")
    allowed, other = f"http://localhost:{recorder.port}", recorder.url
    with correlation_context("req_redirect"):
        response = requests.get(f"{allowed}/redirect?to={other}/landed-requests", timeout=5)
        assert response.status_code == 200 and len(response.history) == 1
        httpx.get(f"{allowed}/redirect?to={other}/landed-httpx", timeout=5, follow_redirects=True)
        # and back into the allowlist: the header comes back
        requests.get(f"{other}/redirect?to={allowed}/back", timeout=5)
    assert recorder.one(f"/redirect?to={other}/landed-requests")[HEADER] == "req_redirect"
    assert HEADER not in recorder.one("/landed-requests")
    assert HEADER not in recorder.one("/landed-httpx")
    assert recorder.one("/back")[HEADER] == "req_redirect"


def test_threads_get_the_id_only_when_the_context_is_carried(recorder, propagate):
    propagate()
    with correlation_context("req_thread"):
        bare = threading.Thread(target=requests.get, args=(recorder.url + "/bare",), kwargs={"timeout": 5})
        carried = threading.Thread(
            target=wrap_with_context(requests.get), args=(recorder.url + "/carried",), kwargs={"timeout": 5}
        )
        for thread in (bare, carried):
            thread.start()
            thread.join()
    assert HEADER not in recorder.one("/bare")
    assert recorder.one("/carried")[HEADER] == "req_thread"


def test_install_is_idempotent_and_uninstall_restores_the_libraries(propagate):
    original_send = requests.adapters.HTTPAdapter.send
    propagate()
    assert requests.adapters.HTTPAdapter.send is original_send  # patched once, at startup; not wrapped twice
    propagation.uninstall()
    try:
        assert propagation.installed() == ()
        assert not hasattr(requests.adapters.HTTPAdapter.send, "__wrapped__")
        assert not hasattr(httpx.HTTPTransport.handle_request, "__wrapped__")
    finally:
        propagate()
    assert propagation.installed() == ("requests", "httpx")
    assert requests.adapters.HTTPAdapter.send.__wrapped__ is not None


def test_outbound_headers_helper(propagate):
    propagate(CORRELATION_PROPAGATE_HOSTS="*.internal.example")
    assert propagation.outbound_headers("http://a.internal.example/") == {}
    with correlation_context("req_helper"):
        assert propagation.outbound_headers("http://a.internal.example/x") == {"X-Correlation-ID": "req_helper"}
        assert propagation.outbound_headers("https://elsewhere.test/") == {}


# --- the demo views must not become an SSRF


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:8000/x", True),
        ("http://127.5.6.7/x", True),
        ("http://localhost:9/x", True),
        ("http://[::1]:80/", True),
        ("https://127.0.0.1/", False),
        ("http://example.com/", False),
        ("http://10.0.0.1/", False),
        ("http://169.254.169.254/latest/meta-data", False),
        ("http://localhost.example.com/", False),
        ("http://127.0.0.1@example.com/", False),
        ("http://example.com\\@127.0.0.1/", False),
        ("http://user:pw@127.0.0.1/", False),
        ("http://0x7f.1/", False),
        ("http://127.0.0.1:99999/", False),
        ("file:///etc/passwd", False),
        ("", False),
    ],
)
def test_demo_targets_are_loopback_only(url, ok):
    from testproject.demo.views import loopback_url

    assert (loopback_url(url) == url) is ok


# --- subprocesses: the test project


def outbound(web: support.Server, target: str, correlation_id: str, path: str = "/api/outbound", **params: str):
    response = requests.get(
        web.url + path, params={"url": target, **params}, headers={"X-Correlation-ID": correlation_id}, timeout=15
    )
    assert response.status_code in (200, 202), response.text
    return response


def trace_id_of(traceparent: str) -> str:
    version, trace_id, span_id, flags = traceparent.split("-")
    return trace_id


def test_gunicorn_and_uvicorn_with_tracing_send_both_headers(tmp_path, recorder):
    with support_otlp.HttpReceiver() as receiver:
        env = support.sqlite_env(
            tmp_path,
            **support.tracing_to(receiver.endpoint),
            LOG_FORMAT="json",
        )
        with support.gunicorn(env, tmp_path / "web.log", workers=2) as web:
            for client in ("requests", "requests_session", "httpx", "httpx_client"):
                outbound(web, f"{recorder.url}/wsgi/{client}", f"req_wsgi_{client}", client=client)
        with support.uvicorn(env, tmp_path / "asgi.log") as web:
            outbound(web, f"{recorder.url}/asgi/async", "req_asgi_async", path="/api/aoutbound")
            outbound(web, f"{recorder.url}/asgi/sync", "req_asgi_sync", client="httpx")
            # Collected while uvicorn runs (the batch processor exports every 200 ms): what is asserted here
            # is the trace the outbound call continues, not uvicorn's flush at exit.
            support.wait_until(
                lambda: (
                    {"req_asgi_async", "req_asgi_sync"}
                    <= {s.attributes.get("correlation_id") for s in list(receiver.spans) if s.kind == 2}
                ),
                message="uvicorn's server spans",
            )
        cases = {f"/wsgi/{c}": f"req_wsgi_{c}" for c in ("requests", "requests_session", "httpx", "httpx_client")}
        cases.update({"/asgi/async": "req_asgi_async", "/asgi/sync": "req_asgi_sync"})
        received = {path: recorder.one(path) for path in cases}
        for path, correlation_id in cases.items():
            assert received[path][HEADER] == correlation_id, path
            assert TRACE_HEADER in received[path], path

        # traceparent continues the inbound request's trace: the server span that has this correlation ID.
        def server_spans_in():
            spans = list(receiver.spans)
            seen = {s.attributes.get("correlation_id") for s in spans if s.kind == 2}
            return seen >= set(cases.values()) and spans

        spans = support.wait_until(
            server_spans_in,
            message=lambda: (
                "server spans with each correlation ID (received: "
                + ", ".join(sorted(str(s.attributes.get("correlation_id")) for s in receiver.spans if s.kind == 2))
                + ")"
            ),
        )
        servers = {s.attributes.get("correlation_id"): s for s in spans if s.kind == 2}
        span_ids = {s.span_id for s in spans}
        for path, correlation_id in cases.items():
            traceparent = received[path][TRACE_HEADER]
            assert trace_id_of(traceparent) == servers[correlation_id].trace_id, path
            assert traceparent.split("-")[2] in span_ids, f"{path}: the CLIENT span is exported"


def test_celery_task_calls_carry_the_tasks_id(tmp_path, recorder):
    with support_otlp.HttpReceiver() as receiver:
        env = support.sqlite_env(
            tmp_path,
            **support.tracing_to(receiver.endpoint),
            LOG_FORMAT="json",
        )
        worker = support.celery_worker(env, tmp_path / "worker.log")
        worker.start()
        try:
            support.wait_worker_ready(worker)
            with support.gunicorn(env, tmp_path / "web.log", workers=1) as web:
                for client in ("requests", "httpx"):
                    outbound(web, f"{recorder.url}/task/{client}", f"req_task_{client}", client=client, via="task")
                received = {c: recorder.one(f"/task/{c}", timeout=30) for c in ("requests", "httpx")}
        finally:
            worker.stop()
    for client, headers in received.items():
        assert headers[HEADER] == f"req_task_{client}", client
        assert TRACE_HEADER in headers, client
    assert '"task_succeeded"' in worker.output()


def test_off_and_outside_the_allowlist_send_nothing(tmp_path, recorder):
    env = support.sqlite_env(tmp_path, CORRELATION_PROPAGATE_HOSTS="localhost")
    with support.gunicorn(env, tmp_path / "allow.log", workers=1) as web:
        outbound(web, f"{recorder.url}/allow/ip", "req_by_ip")  # 127.0.0.1 is not in the allowlist
        outbound(web, f"http://localhost:{recorder.port}/allow/name", "req_by_name", client="httpx")
    with support.gunicorn(dict(env, CORRELATION_PROPAGATE="false"), tmp_path / "off.log", workers=1) as web:
        outbound(web, f"http://localhost:{recorder.port}/off/requests", "req_off_1")
        outbound(web, f"http://localhost:{recorder.port}/off/httpx", "req_off_2", client="httpx")
    assert HEADER not in recorder.one("/allow/ip")
    assert recorder.one("/allow/name")[HEADER] == "req_by_name"
    assert HEADER not in recorder.one("/off/requests")
    assert HEADER not in recorder.one("/off/httpx")
    # tracing is off here: no traceparent either
    assert all(TRACE_HEADER not in headers for _, headers in recorder.hits)


def test_a_bad_allowlist_stops_the_server_naming_the_setting(tmp_path):
    env = support.sqlite_env(tmp_path)
    result = support.manage("check", env=dict(env, CORRELATION_PROPAGATE_HOSTS="https://api.internal:443"), check=False)
    assert result.returncode != 0
    assert "environment variable CORRELATION_PROPAGATE_HOSTS must be a list of hosts" in result.stderr


def test_the_demo_view_refuses_non_loopback_targets(tmp_path, recorder):
    env = support.sqlite_env(tmp_path)
    with support.gunicorn(env, tmp_path / "web.log", workers=1) as web:
        for target in (
            "http://example.com/",
            "http://169.254.169.254/",
            f"http://127.0.0.1@example.com:{recorder.port}/",
        ):
            response = requests.get(web.url + "/api/outbound", params={"url": target}, timeout=10)
            assert response.status_code == 400, target


INSTRUMENTED_FIRST = """
import asyncio, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor

trace.set_tracer_provider(TracerProvider())
HTTPXClientInstrumentor().instrument()  # as opentelemetry-instrument would: before Django loads
RequestsInstrumentor().instrument()
import django
django.setup()
import httpx, requests
from django.conf import settings
from django_observe import wiring
from django_observe.correlation import correlation_context

url = sys.argv[1]
with correlation_context("req_first"), trace.get_tracer("t").start_as_current_span("parent"):
    requests.get(url + "?c=requests", timeout=5)
    httpx.get(url + "?c=httpx", timeout=5)

    async def call():
        async with httpx.AsyncClient(timeout=5) as client:
            await client.get(url + "?c=async")

    asyncio.run(call())
    settings.DJANGO_OBSERVE = {**getattr(settings, "DJANGO_OBSERVE", {}), "CORRELATION_PROPAGATE": False}
    wiring.rebuild()  # propagation off: our wrappers pass through; the instrumentors' stay
    httpx.get(url + "?c=after", timeout=5)
"""


def test_libraries_instrumented_before_django_loads_still_get_both_headers(tmp_path, recorder):
    env = support.sqlite_env(tmp_path)
    support.run_python(INSTRUMENTED_FIRST, recorder.url + "/first", env=env)
    for client in ("requests", "httpx", "async"):
        headers = recorder.one(f"/first?c={client}")
        assert headers[HEADER] == "req_first" and TRACE_HEADER in headers, client
    after = recorder.one("/first?c=after")
    assert HEADER not in after and TRACE_HEADER in after


def test_an_id_that_is_not_a_valid_header_value_is_not_sent_and_the_call_succeeds(recorder, propagate):
    propagate()
    for i, bad in enumerate(("job 42", "job\r\nX-Injected: 1", "jöb")):
        with correlation_context(bad):
            assert requests.get(f"{recorder.url}/bad{i}", timeout=5).status_code == 200
            assert httpx.get(f"{recorder.url}/badx{i}", timeout=5).status_code == 200
        assert HEADER not in recorder.one(f"/bad{i}") and HEADER not in recorder.one(f"/badx{i}")
        assert "x-injected" not in recorder.one(f"/bad{i}")


def test_a_library_not_imported_at_startup_is_patched_on_its_first_import(tmp_path):
    """Installing imports nothing: httpx (about 5 MB) is patched when the application first imports it."""
    probe = (
        "import django, sys; django.setup()\n"
        "from django_observe.integrations import http_clients as propagation\n"
        "before = 'httpx' in sys.modules\n"
        "import httpx\n"
        "print(before, propagation.installed())\n"
        "ours = propagation._originals[(httpx.HTTPTransport, 'handle_request')][1]\n"
        "print(httpx.HTTPTransport.__dict__['handle_request'] is ours)\n"
    )
    env = support.sqlite_env(tmp_path)
    result = support.run_python(probe, env=env)
    first, second = result.stdout.splitlines()[-2:]
    assert first.startswith("False ") and "'httpx'" in first, result.stdout
    assert second == "True", result.stdout
