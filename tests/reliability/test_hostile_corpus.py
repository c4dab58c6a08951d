"""The hostile corpus: secrets and forgeries planted in everything a request or a task brings, sent through
gunicorn and a Celery worker in every log format and flavour with tracing on.

Every secret is a marker ``PLANTED<n>x``, planted in the shapes redaction is there to catch (``password=``,
``token:``, ``Authorization: Bearer``, ``Cookie: sessionid=``, URL passwords holding ``@`` and ``/``,
``{'password': ...}`` reprs, secret-named keys at any depth, ``?api_key=`` in outbound URLs). Afterwards no
marker may appear in the web or worker output, in any exported span (names, attributes, events, status), in
a metrics scrape or in a health body; every line must be one JSON object (JSON runs) or one line of the text
grammar with known keys (text run), with no raw control or format character; and no request may answer 5xx
except the views that crash on purpose.

Each run also sends prompts holding markers to a local model server that answers 400 quoting the prompt (the
SDK's exception carries it: caught and logged with its traceback, or failing the request), and SQL parameters
holding markers; with content capture off no prompt text may come back through those error paths. The console
(``django_observe.console``, keeping every request) is searched too: its stored rows (``dumpdata``) and its
pages, rendered for a logged-in superuser (the overview for every period, every kept request and exception
group it links to).

Each run also plants every bare credential shape of tests/secret_corpus.py (AWS keys, JWTs, provider API
keys, Git and chat tokens, PEM blocks, ``--password x``, prose, URL user-info, percent-encoded DSNs, Unicode
look-alikes, zero-width characters, secret route segments), which carry no key name: each is looked for by
its needle (the secret part), in the same outputs and in the OTLP logs and metrics as well.

The demo views and task that log the input carelessly are ``hostile``, ``hostile_crash`` and
``echo_hostile`` in the test project.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import http.server
import json
import random
import re
import threading
import time
import unicodedata
from urllib.parse import quote

import pytest
import requests

from tests import secret_corpus, support, support_llm, support_otlp
from tests.support_load import Request, send_all

pytestmark = pytest.mark.integration

RUNS = (("json", "default"), ("json", "gcp"), ("json", "datadog"), ("json", "ecs"), ("text", "default"))
CASES_PER_RUN = 64
CONSOLE_USER = """
from django.contrib.auth.models import User
User.objects.create_superuser("corpus", "corpus@example.com", "corpus-console-pw")
"""
CONSOLE_LINK = re.compile(r'href="(/observe/(?:requests|exceptions)/[^"?#]+)"')
SEED = 18
HEALTH_TOKEN = "health-reader-token"
CRASHING_PATHS = ("/api/crash", "/api/hostile/crash")
MARKER = re.compile(r"PLANTED\d+x")

SECRET_KEYS = (
    "password",
    "passwd",
    "pwd",
    "token",
    "api_key",
    "apikey",
    "access_token",
    "accessToken",
    "refresh-token",
    "dbpassword",
    "authtoken",
    "secret",
    "secret_key",
    "private_key",
    "client_secret",
    "sessionid",
    "csrftoken",
    "jwt",
    "dsn",
    "X-Api-Key",
    "Authorization",
    "PASSWORD",
)
# Characters that must reach no line raw: C0, DEL, C1 (CSI), bidi overrides, zero-width, BOM.
CONTROLS = ("\x1b[2J", "\x07", "\x7f", "\u009b31m", "\u202e", "\u200b", "\u2066", "\ufeff", "\x00", "\u0085")


class Planter:
    """Hands out distinct markers and remembers them."""

    def __init__(self, start: int) -> None:
        self.next = start
        self.planted: list[str] = []

    def __call__(self) -> str:
        marker = f"PLANTED{self.next}x"
        self.next += 1
        self.planted.append(marker)
        return marker


def secret_texts(plant: Planter, rng: random.Random) -> str:
    """One secret in free text, in one of the shapes redaction documents."""
    key = rng.choice(SECRET_KEYS)
    shapes = (
        lambda: f"{key}={plant()}",
        lambda: f"{key}: {plant()}",
        lambda: f"{key}='correct horse {plant()}'",
        lambda: f'{key}="battery staple {plant()}"',
        lambda: f"{{'{key}': '{plant()}'}}",
        lambda: json.dumps({key: plant(), "page": 2}),
        lambda: f"postgres://app:p@ss/{plant()}@db.internal:5432/app",
        lambda: f"redis://:pa/ss@{plant()}@cache:6379/0",
        lambda: f"amqp://guest:{plant()}@rabbit:5672//",
        lambda: f"https://user:{plant()}@api.example.com/v1?x=1",
        lambda: f"Authorization: Bearer {plant()}",
        lambda: f"Bearer {plant()}",
        lambda: f"Basic {plant()}",
        lambda: f"Cookie: sessionid={plant()}; csrftoken={plant()}",
        lambda: f"retry with ?api_key={plant()}&page=2",
    )
    return rng.choice(shapes)()


def injection(n: int, rng: random.Random) -> str:
    """Text that would forge a field, a line or the request line's tail if it were rendered as it is."""
    return rng.choice(
        (
            f'a" injected{n}=1 user_id="admin',
            f"x\n2026-01-01 00:00:00 ERROR [forged] injected line (req_forged) injected{n}=1",
            f'{{"level":"error","logger":"forged","injected{n}":1}}\n{{"injected{n}":2}}',
            f"x\r\ninjected{n}=1",
            "/x (req_spoofed) - 1ms",
            f'tail\\" injected{n}=\\"1',
            f"{rng.choice(CONTROLS)}injected{n}=1{rng.choice(CONTROLS)}",
        )
    )


