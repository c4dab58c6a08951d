"""Correlation IDs and log lines, read from the real output of gunicorn, uvicorn, runserver and Celery."""

import http.client
import json
import re

import pytest
import requests

from tests import support, support_load

pytestmark = pytest.mark.integration

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (TRACE|DEBUG|INFO|WARNING|ERROR|CRITICAL) \[[^\]\s]+\] .*$")


def json_lines(output: str) -> list[dict]:
    """Every line our formatter wrote (gunicorn's master logs before Django loads, in its own format)."""
    lines = []
    for line in output.splitlines():
        if line.startswith("[") and "] [" in line[:40]:
            continue  # gunicorn master
        if not line or re.fullmatch(r"worker: (Warm|Cold) shutdown \(MainProcess\)", line):
            continue  # Celery writes this from its signal handler, straight to the terminal
        lines.append(json.loads(line))  # anything else must be one JSON object per line
    return lines


def raw_get(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path)
    for key, value in headers.items():
        conn.putheader(key, value)
    conn.endheaders()
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


@pytest.fixture(scope="module")
def gunicorn_json(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gunicorn-json")
    env = support.sqlite_env(tmp, LOG_FORMAT="json", LOG_LEVEL="INFO")
    with support.gunicorn(env, tmp / "out.log", workers=2) as server:
        yield server


def test_json_lines_carry_the_request_correlation_id(gunicorn_json):
    server = gunicorn_json
    response = requests.get(
        server.url + "/api/work?marker=m1&token=secret123", headers={"X-Correlation-ID": "req_abc123"}, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["X-Correlation-ID"] == "req_abc123"
    assert "Access-Control-Expose-Headers" not in response.headers  # same-origin: browsers do not read it
    cross = requests.get(server.url + "/api/work", headers={"Origin": "https://app.example"}, timeout=10)
    assert "X-Correlation-ID" in cross.headers["Access-Control-Expose-Headers"]
    lines = support.wait_until(
        lambda: [e for e in json_lines(server.output()) if e.get("correlation_id") == "req_abc123"],
        message="log lines of req_abc123",
    )
    app = [e for e in lines if e["logger"] == "api.chat"]
    assert [e["message"] for e in app] == ["work started", "work done"]
    assert all(e["marker"] == "m1" and e["level"] == "INFO" for e in app)
    (request_line,) = [e for e in lines if e["logger"] == "django_observe.request"]
    assert request_line["message"] == "GET /api/work"
    assert request_line["method"] == "GET" and request_line["path"] == "/api/work"
    assert request_line["route"] == "api/work" and request_line["status"] == 200
    assert isinstance(request_line["duration_ms"], float)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", request_line["timestamp"])
    assert "secret123" not in server.output()


def test_request_id_header_is_accepted_too(gunicorn_json):
    # http.client, not requests: once another test in this process has installed the outbound propagation,
    # requests would add an X-Correlation-ID of its own, which the server rightly prefers.
    response = raw_get(gunicorn_json.port, "/api/ping", {"X-Request-ID": "abc-42"})
    assert response.getheader("X-Correlation-ID") == "abc-42"


@pytest.mark.parametrize(
    "hostile",
    ["evil\x1b[31mRED", "x" * 5000, "req_1, req_2", "", "ünïcode", "a b", '"}{"level":"ERROR"'],
)
def test_hostile_correlation_header_is_replaced_and_never_logged(gunicorn_json, hostile):
    server = gunicorn_json
    response = raw_get(server.port, "/api/ping", {"X-Correlation-ID": hostile})
    if response.status == 400 and response.getheader("X-Correlation-ID") is None:
        # gunicorn itself refuses control characters in header values before Django runs.
        assert hostile not in server.output()
    else:
        assert response.status == 200
        new = response.getheader("X-Correlation-ID")
        assert re.fullmatch(r"req_[0-9a-f]{24}", new)
        support.wait_until(lambda: new in server.output(), message="request line of the replaced ID")
        if hostile:
            assert hostile not in server.output()
        json_lines(server.output())  # still one JSON object per line


def test_error_and_not_found_lines(gunicorn_json):
    server = gunicorn_json
    crash = requests.get(server.url + "/api/crash", headers={"X-Correlation-ID": "req_crash1"}, timeout=10)
    assert crash.status_code == 500
    assert crash.headers["X-Correlation-ID"] == "req_crash1"
    missing = requests.get(server.url + "/definitely/missing", headers={"X-Correlation-ID": "req_404"}, timeout=10)
    assert missing.status_code == 404
    lines = support.wait_until(
        lambda: (
            [
                e
                for e in json_lines(server.output())
                if e.get("logger") == "django_observe.request" and e.get("correlation_id") in {"req_crash1", "req_404"}
            ]
            or None
        ),
        message="error lines",
    )
    support.wait_until(
        lambda: (
            len(
                [
                    e
                    for e in json_lines(server.output())
                    if e.get("logger") == "django_observe.request"
                    and e.get("correlation_id") in {"req_crash1", "req_404"}
                ]
            )
            == 2
        ),
        message="both request lines",
    )
    lines = {
        e["correlation_id"]: e
        for e in json_lines(server.output())
        if e.get("logger") == "django_observe.request" and e.get("correlation_id") in {"req_crash1", "req_404"}
    }
    assert lines["req_crash1"]["level"] == "ERROR" and lines["req_crash1"]["status"] == 500
    assert lines["req_crash1"]["exception"][0]["type"] == "RuntimeError"
    assert lines["req_404"]["level"] == "WARNING" and lines["req_404"]["route"] == "__unmatched__"
    assert "hunter2" not in server.output()
    django_404 = [
        e
        for e in json_lines(server.output())
        if e.get("logger") == "django.request" and e.get("correlation_id") == "req_404"
    ]
    assert django_404, "Django's own Not Found line carries the ID too"


def test_successful_health_calls_are_not_logged(gunicorn_json):
    server = gunicorn_json
    for path in ("/healthz", "/readyz", "/health", "/api/health", "/health/database"):
        requests.get(server.url + path, headers={"X-Correlation-ID": "req_health"}, timeout=10)
    requests.get(server.url + "/api/ping", headers={"X-Correlation-ID": "req_after_health"}, timeout=10)
    support.wait_until(lambda: "req_after_health" in server.output(), message="marker line")
    request_lines = [e for e in json_lines(server.output()) if e.get("logger") == "django_observe.request"]
    assert not [e for e in request_lines if e.get("correlation_id") == "req_health"]


def test_text_format_under_runserver(tmp_path):
    env = support.sqlite_env(tmp_path, LOG_FORMAT="text", LOG_LEVEL="info")
    with support.runserver(env, tmp_path / "out.log") as server:
        requests.get(server.url + "/api/work?marker=t1", headers={"X-Correlation-ID": "req_text1"}, timeout=10)
        requests.get(
            server.url + "/api/work?marker=%0Afake%201999-01-01%2000:00:00%20INFO%20[x]%20forged",
            headers={"X-Correlation-ID": "req_text2"},
            timeout=10,
        )
        support.wait_until(lambda: server.output().count("GET /api/work (req_text") == 2, message="request lines")
    ours = [
        line
        for line in server.output().splitlines()
        if line
        and not line.startswith(
            # runserver's own banner (printed, not logged)
            (
                "Performing",
                "System",
                "Django version",
                "Starting",
                "Quit",
                "Watching",
                "WARNING: This is a",
                "For more information",
                "November",
                "December",
            )
        )
    ]
    assert all(TEXT_LINE.match(line) for line in ours), ours  # django.server's lines too
    done = [line for line in ours if "work done (req_text1)" in line]
    assert len(done) == 1 and done[0].endswith("marker=t1")
    request = [line for line in ours if "] GET /api/work (req_text1) - " in line]
    assert len(request) == 1
    assert re.search(
        r"\[django_observe\.request\] GET /api/work \(req_text1\) - [\d.]+ms method=GET "
        r"path=/api/work route=api/work status=200 db_queries=0 db_ms=0.0$",
        request[0],
    )
    assert not any(line.startswith("fake 1999") or "INFO [x] forged" in line.split("marker=")[0] for line in ours)
    assert any('marker="\\nfake 1999' in line for line in ours)


def test_log_level_from_the_environment(tmp_path):
    env = support.sqlite_env(tmp_path, LOG_FORMAT="json", LOG_LEVEL="warning")
    with support.gunicorn(env, tmp_path / "out.log", workers=1) as server:
        requests.get(server.url + "/api/work?marker=quiet", timeout=10)
        requests.get(server.url + "/missing-page", timeout=10)
        support.wait_until(lambda: "/missing-page" in server.output(), message="warning line")
        lines = json_lines(server.output())
    assert not [e for e in lines if e["level"] == "INFO"]
    assert [e for e in lines if e["level"] == "WARNING" and e.get("path") == "/missing-page"]


def test_invalid_log_level_fails_at_startup(tmp_path):
    env = support.sqlite_env(tmp_path)
    result = support.manage("check", env=dict(env, LOG_LEVEL="LOUD"), check=False)
    assert result.returncode != 0
    assert "environment variable LOG_LEVEL must be one of" in result.stderr
    assert '"trace"' in result.stderr and "'LOUD'" in result.stderr


def test_celery_task_and_child_inherit_the_request_id(tmp_path):
    env = support.sqlite_env(tmp_path, REDIS_URL=support.redis_url(7), LOG_FORMAT="json")
    with (
        support.gunicorn(env, tmp_path / "web.log", workers=1) as server,
        support.running_worker(env, tmp_path / "worker.log") as worker,
    ):
        response = requests.get(
            server.url + "/api/enqueue?chain=1&marker=c1", headers={"X-Correlation-ID": "req_abc123"}, timeout=10
        )
        assert response.status_code == 202
        support.wait_until(lambda: "child task ran" in worker.output(), timeout=20, message="child task")
        support.manage("shell", "-c", "from testproject.demo.tasks import add; add.delay(2, 3)", env=env)
        support.manage("shell", "-c", "from testproject.demo.tasks import fail; fail.delay('nope')", env=env)
        support.wait_until(lambda: worker.output().count('"task_failed"') == 1, timeout=20, message="failure")
        support.wait_until(lambda: worker.output().count('"task_succeeded"') >= 3, timeout=20, message="adds")
    lines = json_lines(worker.output())
    parent = next(e for e in lines if e["message"] == "parent task ran")
    child = next(e for e in lines if e["message"] == "child task ran")
    assert parent["correlation_id"] == child["correlation_id"] == "req_abc123"
    assert child["parent_task_id"] == parent["task_id"]
    assert child["root_task_id"] == parent["task_id"]
    assert parent["task_name"] == "testproject.demo.tasks.chain_parent"
    succeeded = [e for e in lines if e["message"] == "task_succeeded" and e.get("correlation_id") == "req_abc123"]
    assert len(succeeded) == 2 and all(isinstance(e["duration_ms"], float) for e in succeeded)
    # Work published with no request (a shell) gets a fresh ID of its own.
    add_start = next(e for e in lines if e["message"] == "task_started" and e["task_name"].endswith(".add"))
    assert re.fullmatch(r"req_[0-9a-f]{24}", add_start["correlation_id"])
    failed = next(e for e in lines if e["message"] == "task_failed")
    assert failed["level"] == "ERROR" and failed["exception"][0]["type"] == "RuntimeError"
    assert failed["correlation_id"] != "req_abc123"


def concurrent_ids(server, path: str, n: int = 120) -> None:
    plan = [support_load.Request("GET", f"{path}?marker=m{i}", (("X-Correlation-ID", f"req_c{i}"),)) for i in range(n)]
    responses = support_load.send_all(server.port, plan, concurrency=16)
    assert [r.status for r in responses] == [200] * n
    assert all(r.headers["x-correlation-id"] == f"req_c{i}" for i, r in enumerate(responses))
    support.wait_until(lambda: server.output().count('"work done"') >= n, message="all work lines")
    lines = [e for e in json_lines(server.output()) if e.get("message") in {"work started", "work done"}]
    assert len(lines) == 2 * n
    for event in lines:
        assert event["correlation_id"] == "req_c" + event["marker"][1:], event


def test_concurrent_requests_under_asgi_never_share_an_id(tmp_path):
    env = support.sqlite_env(tmp_path, LOG_FORMAT="json")
    with support.uvicorn(env, tmp_path / "out.log") as server:
        concurrent_ids(server, "/api/awork")


@pytest.mark.parametrize("access_log", [False, True], ids=["no-access-log", "access-log"])
def test_uvicorns_access_log_is_written_only_when_uvicorn_was_told_to(tmp_path, access_log):
    """``--no-access-log`` stays off (the request line says more); uvicorn's access lines, when on, are ours."""
    env = support.sqlite_env(tmp_path, LOG_FORMAT="json", LOG_LEVEL="INFO")
    with support.uvicorn(env, tmp_path / "out.log", access_log=access_log) as server:
        assert requests.get(server.url + "/api/ping", timeout=10).status_code == 200
        support.wait_until(
            lambda: any(e["logger"] == "django_observe.request" for e in json_lines(server.output())),
            message="the request line",
        )
        lines = json_lines(server.output())  # every line is JSON
    access = [e for e in lines if e["logger"] == "uvicorn.access"]
    assert any(e["logger"] == "uvicorn.error" for e in lines)  # uvicorn's own lines are routed to ours
    if access_log:
        assert [e["level"] for e in access] == ["INFO"]
        assert "/api/ping" in access[0]["message"]
    else:
        assert access == []


def test_concurrent_requests_under_threaded_wsgi_never_share_an_id(tmp_path):
    env = support.sqlite_env(tmp_path, LOG_FORMAT="json")
    with support.gunicorn(env, tmp_path / "out.log", workers=1, extra=("--threads", "8")) as server:
        concurrent_ids(server, "/api/work")


def test_gunicorn_config_module_formats_the_master_too(tmp_path):
    env = support.sqlite_env(tmp_path, LOG_FORMAT="json", METRICS_PORT=str(support.free_port()))
    server = support.gunicorn(env, tmp_path / "out.log", workers=2, extra=("-c", "python:django_observe.gunicorn"))
    with server:
        assert requests.get(server.url + "/api/ping", timeout=10).status_code == 200
        support.wait_until(lambda: "Booting worker" in server.output(), message="master lines")
    lines = [json.loads(line) for line in server.output().splitlines() if line.strip()]  # every line is JSON
    assert any(e["logger"] == "gunicorn.error" and e["message"].startswith("Starting gunicorn") for e in lines)
    assert any(e["logger"] == "django_observe.request" for e in lines)
    # gunicorn writes access lines whenever it is given a logging configuration; nobody asked for them here
    assert [e for e in lines if e["logger"] == "gunicorn.access"] == []


def test_gunicorn_config_module_keeps_an_access_log_that_was_asked_for(tmp_path):
    env = support.sqlite_env(tmp_path, LOG_FORMAT="json", METRICS_PORT=str(support.free_port()))
    extra = ("-c", "python:django_observe.gunicorn", "--access-logfile", "-")
    with support.gunicorn(env, tmp_path / "out.log", workers=1, extra=extra) as server:
        assert requests.get(server.url + "/api/ping", timeout=10).status_code == 200
        support.wait_until(
            lambda: any(e["logger"] == "gunicorn.access" for e in json_lines(server.output())), message="access line"
        )
        access = [e for e in json_lines(server.output()) if e["logger"] == "gunicorn.access"]
    assert len(access) == 1 and "/api/ping" in access[0]["message"]
