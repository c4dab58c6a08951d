"""A seeded corpus of secrets that carry no key name (planted in text around them) and of ordinary log lines
that hold none (IDs, hashes, UUIDs, URLs, SQL, prose about passwords and tokens).

Used by tests/unit/test_secret_shapes.py (0 misses, false positives counted), the hostile corpus (the bare
shapes end to end) and benchmarks/redaction.py (cost per line).

Every planted secret is returned with its *needle*: the part that must not survive redaction.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable
from urllib.parse import quote

ALNUM = string.ascii_letters + string.digits
UPPER = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
URLSAFE = ALNUM + "-_"

# The route a project declares secret in the tests (DJANGO_OBSERVE["LOG_REDACT_PATHS"]).
SECRET_ROUTE = "invite/<code>/accept/"


@dataclasses.dataclass(frozen=True)
class Planted:
    shape: str
    text: str
    needle: str


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(rng: random.Random, marker: str) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": marker, "iat": rng.randint(10**9, 2 * 10**9)}).encode())
    return f"{header}.{payload}.{_b64url(rng.randbytes(32))}"


def _pem(rng: random.Random, kind: str, newline: str) -> str:
    body = newline.join(_rand(rng, ALNUM + "+/", 64) for _ in range(4))
    return f"-----BEGIN {kind}PRIVATE KEY-----{newline}{body}{newline}-----END {kind}PRIVATE KEY-----"


def secret_shapes(rng: random.Random, marker: Callable[[], str]) -> list[tuple[str, str, str]]:
    """One of every shape: (shape name, text with the secret, needle). ``marker()`` gives a unique tag that
    is made part of each secret (letters and digits only)."""
    m = marker
    out: list[tuple[str, str, str]] = []

    def add(shape: str, text: str, needle: str) -> None:
        out.append((shape, text, needle))

    aws = "AKIA" + _rand(rng, UPPER, 16)
    add("aws-akia", aws, aws[4:])
    asia = "ASIA" + _rand(rng, UPPER, 16)
    add("aws-asia", asia, asia[4:])
    jwt = _jwt(rng, m())
    add("jwt", jwt, jwt.split(".", 1)[1])
    for prefix in ("sk-proj-", "sk-svcacct-", "sk-ant-api03-", "sk-ant-admin01-", "sk-or-v1-"):
        body = m() + _rand(rng, URLSAFE if "ant" in prefix else ALNUM, 40)
        add(prefix.rstrip("-"), prefix + body, body)
    body = m() + _rand(rng, ALNUM, 40)
    add("sk-legacy", "sk-" + body, body)
    for prefix in ("sk_live_", "rk_live_", "sk_test_", "whsec_"):
        body = m() + _rand(rng, ALNUM, 24)
        add(prefix.rstrip("_"), prefix + body, body)
    for prefix in ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"):
        body = m() + _rand(rng, ALNUM, 30)
        add(prefix.rstrip("_"), prefix + body, body)
    body = m() + _rand(rng, ALNUM + "_", 70)
    add("github_pat", "github_pat_" + body, body)
    body = m() + _rand(rng, URLSAFE, 16)
    add("glpat", "glpat-" + body, body)
    for prefix in ("xoxb-", "xoxp-", "xoxa-", "xapp-"):
        body = f"{rng.randint(10**9, 10**10)}-{rng.randint(10**9, 10**10)}-{m()}{_rand(rng, ALNUM, 20)}"
        add(prefix.rstrip("-"), prefix + body, body[-20:])
    body = m() + _rand(rng, URLSAFE, 30)
    add("google-api", "AIza" + body, body)
    body = m() + _rand(rng, URLSAFE, 40)
    add("google-oauth", "ya29." + body, body)
    for prefix in ("hf_", "npm_", "gsk_", "glsa_"):
        body = m() + _rand(rng, ALNUM, 32)
        add(prefix.rstrip("_"), prefix + body, body)
    body = "AgEIcHlwaS5vcmc" + m() + _rand(rng, URLSAFE, 60)
    add("pypi", "pypi-" + body, body)
    body = _rand(rng, HEX, 32)
    add("shopify", "shpat_" + body, body)
    body = _rand(rng, HEX, 64)
    add("digitalocean", "dop_v1_" + body, body)
    body = f"{m()}{_rand(rng, URLSAFE, 16)}.{_rand(rng, URLSAFE, 43)}"
    add("sendgrid", "SG." + body, body)
    hook = f"T{_rand(rng, UPPER, 8)}/B{_rand(rng, UPPER, 8)}/{m()}{_rand(rng, ALNUM, 16)}"
    add("slack-webhook", f"https://hooks.slack.com/services/{hook}", hook[-16:])
    for kind in ("RSA ", "EC ", "OPENSSH ", "", "ENCRYPTED "):
        for newline in ("\n", "\\n"):
            pem = _pem(rng, kind, newline)
            add(f"pem-{kind.strip().lower() or 'pkcs8'}", pem, pem[40:80])
    pw = m() + _rand(rng, ALNUM, 8)
    add("cli-password", f"psql --password {pw} --host db", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("cli-db-password", f"manage.py migrate --db-password '{pw} x'", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("cli-api-key", f"deploy -api-key {pw}", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("cli-token", f"gh auth login --with-token --token {pw}", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("prose-is", f"the password is {pw}", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("prose-was", f"Your new password was set to {pw}.", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("prose-token", f"api token is {pw} for now", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("prose-secret", f"client secret is '{pw}'", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("ruby-hash", f"{{:password => '{pw}'}}", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("php-array", f"['password' => \"{pw}\", 'user' => 'bob']", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("walrus", f"token := {pw}", pw)
    tok = m() + _rand(rng, ALNUM, 30)
    add("url-user-token", f"https://{tok}@github.com/org/repo.git", tok)
    tok = m() + _rand(rng, ALNUM, 30)
    add("url-x-access-token", f"https://x-access-token:{tok}@github.com/org/repo.git", tok)
    key = m() + _rand(rng, HEX, 28)
    add("sentry-dsn", f"https://{key}@o12345.ingest.sentry.io/678", key)
    pw = m() + _rand(rng, ALNUM, 8)
    add("dsn-encoded", "GET /r?q=" + quote(f"postgres://app:{pw}@db:5432/app", safe=""), pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("dsn-double-encoded", "GET /r?q=" + quote(quote(f"redis://:{pw}@cache:6379/0", safe=""), safe=""), pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("pair-encoded", "GET /r?note=" + quote(f"password={pw}", safe=""), pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("fullwidth-equals", f"password\uff1d{pw}", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("fullwidth-key", f"\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44={pw}", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("fullwidth-colon", f"token\uff1a {pw}", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("zero-width-key", f"pass\u200bword={pw}", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("zero-width-repr", repr({"note": f"pass\u200bword={pw}"}), pw)  # as ``%s`` of a dict logs it
    pw = m() + _rand(rng, ALNUM, 8)
    add("zero-width-joiner", f"api\u200d_key={pw}", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("soft-hyphen", f"to\u00adken={pw}", pw)
    pw = m() + _rand(rng, ALNUM, 8)
    add("bom-key", f"\ufeffsecret={pw}", pw)
    uid, tok = _rand(rng, ALNUM, 3), f"{m()}-{_rand(rng, HEX, 32)}"
    add("reset-route", f"Not Found: /accounts/reset/{uid}/{tok}/", tok)
    code = m() + _rand(rng, ALNUM, 20)
    add("declared-route", f"GET /team/invite/{code}/accept/ 200", code)
    return out


CONTEXTS = (
    lambda s: s,
    lambda s: f"upstream call failed with {s}; retrying in 2s",
    lambda s: json.dumps({"note": s, "page": 2}),
    lambda s: f"<WSGIRequest: GET '/api/v1/items?q={quote(s, safe='/:')}'>",
)


def planted(seed: int = 34, minimum: int = 100) -> list[Planted]:
    """At least ``minimum`` planted secrets: every shape, in turn bare, in prose, in JSON and in a query."""
    rng = random.Random(seed)
    counter = iter(range(10**6))
    out: list[Planted] = []
    round_ = 0
    while len(out) < minimum:
        for shape, text, needle in secret_shapes(rng, lambda: f"P{next(counter)}x"):
            context = CONTEXTS[round_ % len(CONTEXTS)] if "\n" not in text and "reset" not in shape else CONTEXTS[0]
            out.append(Planted(shape, context(text), needle))
        round_ += 1
    return out


def ordinary(seed: int = 34, count: int = 1000) -> list[str]:
    """``count`` log lines with no secret in them, of kinds that look like secrets to a careless pattern."""
    rng = random.Random(seed)
    kinds: list[Callable[[], str]] = [
        lambda: f"request {uuid.UUID(int=rng.getrandbits(128))} finished",
        lambda: f"correlation_id=req_{_rand(rng, HEX, 24)} status=200",
        lambda: f"trace_id={_rand(rng, HEX, 32)} span_id={_rand(rng, HEX, 16)}",
        lambda: f"commit {hashlib.sha1(rng.randbytes(8)).hexdigest()} deployed",
        lambda: f'etag W/"{hashlib.md5(rng.randbytes(8)).hexdigest()}"',
        lambda: f"image sha256:{hashlib.sha256(rng.randbytes(8)).hexdigest()} pulled",
        lambda: f"GET /api/v1/users/{rng.randint(1, 10**6)}/orders?page={rng.randint(1, 9)}&sort=-created 200",
        lambda: f"https://api.example.com/v2/items/{uuid.UUID(int=rng.getrandbits(128))}?expand=owner",
        lambda: f"postgres://db.internal:5432/app_{rng.randint(1, 99)} connected",
        lambda: "ssh://git@github.com/acme/shop.git fetched",
        lambda: f"redis://cache:6379/{rng.randint(0, 15)} ping ok",
        lambda: (
            f'SELECT "auth_user"."id", "auth_user"."username" FROM "auth_user" WHERE "auth_user"."id" = '
            f"{rng.randint(1, 10**5)} LIMIT 21"
        ),
        lambda: (
            f'UPDATE "django_session" SET "expire_date" = \'2026-0{rng.randint(1, 9)}-01\' WHERE "session_key" = %s'
        ),
        lambda: f"INSERT INTO orders (id, total) VALUES ({rng.randint(1, 10**6)}, {rng.randint(1, 999)}.99)",
        lambda: f"user {rng.randint(1, 10**5)} changed their password",
        lambda: f"password reset email sent to user {rng.randint(1, 10**5)}",
        lambda: "the password is too short",
        lambda: f"token refresh scheduled in {rng.randint(1, 60)}s",
        lambda: "the token is expired",
        lambda: f"api key is missing for tenant t{rng.randint(1, 99)}",
        lambda: f"chatcmpl-{_rand(rng, ALNUM, 29)} finished in {rng.randint(100, 9000)}ms",
        lambda: f"customer cus_{_rand(rng, ALNUM, 14)} charged ch_{_rand(rng, ALNUM, 24)}",
        lambda: f"arn:aws:iam::{rng.randint(10**11, 10**12 - 1)}:role/app-task-role assumed",
        lambda: f"s3://acme-uploads/{uuid.UUID(int=rng.getrandbits(128))}.png stored",
        lambda: f"model gpt-4o-mini-2024-07-18 used {rng.randint(1, 5000)} tokens",
        lambda: f"task-{_rand(rng, string.ascii_lowercase, 8)}-sk-worker started",
        lambda: f"cursor eyJwYWdlIjo{_rand(rng, ALNUM, 6)} next",
        lambda: f"channel C{_rand(rng, UPPER, 10)} message ts={rng.randint(10**9, 2 * 10**9)}.{rng.randint(0, 999999)}",
        lambda: f"version 1.{rng.randint(0, 40)}.{rng.randint(0, 9)} released",
        lambda: f"client 10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)} connected",
        lambda: f"email sent to user{rng.randint(1, 999)}@example.com",
        lambda: "/usr/lib/python3.12/site-packages/django/core/handlers/base.py line 197",
        lambda: f"cache key users:{rng.randint(1, 999)} missed",
        lambda: f"ls --key-size {rng.choice((2048, 4096))} --token-file /run/secrets/token",
        lambda: f"gunicorn --workers {rng.randint(1, 8)} --timeout 30 --keep-alive 5",
        lambda: f"Not Found: /api/items/{rng.randint(1, 999)}/",
        lambda: f"base64 payload {base64.b64encode(rng.randbytes(18)).decode()} decoded",
        lambda: f"Grüße aus Köln: order {rng.randint(1, 999)} shipped",
        lambda: f"{_rand(rng, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 20)} is the batch label",
        lambda: f"GET /static/app.{_rand(rng, HEX, 12)}.js 304",
    ]
    return [kinds[i % len(kinds)]() for i in range(count)]