def nested(depth: int, leaf: object, rng: random.Random) -> object:
    value = leaf
    for level in range(depth):
        value = rng.choice(
            (
                {f"level{level}": value, "note": "ok"},
                [value, level],
                {"items": [{"meta": value}]},
            )
        )
    return value


@dataclasses.dataclass
class Corpus:
    requests: list[Request]
    planted: list[str]
    tasks: int
    needles: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (shape, needle) of bare shapes


def needle_of(text: str) -> str:
    """The longest run of letters and digits of a planted secret: what is looked for in the outputs (it reads
    the same percent-encoded, JSON-escaped or not)."""
    return max(re.findall(r"[A-Za-z0-9]+", text), key=len)


def bare_shapes(plant: Planter, rng: random.Random, hostile, cases: list[Request], ua) -> list[tuple[str, str]]:
    """Every shape of tests/secret_corpus.py, planted where careless code logs it: a query value, a JSON body,
    a header, an exception message, a failing task, a request path, the correlation ID header."""
    needles = []
    shapes = secret_corpus.secret_shapes(rng, plant)
    for i, (shape, text, needle) in enumerate(shapes):
        needles.append((shape, needle_of(needle)))
        where = i % 5
        header_safe = "\n" not in text and text.isascii()
        if shape in ("reset-route", "declared-route"):
            cases.append(Request("GET", text.split(" ")[1 if shape == "declared-route" else 2], (ua,)))
        elif where == 0:
            hostile("note=" + quote(text, safe=""))
        elif where == 1 or (where == 2 and not header_safe):
            hostile(body={"payload": {"note": text, "items": [text]}})
        elif where == 2:
            hostile(headers=(("X-Debug", text),))
        elif where == 3:
            hostile(query="dsn=" + quote(text, safe=""))
        else:
            hostile(body={"task": {"note": "ok", "fail": text}, "task_headers": {}})
    # Secret-shaped correlation IDs are refused (a new ID is made), so they reach no line.
    for shape, text, needle in shapes[:3]:
        hostile(headers=(("X-Correlation-ID", text),))
    return needles


