"""The console end to end: two gunicorns (2 workers, and 1 standing in for a second host) write to one fresh
PostgreSQL database; a real browser (Playwright driving Debian's chromium) reads the pages.

``CONSOLE_SCREENSHOTS=docs/img`` saves the screenshots where docs/console.md shows them (default: tmp_path).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.support import (
    create_postgres_database,
    gunicorn,
    manage,
    missing,
    project_env,
    throwaway_postgres,
    wait_until,
)

pytestmark = pytest.mark.integration

SECRETS = ("hunter2", "s3cretpw", "tok-9f8e7d")
USERS = """
from django.contrib.auth.models import User
User.objects.create_superuser("root", "root@example.com", "rootpw")
User.objects.create_user("staffer", "staff@example.com", "staffpw", is_staff=True)
from django.contrib.auth.models import Permission
viewer = User.objects.create_user("viewer", "viewer@example.com", "viewerpw", is_staff=True)
viewer.user_permissions.add(Permission.objects.get(codename="view_console", content_type__app_label="observe_console"))
"""


def _browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed (pip install playwright)")
    chromium = shutil.which("chromium")
    if chromium is None:
        missing("Debian's chromium is not installed (apt-get install chromium)")
    return sync_playwright, chromium


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _row(html: str, key: str) -> list[str]:
    """The cells of the first table row whose first cell shows ``key``."""
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S):
        cells = [_text(c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
        if cells and cells[0] == key:
            return cells
    return []


def test_console_shows_the_whole_service_in_a_browser(tmp_path):
    sync_playwright, chromium = _browser()
    url, drop = create_postgres_database()
    shots = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path)
    env = project_env(
        DATABASE_URL=url,
        TESTPROJECT_CONSOLE="1",
        TESTPROJECT_VAR_DIR=str(tmp_path / "var"),
        CONSOLE_FLUSH_SECONDS="0.3",
        CELERY_TASK_ALWAYS_EAGER="1",
        LOG_LEVEL="info",
    )
    try:
        manage("migrate", "-v0", env=env)
        manage("shell", "-c", USERS, env=env)
        a = gunicorn(env, tmp_path / "a.log", workers=2)
        b = gunicorn(env, tmp_path / "b.log", workers=1)
        with a, b:
            # The known workload, spread over both "hosts".
            http = requests.Session()
            for i in range(30):
                assert http.get(f"{(a, b)[i % 2].url}/api/ping", timeout=10).status_code == 200
            for server in (a, b, a):
                crashed = http.get(f"{server.url}/api/crash", timeout=10)
                assert crashed.status_code == 500
            crash_id = crashed.headers["X-Correlation-ID"]
            slow = http.get(f"{b.url}/api/db-sleep?ms=1100", timeout=10)
            assert slow.status_code == 200
            slow_id = slow.headers["X-Correlation-ID"]
            assert http.get(f"{a.url}/api/users/report?n=12", timeout=10).status_code == 200
            assert http.get(f"{a.url}/api/enqueue?fail=1", timeout=10).status_code == 202
            assert http.get(f"{a.url}/api/stats", timeout=10).status_code == 200
            http.get(f"{a.url}/health", timeout=10)  # the health card: the checks' results now
            target = quote(f"{b.url}/api/ping", safe="")
            assert http.get(f"{a.url}/api/outbound?url={target}", timeout=10).status_code == 200
            secret_query = "dsn=postgres://app:s3cretpw@db/app&token=tok-9f8e7d&password=hunter2"
            assert http.get(f"{a.url}/api/hostile?{secret_query}", timeout=10).status_code == 200
            assert http.get(f"{b.url}/api/hostile/crash?{secret_query}", timeout=10).status_code == 500

            # Staff with the permission may look; staff without it is refused, an anonymous visitor sent to log in.
            assert _logged_in(a.url, "viewer", "viewerpw").get(f"{a.url}/observe/", timeout=10).status_code == 200
            staff = _logged_in(a.url, "staffer", "staffpw")
            refused = staff.get(f"{a.url}/observe/", timeout=10)
            assert refused.status_code == 403 and "api/ping" not in refused.text
            assert refused.headers["Content-Security-Policy"].startswith("default-src 'self'")
            assert refused.headers["X-Frame-Options"] == "DENY"
            posted = requests.post(f"{a.url}/observe/", timeout=10)  # the pages only read: refused first
            assert posted.status_code == 405 and "Content-Security-Policy" in posted.headers

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
                try:
                    _anonymous_sees_nothing(browser, a.url, slow_id)
                    _pages(browser, a.url, b.url, slow_id, crash_id, shots)
                finally:
                    browser.close()
    finally:
        drop()


def _logged_in(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    login = session.get(f"{base}/admin/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    session.post(
        f"{base}/admin/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/admin/login/"},
        timeout=10,
    )
    return session


def _anonymous_sees_nothing(browser, base, slow_id):
    page = browser.new_page()
    for path in ("/observe/", f"/observe/requests/{slow_id}", "/observe/?period=7d"):
        page.goto(base + path)
        assert "/admin/login/" in page.url
        html = page.content()  # the login page (its "next" field names the page asked for, nothing else)
        for data in ("GET api/", "RuntimeError", "pg_sleep", "Slowest", "Timeline"):
            assert data not in html
    page.close()


def _pages(browser, base, other, slow_id, crash_id, shots):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/admin/login/?next=/observe/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "rootpw")
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/observe/")
    # From here on, the console's pages only (the admin's login page has no static files under gunicorn).
    errors, hosts = [], set()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda request: hosts.add(re.match(r"\w+://([^/]+)", request.url).group(1)))

    def overview_complete() -> bool:
        page.goto(f"{base}/observe/?period=1h")
        html = page.content()
        ping, task = _row(html, "GET api/ping"), _row(html, "testproject.demo.tasks.fail")
        return ping[1:2] == ["31"] and task[1:3] == ["1", "1"] and slow_id in html and _crash_group(html) is not None

    # 30 pings plus the one the outbound call made; every process flushes every 0.3 s.
    try:
        wait_until(overview_complete, timeout=30, message="every process's requests on the overview")
    except AssertionError:
        html = page.content()
        seen = (_row(html, "GET api/ping"), _row(html, "testproject.demo.tasks.fail"), slow_id in html)
        raise AssertionError(f"the overview never showed the workload: {seen}, crash group {_crash_group(html)}")
    html = page.content()
    assert _row(html, "GET api/crash")[1:3] == ["3", "3"]
    assert _row(html, "GET api/db-sleep")[1] == "1"
    assert "SELECT pg_sleep(%s)" in _text(html)  # the slow statement, normalized
    assert _row(html, "GET api/users/report")[1] == "1"  # the N+1 route
    assert _row(html, other.removeprefix("http://"))[1] == "1"  # the outbound call, by host
    assert _row(html, "database")[1] == "pass"  # health now
    assert _row(html, "default")  # the cache card (the reads of /api/stats and of the health check)
    group = _crash_group(html)
    page.keyboard.press("Tab")  # keyboard: the skip link is the first stop
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.screenshot(path=str(shots / "console-overview.png"), full_page=True)
    for period in ("6h", "24h", "7d"):
        page.goto(f"{base}/observe/?period={period}")
        assert _row(page.content(), "GET api/ping")[1] == "31"
    _no_secrets(page.content())

    page.goto(f"{base}/observe/requests/{slow_id}")
    html = page.content()
    assert slow_id in html and "api/db-sleep" in html
    timeline = _text(html)
    assert "SELECT pg_sleep(%s)" in timeline and "EXPLAIN" in timeline
    page.screenshot(path=str(shots / "console-request.png"), full_page=True)
    _no_secrets(html)

    page.goto(f"{base}/observe/requests/{crash_id}")  # a failed request: its own log lines, by correlation ID
    html = page.content()
    assert "Internal Server Error: /api/crash" in html and "django.request" in html
    _no_secrets(html)

    page.goto(f"{base}/observe/exceptions/{group}")
    html = page.content()
    assert page.locator("#group-count").inner_text() == "3"
    assert "demo crash password=[REDACTED]" in html and slow_id not in html
    page.screenshot(path=str(shots / "console-exception.png"), full_page=True)
    _no_secrets(html)
    assert errors == []
    assert hosts == {base.removeprefix("http://")}
    page.close()


def _crash_group(html: str) -> str | None:
    """The exception group of /api/crash (3 occurrences) on the overview: its hash."""
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", html, re.S):
        link = re.search(r'href="/observe/exceptions/([0-9a-f]{32})"', row)
        cells = [_text(c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if link and "RuntimeError" in cells[0] and "views.py" in cells[0] and cells[1] == "3":
            return link.group(1)
    return None


def _no_secrets(html: str) -> None:
    for secret in SECRETS:
        assert secret not in html


def _console_requests(console_url: str) -> int:
    import psycopg

    try:
        with psycopg.connect(console_url.replace("postgres://", "postgresql://"), connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(count), 0) FROM observe_console_aggregate WHERE type = 'all' AND period = 60"
            ).fetchone()
    except psycopg.OperationalError:  # the restarted server is still recovering
        return -1
    return int(row[0])


def test_a_console_database_that_stops_loses_no_request(tmp_path):
    """The console on its own alias (a throwaway PostgreSQL), stopped mid-run: every request still succeeds, and
    the batches that could not be written are written once it is back."""
    with throwaway_postgres() as pg:
        env = project_env(
            SQLITE_PATH=str(tmp_path / "db.sqlite3"),
            TESTPROJECT_VAR_DIR=str(tmp_path / "var"),
            TESTPROJECT_CONSOLE="1",
            CONSOLE_DATABASE_URL=pg.url,
            CONSOLE_FLUSH_SECONDS="0.2",
        )
        manage("migrate", "-v0", env=env)
        manage("migrate", "observe_console", "--database=console", "-v0", env=env)
        with gunicorn(env, tmp_path / "g.log", workers=1) as server:
            http = requests.Session()

            def burst() -> None:
                for _ in range(10):
                    assert http.get(f"{server.url}/api/ping", timeout=10).status_code == 200

            burst()
            wait_until(lambda: _console_requests(pg.url) == 10, timeout=20, message="the first burst written")
            pg.stop()
            burst()  # the console's database is down: no request fails
            time.sleep(1.0)  # several flushes fail meanwhile
            pg.start()
            burst()
            wait_until(lambda: _console_requests(pg.url) >= 30, timeout=30, message="the held batches written")
            assert _console_requests(pg.url) == 30
            assert "Traceback" not in server.output()