def build_corpus(run: int, recorder_port: int, rng: random.Random) -> Corpus:
    """``CASES_PER_RUN`` requests: hand-written tricky cases first, then seeded random ones."""
    plant = Planter(run * 10_000 + 1)
    cases: list[Request] = []
    tasks = 0
    ua = ("User-Agent", "corpus/1.0")

    def hostile(query: str = "", headers: tuple = (), body: dict | None = None, path: str = "/api/hostile") -> None:
        method = "POST" if body is not None else "GET"
        data = json.dumps(body).encode() if body is not None else None
        hdrs = (ua, *headers) + ((("Content-Type", "application/json"),) if body is not None else ())
        cases.append(Request(method, path + (f"?{query}" if query else ""), hdrs, data))

    def outbound_url(extra: str = "") -> str:
        return f"http://127.0.0.1:{recorder_port}/hook?api_key={plant()}&token={plant()}&page=2{extra}"

    # Hand-written: one of each shape the issue names.
    hostile(f"password={plant()}&token={plant()}&page=2")
    hostile(quote(f"password='correct horse {plant()}'", safe="="))
    hostile("dsn=" + quote(f"postgres://app:p@ss/w{plant()}@db:5432/app", safe=""))
    hostile("dsn=" + quote(f"redis://:pa/ss@{plant()}@cache", safe=""))
    hostile(headers=(("Authorization", f"Bearer {plant()}"), ("Cookie", f"sessionid={plant()}; csrftoken={plant()}")))
    hostile(headers=(("X-Api-Key", plant()), ("Proxy-Authorization", f"Basic {plant()}")))
    hostile(headers=(("User-Agent", f'a" status=200 user_id="admin token={plant()}'),))
    hostile(
        body={"payload": {"password": plant(), "user": {"profile": {"secret_key": plant(), "dbpassword": plant()}}}}
    )
    hostile(body={"payload": nested(20, {"private_key": plant()}, rng)})  # deeper than redaction walks
    hostile(body={"payload": {"note": f"{{'password': '{plant()}'}}", "items": [f"token={plant()}", 7, None]}})
    hostile("url=" + quote(outbound_url(), safe=""))
    hostile("client=httpx&url=" + quote(outbound_url(), safe=""))
    hostile(
        body={
            "task": {"password": plant(), "fail": f"amqp://guest:{plant()}@rabbit//", "url": outbound_url()},
            "task_headers": {"x_correlation_id": f"token:{plant()}", "authorization": f"Bearer {plant()}"},
        }
    )
    hostile(
        body={
            "task": {"args": {"api_key": plant()}, "client": "httpx", "url": outbound_url()},
            "task_headers": {"x_correlation_id": f"x\r\ninjected0=1 password={plant()}"},
        }
    )
    tasks += 2
    hostile(headers=(("baggage", f"api_key={plant()},session_token={plant()},user=u1"),))
    hostile(headers=(("X-Correlation-ID", f"token:{plant()}"),))
    hostile(headers=(("X-Correlation-ID", f"password:{plant()}"), ("X-Request-ID", f"api_key:{plant()}")))
    hostile(path="/api/hostile/crash", query="dsn=" + quote(f"amqp://guest:{plant()}@rabbit:5672//", safe=""))
    # Prompts (the model server answers 400 quoting them) and SQL parameters: the view does not log them itself.
    hostile(body={"payload": {"note": "ok"}, "ask": f"Summarise the board memo {plant()} in three lines"})
    hostile(body={"payload": {"note": "ok"}, "ask": f"Check this config: {secret_texts(plant, rng)} ({plant()})"})
    hostile(path="/api/hostile/crash", body={"ask": f"Draft a reply to {plant()} about the invoice"})
    hostile(body={"payload": {"note": "ok"}, "lookup": plant()})
    hostile(body={"lookup": f"password={plant()}"})
    cases.append(Request("GET", f"/nope/password={plant()}?token={plant()}", (ua,)))
    cases.append(Request("GET", "/x%20(req_spoofed)%20-%201ms", (ua,)))
    cases.append(Request("GET", "/api/ping%E2%80%AE%C2%9B31m%0d%0ainjected0=1", (ua,)))
    cases.append(Request("GET", f"/api/work?marker=m&sleep_ms=0&access_token={plant()}", (ua,)))
    before = len(cases)
    needles = bare_shapes(plant, rng, hostile, cases, ua)
    tasks += sum(1 for case in cases[before:] if case.body and b'"task"' in case.body)

    # Seeded random cases.
    n = 1
    while len(cases) < CASES_PER_RUN + len(needles):
        n += 1
        kind = rng.choice(("query", "path", "header", "cookie", "agent", "exception", "extra", "task", "baggage"))
        text = secret_texts(plant, rng)
        if kind == "query":
            # Not ``dsn``: the view writes that parameter's bare value into an exception message and an
            # object's text, where no key names it (the bare shapes above test what that path catches).
            key = rng.choice([k for k in SECRET_KEYS if k != "dsn"])
            hostile(f"{quote(key)}={quote(plant())}&q={quote(injection(n, rng))}&note={quote(text)}")
        elif kind == "path":
            cases.append(
                Request(
                    "GET",
                    "/nope/"
                    + quote(f"{rng.choice(SECRET_KEYS)}={plant()}", safe="=")
                    + "/"
                    + quote(injection(n, rng), safe="")
                    + "?"
                    + quote(text, safe="=&"),
                    (ua,),
                )
            )
        elif kind == "header":
            hostile(headers=((rng.choice(("Authorization", "X-Auth-Token", "X-Debug", "X-Upstream")), text),))
        elif kind == "cookie":
            hostile(headers=(("Cookie", f"sessionid={plant()}; {rng.choice(('jwt', 'auth', 'csrftoken'))}={plant()}"),))
        elif kind == "agent":
            agent = f"Mozilla/5.0 ({text}) {injection(n, rng)}"
            hostile(
                headers=(("User-Agent", agent.encode("utf-8").decode("latin-1").replace("\n", " ").replace("\r", " ")),)
            )
        elif kind == "exception":
            path = rng.choice(("/api/hostile", "/api/hostile/crash"))
            hostile(path=path, query="dsn=" + quote(f"{text} {injection(n, rng)}", safe=""))
        elif kind == "extra":
            leaf = rng.choice(({rng.choice(SECRET_KEYS): plant()}, text, [text, {"Cookie": f"sessionid={plant()}"}]))
            hostile(body={"payload": nested(rng.randint(1, 6), leaf, rng), "note": injection(n, rng)})
        elif kind == "task":
            tasks += 1
            task = {rng.choice(SECRET_KEYS): plant(), "note": text, "text": injection(n, rng)}
            if rng.random() < 0.5:
                task["url"] = outbound_url()
            if rng.random() < 0.4:
                task["fail"] = secret_texts(plant, rng)
            headers = {"x_correlation_id": rng.choice((f"token:{plant()}", f"req_ok{n}", injection(n, rng)))}
            hostile(body={"task": task, "task_headers": headers})
        else:
            hostile(headers=(("baggage", f"{quote(rng.choice(SECRET_KEYS))}={plant()},tenant=t{n}"),))
    return Corpus(cases, plant.planted, tasks, needles)


class Recorder:
    """A loopback HTTP server that answers 200 and counts the outbound calls made to it."""

    def __init__(self) -> None:
        self.calls = 0
        lock = threading.Lock()
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                with lock:
                    recorder.calls += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", support.free_port()), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def __enter__(self) -> Recorder:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- what a line may look like

GUNICORN_MASTER = re.compile(
    r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[[A-Z]+\] "
    r"(Starting gunicorn [\d.]+|Listening at: http://127\.0\.0\.1:\d+ \(\d+\)|Using worker: \w+"
    r"|Booting worker with pid: \d+|Control socket listening at \S+|Handling signal: \w+|Shutting down: Master"
    r"|Worker \(pid:\d+\) was sent SIGTERM!)"
)
TEXT_LINE = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?P<level>[A-Z]+) \[(?P<logger>[\w.\\]+)\] "
    r'(?P<message>"(?:\\.|[^"\\])*"|[^\s="()]+(?: [^\s="()]+)*)?'
    r"(?: \((?P<cid>[\w.:@/+\\-]+)\))?(?: - (?P<duration>[\d.e+-]+)ms)?"
    r'(?P<fields>(?: [\w.:@/+\\-]+=(?:"(?:\\.|[^"\\])*"|[^\s"]+))*)'
)
TEXT_FIELD = re.compile(r' ([\w.:@/+\\-]+)=("(?:\\.|[^"\\])*"|[^\s"]+)')
# Every key a text line of this corpus may carry: our request, task, health and console fields, the demo's
# extras, Django's request records.
TEXT_KEYS = {
    "method",
    "path",
    "route",
    "status",
    "db_queries",
    "db_ms",
    "user_id",
    "task_id",
    "task_name",
    "parent_task_id",
    "root_task_id",
    "task_state",
    "status_code",
    "request",
    "payload",
    "headers",
    "cookies",
    "client",
    "marker",
    "check",
    "check_status",
    "data",
    "note",
    "error",  # the console flusher's warning when a write is refused (the batch is kept for the next flush)
    "alias",
}
# Lines Celery prints itself (not through logging): the banner before the worker is ready, the shutdown notes.
CELERY_BANNER = re.compile(r"\s*| ?-[-* ]*(?:\S.*)?|\s+\.> .*|\[tasks\]|  \. [\w.]+")
CELERY_SHUTDOWN = re.compile(
    r"|worker: (Warm|Cold) shutdown \(MainProcess\)|Process '[\w-]+' pid:\d+ exited with '[\w ()]+'"
)


def raw_controls(line: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in line if unicodedata.category(c) in ("Cc", "Cf") and c != "\t"]


def forged_in_json(line: str, problems: list[str]) -> None:
    try:
        event = json.loads(line)
    except ValueError:
        problems.append(f"not JSON: {line[:200]!r}")
        return
    if not isinstance(event, dict):
        problems.append(f"not an object: {line[:200]!r}")
        return
    forged = [k for k in event if k.startswith("injected") or k in ("forged",)]
    if forged or event.get("logger") == "forged" or event.get("logger.name") == "forged":
        problems.append(f"forged field {forged}: {line[:200]!r}")
    if event.get("user_id") == "admin" or event.get("usr.id") == "admin" or event.get("user.id") == "admin":
        problems.append(f"forged user: {line[:200]!r}")


def forged_in_text(line: str, problems: list[str]) -> None:
    if line.startswith("  | "):
        return  # a traceback line: it cannot pass for a log line
    match = TEXT_LINE.fullmatch(line)
    if match is None:
        problems.append(f"not a text line: {line[:200]!r}")
        return
    if match["logger"] == "forged":
        problems.append(f"forged logger: {line[:200]!r}")
    fields = TEXT_FIELD.findall(match["fields"])
    unknown = {key for key, _ in fields} - TEXT_KEYS
    if unknown:
        problems.append(f"unknown fields {sorted(unknown)}: {line[:200]!r}")
    if ("user_id", "admin") in fields or ("user_id", '"admin"') in fields:
        problems.append(f"forged user: {line[:200]!r}")


def line_problems(lines: list[str], fmt: str, process: str) -> list[str]:
    problems: list[str] = []
    ready = False
    for line in lines:
        if controls := raw_controls(line):
            problems.append(f"raw control characters {controls}: {line[:200]!r}")
        if process == "web" and GUNICORN_MASTER.fullmatch(line):
            continue  # gunicorn's master writes its own lines before and after our logging runs
        if process == "worker":
            if (not ready and CELERY_BANNER.fullmatch(line)) or CELERY_SHUTDOWN.fullmatch(line):
                continue
            ready = ready or " ready." in line
        if fmt == "json":
            forged_in_json(line, problems)
        else:
            forged_in_text(line, problems)
    return problems


# --- one server run


@dataclasses.dataclass
class RunResult:
    label: str
    cases: int
    planted: int
    bare: int
    bare_found: dict[str, int]
    leaks: list[str]
    forged: list[str]
    server_errors: list[str]
    spans: int
    lines: int
    seconds: float


def leaks_in(where: str, text: str) -> list[str]:
    return [f"{where}: {m.group()} in {text[max(0, m.start() - 80) : m.end() + 40]!r}" for m in MARKER.finditer(text)]


def scrape(port: int) -> str:
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200, response.text[:300]
    return response.text


def console_texts(run_dir, env: dict[str, str]) -> tuple[str, str]:
    """What the console stored (every row of its tables, as ``dumpdata`` writes them) and what it shows a
    superuser: the overview for every period and every kept request and exception group page it links to."""
    rows = support.manage("dumpdata", "observe_console", "--database=console", env=env).stdout
    assert '"model": "observe_console.keptrequest"' in rows and '"observe_console.exceptionoccurrence"' in rows
    support.manage("shell", "-c", CONSOLE_USER, env=env)
    quiet = {
        **env,
        "OTEL_ENABLED": "false",
        "METRICS_PORT": "0",
        "METRICS_WORKER_PORT": "0",
        "CONSOLE_SAMPLE_RATE": "0",
    }
    pages = []
    with support.gunicorn(quiet, run_dir / "console.log", workers=1) as web, requests.Session() as session:
        login = session.get(f"{web.url}/admin/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        session.post(
            f"{web.url}/admin/login/",
            data={"username": "corpus", "password": "corpus-console-pw", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{web.url}/admin/login/"},
            timeout=10,
        )
        # Every kept request and exception group the rows hold, and whatever the overview links to.
        stored = json.loads(rows)
        links = dict.fromkeys(
            [
                f"/observe/requests/{quote(r['fields']['correlation_id'], safe='')}"
                for r in stored
                if r["model"] == "observe_console.keptrequest"
            ]
            + [
                f"/observe/exceptions/{r['fields']['group']}"
                for r in stored
                if r["model"] == "observe_console.exceptionoccurrence"
            ]
        )
        for period in ("1h", "6h", "24h", "7d"):
            page = session.get(f"{web.url}/observe/?period={period}", timeout=30, allow_redirects=False)
            assert page.status_code == 200, (period, page.status_code)
            pages.append(page.text)
            links.update(dict.fromkeys(CONSOLE_LINK.findall(page.text)))
        for link in links:
            page = session.get(web.url + link, timeout=30, allow_redirects=False)
            assert page.status_code == 200, (link, page.status_code)
            pages.append(page.text)
    assert any("/observe/requests/" in link for link in links) and any("/exceptions/" in link for link in links)
    return rows, "\n".join(pages)


def run_one(tmp_path, index: int, fmt: str, flavor: str) -> RunResult:
    """One run; the console's tables in a fresh database of the shared PostgreSQL, on their own alias
    (``CONSOLE_DATABASE_URL``): on the run's SQLite file the writes of every process stalled the tasks."""
    console_db, drop = support.create_postgres_database()
    try:
        return _run_one(tmp_path, index, fmt, flavor, console_db)
    finally:
        drop()


def _run_one(tmp_path, index: int, fmt: str, flavor: str, console_db: str) -> RunResult:
    started = time.monotonic()
    label = f"{fmt}/{flavor}"
    rng = random.Random(SEED * 100 + index)
    run_dir = tmp_path / f"{fmt}-{flavor}"
    run_dir.mkdir()
    with (
        support_otlp.HttpReceiver() as otlp,
        Recorder() as recorder,
        support_llm.FakeLLM(status=400, echo_prompt=True) as llm,
    ):
        corpus = build_corpus(index, recorder.port, rng)
        web_metrics, worker_metrics = support.free_port(), support.free_port()
        env = support.sqlite_env(
            run_dir,
            LOG_FORMAT=fmt,
            LOG_JSON_FLAVOR=flavor,
            METRICS_PORT=str(web_metrics),
            METRICS_WORKER_PORT=str(worker_metrics),
            METRICS_ADDRESS="127.0.0.1",
            HEALTH_TOKEN=HEALTH_TOKEN,
            HEALTH_CHECKS=json.dumps([{"path": "tests.checks.LeaksDsnPassword", "id": "upstream", "critical": False}]),
            LOG_REDACT_PATHS=secret_corpus.SECRET_ROUTE,
            OTEL_LOGS_EXPORTER="otlp",
            OTEL_METRICS_EXPORTER="otlp",
            OTEL_METRIC_EXPORT_INTERVAL="500",
            OPENAI_BASE_URL=llm.base_url,
            TESTPROJECT_CONSOLE="1",  # every process records for the console
            CONSOLE_DATABASE_URL=console_db,
            CONSOLE_SAMPLE_RATE="1",  # every request kept, with its timeline and log lines
            CONSOLE_FLUSH_SECONDS="1",
            **support.tracing_to(otlp.endpoint),
        )
        support.manage("migrate", "observe_console", "--database=console", "-v0", env=env)
        worker = support.celery_worker(env, run_dir / "worker.log")
        web = support.gunicorn(env, run_dir / "web.log", workers=2)
        worker.start()
        try:
            web.start()
            support.wait_worker_ready(worker)
            responses = send_all(web.port, corpus.requests, concurrency=4)
            support.wait_until(
                lambda: worker.output().count("task_succeeded") + worker.output().count("task_failed") >= corpus.tasks,
                timeout=120,
                message=lambda: (
                    f"{label}: {corpus.tasks} tasks done (seen {worker.output().count('task_succeeded')} succeeded, "
                    f"{worker.output().count('task_failed')} failed, {worker.output().count('task_started')} started; "
                    f"{sum(r.status >= 500 for r in responses)} 5xx)"
                ),
            )
            bodies = []
            for path in ("/health", "/readyz", "/healthz", "/health/upstream", "/api/health", "/health/nope"):
                for headers in ({}, {"Authorization": f"Bearer {HEALTH_TOKEN}"}):
                    response = requests.get(web.url + path, headers=headers, timeout=10)
                    assert response.status_code in (200, 404, 503), (path, response.status_code)
                    bodies.append(f"{path} {headers and 'authorized'}: {response.text}")
            detail = requests.get(web.url + "/health/upstream", headers={"Authorization": f"Bearer {HEALTH_TOKEN}"})
            assert "[REDACTED]" in detail.text, detail.text  # the check ran and its message was redacted
            metrics = scrape(web_metrics) + scrape(worker_metrics)
        finally:
            stopping = threading.Thread(target=worker.stop)  # both drain at the same time
            stopping.start()
            web.stop()
            stopping.join()
        # Both processes have exited: each one's exit flush POSTed its last spans, and the receiver stores a batch
        # before it answers, so no span can arrive after this point (no sleep needed, none would be enough).
        spans = list(otlp.spans)
        otlp_logs = "\n".join(f"{log.body} {log.attributes}" for log in otlp.logs)
        otlp_metrics = "\n".join(f"{p.metric} {p.attributes}" for points in otlp.metric_exports for p in points)
    assert otlp_logs and otlp_metrics, "OTLP logs and metrics were exported"
    assert recorder.calls > 0, "the outbound calls were made"
    assert len(llm.requests) >= 3, "the prompts were sent to the model server"
    assert any(s.kind == 2 for s in spans) and any(s.name.startswith("run/") for s in spans), "both processes' spans"
    assert any(s.kind == 3 for s in spans) and any(s.events for s in spans), "client spans and exception events"
    web_out, worker_out = web.output(), worker.output()
    leaks = leaks_in("web stdout", web_out) + leaks_in("worker stdout", worker_out) + leaks_in("metrics", metrics)
    for body in bodies:
        leaks += leaks_in("health body", body)
    leaks += leaks_in("OTLP logs", otlp_logs) + leaks_in("OTLP metrics", otlp_metrics)
    for span in spans:
        leaks += leaks_in(f"span {span.name!r}", "\n".join(span.texts()))
    console_rows, console_pages = console_texts(run_dir, env)
    leaks += leaks_in("console rows", console_rows) + leaks_in("console pages", console_pages)
    sinks = {
        "console rows": console_rows,
        "console pages": console_pages,
        "web stdout": web_out,
        "worker stdout": worker_out,
        "metrics": metrics,
        "health bodies": "\n".join(bodies),
        "OTLP logs": otlp_logs,
        "OTLP metrics": otlp_metrics,
        "spans": "\n".join(text for span in spans for text in span.texts()),
    }
    bare_found = {sink: [] for sink in sinks}
    for sink, text in sinks.items():
        for shape, needle in corpus.needles:
            if needle in text:
                at = text.index(needle)
                bare_found[sink].append(f"{shape} in {sink}: {text[max(0, at - 80) : at + 40]!r}")
    leaks += [found for found in bare_found.values() for found in found]
    forged = line_problems(web_out.splitlines(), fmt, "web") + line_problems(worker_out.splitlines(), fmt, "worker")
    server_errors = [
        f"{r.status} {r.request.method} {r.request.path}"
        for r in responses
        if r.status >= 500 and not r.request.path.startswith(CRASHING_PATHS)
    ]
    assert "task_failed" in worker_out  # tasks failed with secrets in their exception messages
    return RunResult(
        label,
        len(corpus.requests),
        len(corpus.planted),
        len(corpus.needles),
        {sink: len(found) for sink, found in bare_found.items()},
        leaks,
        forged,
        server_errors,
        len(spans),
        len(web_out.splitlines()) + len(worker_out.splitlines()),
        time.monotonic() - started,
    )


def test_hostile_corpus_leaks_nothing_and_forges_nothing(tmp_path):
    started = time.monotonic()
    # Two runs at a time: each is one gunicorn (2 workers) and one Celery worker (2 children).
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(run_one, tmp_path, i, fmt, flavor) for i, (fmt, flavor) in enumerate(RUNS)]
        results = [f.result() for f in futures]
    cases = sum(r.cases for r in results)
    planted = sum(r.planted for r in results)
    leaks = [leak for r in results for leak in r.leaks]
    forged = [line for r in results for line in r.forged]
    errors = [error for r in results for error in r.server_errors]
    bare_by_sink = {sink: sum(r.bare_found[sink] for r in results) for sink in results[0].bare_found}
    print(f"bare credential shapes planted: {sum(r.bare for r in results)}; found per sink: {bare_by_sink}")
    for r in results:
        print(
            f"{r.label}: {r.cases} cases, {r.planted} planted, {len(r.leaks)} found, {len(r.forged)} forged, "
            f"{len(r.server_errors)} 5xx, {r.spans} spans, {r.lines} lines, {r.seconds:.1f}s"
        )
    print(
        f"hostile corpus: {cases} cases sent, {planted} secrets planted, planted secrets found: {len(leaks)}, "
        f"forged lines: {len(forged)}, 5xx: {len(errors)} ({time.monotonic() - started:.1f}s)"
    )
    assert cases >= 300
    assert not (leaks or forged or errors), "\n".join([*leaks[:30], *forged[:30], *errors[:10]])
