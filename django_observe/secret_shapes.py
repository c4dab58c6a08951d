"""Secrets recognised by their shape, with no key name in front: cloud and provider API keys, Git and chat
tokens, JWTs, PEM private keys, passwords on command lines and in prose, user-info in URLs, and the route
segments a project declares secret (``reset/<uidb64>/<token>/``).

:func:`redact_shapes` is called by ``redaction.Redactor.redact_text`` on every text it cleans, so every sink
(log lines, OTLP logs, spans, health bodies, metric labels that go through redaction) gets it. It is one
precompiled alternation per family behind a cheap prefilter: most log text holds none of the prefixes and
costs a few substring scans.

Text that is not ASCII is first normalised (NFKC, so a fullwidth ``＝`` is ``=``; zero-width and other
invisible characters removed) before any matching; the normalised text is returned only when it held a
secret, other text is kept exactly as it came.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable

__all__ = ["BUILTIN_SECRET_ROUTES", "compile_routes", "may_hide", "normalise", "redact_shapes"]

REDACTED = "[REDACTED]"

# Typed tokens: (kept prefix, body). The prefix stays in the output (``ghp_[REDACTED]``) so a reader knows
# which credential was there; the body goes. Specific prefixes first (``sk-proj-`` before ``sk-``).
_TOKENS = (
    (r"(?:AKIA|ASIA|ABIA|ACCA)", r"[0-9A-Z]{16}(?![0-9A-Za-z])"),  # AWS access key IDs
    (r"sk-(?:proj|svcacct|admin|None)-", r"[A-Za-z0-9_-]{16,}"),  # OpenAI project/service keys
    (r"sk-ant-(?:[a-z]+\d\d-)?", r"[A-Za-z0-9_-]{16,}"),  # Anthropic
    (r"sk-or-v1-", r"[A-Za-z0-9]{16,}"),  # OpenRouter
    (r"sk-", r"(?=[A-Za-z_-]{0,80}\d)[A-Za-z0-9]{20,}(?![A-Za-z0-9_-])"),  # OpenAI legacy, DeepSeek, ...
    (r"(?:sk|rk)_(?:live|test)_", r"[A-Za-z0-9]{16,}"),  # Stripe secret and restricted keys
    (r"whsec_", r"[A-Za-z0-9+/=]{16,}"),  # Stripe webhook secrets
    (r"gh[pousr]_", r"[A-Za-z0-9]{30,}"),  # GitHub tokens
    (r"github_pat_", r"[A-Za-z0-9_]{30,}"),  # GitHub fine-grained tokens
    (r"glpat-", r"[A-Za-z0-9_-]{20,}"),  # GitLab
    (r"xox[abposer]-", r"[A-Za-z0-9-]{10,}"),  # Slack
    (r"xapp-", r"[A-Za-z0-9-]{20,}"),  # Slack app-level tokens
    (r"AIza", r"[0-9A-Za-z_-]{30,}"),  # Google API keys
    (r"ya29\.", r"[0-9A-Za-z_-]{20,}"),  # Google OAuth access tokens
    (r"hf_", r"[A-Za-z0-9]{30,}"),  # Hugging Face
    (r"npm_", r"[A-Za-z0-9]{30,}"),  # npm
    (r"pypi-", r"[A-Za-z0-9_-]{50,}"),  # PyPI
    (r"gsk_", r"[A-Za-z0-9]{30,}"),  # Groq
    (r"glsa_", r"[A-Za-z0-9_]{30,}"),  # Grafana service accounts
    (r"shp(?:at|ss|ca|pa)_", r"[a-fA-F0-9]{32}"),  # Shopify
    (r"dop_v1_", r"[a-f0-9]{64}"),  # DigitalOcean
    (r"SG\.", r"[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"),  # SendGrid
    (r"hooks\.slack\.com/services/", r"T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"),  # Slack webhook URLs
    (r"discord(?:app)?\.com/api/webhooks/", r"\d+/[A-Za-z0-9_-]{20,}"),  # Discord webhook URLs
)
# Substrings one of which every typed token holds; text with none of them skips its regular expression.
_TOKEN_HINTS = (
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "sk-",
    "sk_",
    "rk_",
    "whsec_",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xox",
    "xapp-",
    "AIza",
    "ya29.",
    "hf_",
    "npm_",
    "pypi-",
    "gsk_",
    "glsa_",
    "shp",
    "dop_v1_",
    "SG.",
    "hooks.slack",
    "/webhooks/",
)
_TOKEN_RE = re.compile(
    # The first character's class first: most positions fail on it without trying the alternation.
    r"(?=[AsrwgxyhnpdSGd])(?<![A-Za-z0-9])(?:"
    + "|".join(f"(?P<p{i}>{prefix}){body}" for i, (prefix, body) in enumerate(_TOKENS))
    + ")"
)
# JSON Web Tokens (JWS, JWE): base64url of ``{"`` starts the header and the payload.
_JWT_RE = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}(?:\.[A-Za-z0-9_-]*){1,3}")
# PEM private keys, up to their END line, or to the end of the text when it was cut off.
_PEM_RE = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----(?s:.*?-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|.*)"
)
# A URL whose user-info is a token with no password (``https://<token>@github.com``, Sentry DSNs): a
# user name of 16 or more characters is taken for one; ``ssh://git@host`` and ``postgres://app@db`` stay.
_URL_USER_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s'\"<>?#]{16,})@")

# Secret-named options on a command line (``--password x``, ``--db-password 'x y'``, ``-token x``);
# ``--password=x`` is a pair and handled with the pairs.
_OPTION_WORDS = r"pass|pwd|token|secret|key|credential|auth"
_CLI_RE = re.compile(
    rf"(?<![\w-])(?P<opt>--?(?P<key>(?=[A-Za-z])[\w-]*?(?:{_OPTION_WORDS})[\w-]*))(?P<sep>\s+)"
    r"(?P<value>'[^'\n]*'?|\"[^\"\n]*\"?|(?!-)[^\s'\"]+)",
    re.IGNORECASE,
)
# Prose: "the password is hunter2", "token was abc", "password => 'x'" is handled by the pairs. The word
# after ``is`` is kept when it says something about the secret rather than being it ("is too short").
_PROSE_WORDS = r"password|passwd|passphrase|pwd|secret|token|api[_ -]?key|private[_ -]?key|credentials?"
_STOPWORDS = (
    "a|an|the|not|no|too|now|still|also|only|always|never|being|been|set|unset|required|missing|empty|blank|"
    "invalid|incorrect|wrong|correct|valid|ok|okay|none|null|nil|undefined|used|reset|changed|weak|strong|short|"
    "long|enabled|disabled|present|absent|needed|ignored|hidden|redacted|revoked|rotated|stale|fine|good|bad|"
    "accepted|rejected|unknown|provided|supplied|configured|stored|saved|ready|available|unavailable|sent|"
    "requested|generated|refreshed|checked|verified|mandatory|optional|expired|expiring|about|at|in|of|for|from|"
    "to|on|by|with|yes|true|false|same|different|case|sensitive|shorter|longer|same|one|two|new|old|here|there|"
    "this|that|it|its|your|my|our|their|his|her|correctly|incorrectly|already|due|going|probably|likely|"
    "unchanged|encrypted|hashed|masked|stripped|removed|deleted|created|updated|issued|granted|denied|"
    r"\[REDACTED\]"
)
_PROSE_RE = re.compile(
    rf"(?<![\w-])(?P<key>(?:{_PROSE_WORDS})s?)(?P<sep>\s+(?:is|was|are|were|will\s+be|should\s+be)\s+"
    rf"(?:(?:set\s+to|now|still|changed\s+to)\s+)?)(?!(?:{_STOPWORDS})(?![\w-]))"
    r"(?P<value>'[^'\n]*'?|\"[^\"\n]*\"?|[^\s,;'\"]+)",
    re.IGNORECASE,
)

_PROSE_VERBS = (" is ", " was ", " are ", " were ", " be ", " IS ", " Is ")

# Route segments Django's own views put a secret in: the password-reset link.
BUILTIN_SECRET_ROUTES = ("reset/<uidb64>/<token>/",)
_PLACEHOLDER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>\w+)>")

# Invisible characters removed before matching: zero-width space/joiners, word joiner, BOM, soft hyphen,
# bidi marks and isolates.
_INVISIBLE = dict.fromkeys(
    [0x00AD, 0x180E, 0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF]
    + list(range(0x202A, 0x202F))
    + list(range(0x2066, 0x206A))
)


# The same characters as a repr or JSON escapes them (``{'k': 'pass\u200bword=x'}`` logged with ``%s``).
_ESCAPED_INVISIBLE = re.compile(r"\\+(?:u(?:00ad|180e|200[b-f]|202[a-e]|206[0-9]|feff)|xad)", re.IGNORECASE)


def may_hide(text: str) -> bool:
    """True when ``text`` holds characters :func:`normalise` would change (not ASCII, or escaped invisibles)."""
    return not text.isascii() or ("\\" in text and _ESCAPED_INVISIBLE.search(text) is not None)


def normalise(text: str) -> str:
    """``text`` as matching sees it: invisible characters (raw or escaped) removed, then NFKC (``ｐａｓｓ＝`` ->
    ``pass=``)."""
    if "\\" in text:
        text = _ESCAPED_INVISIBLE.sub("", text)
    return unicodedata.normalize("NFKC", text.translate(_INVISIBLE))


class Routes:
    """Compiled secret route patterns: ``reset/<uidb64>/<token>/`` redacts both placeholders wherever the
    route appears in text (``/accounts/reset/MQ/abc-123/`` -> ``/accounts/reset/[REDACTED]/[REDACTED]/``)."""

    __slots__ = ("literals", "regex")

    def __init__(self, routes: Iterable[str]):
        parts, literals = [], []
        for route in routes:
            route = route.lstrip("^/")
            if "<" not in route or route.startswith("<"):
                continue  # nothing to redact, or a route that would match everywhere (refused by conf)
            pattern, last = [], 0
            for m in _PLACEHOLDER.finditer(route):
                pattern.append(re.escape(route[last : m.start()]))
                pattern.append(_SEGMENT)
                last = m.end()
            pattern.append(re.escape(route[last:].rstrip("/")))
            literals.append(route[: route.index("<")])
            parts.append("".join(pattern))
        self.literals = tuple(literals)
        self.regex = re.compile("(?:(?<=/)|^)(?:" + "|".join(parts) + ")") if parts else None

    def sub(self, text: str) -> str:
        if self.regex is None or not any(lit in text for lit in self.literals):
            return text
        return self.regex.sub(_segments, text)


# One path segment, encoded or not (it ends at ``/``, the query, a space or a quote).
_SEGMENT = r"([^/?#\s'\"<>]+)"


def _segments(m: re.Match[str]) -> str:
    """The match with each placeholder's segment replaced."""
    text, pos = m.string, m.start()
    out: list[str] = []
    for i in range(1, (m.re.groups or 0) + 1):
        start, end = m.span(i)
        if start >= 0:
            out += (text[pos:start], REDACTED)
            pos = end
    out.append(text[pos : m.end()])
    return "".join(out)


def compile_routes(routes: Iterable[str]) -> Routes:
    """The :class:`Routes` for these route patterns plus :data:`BUILTIN_SECRET_ROUTES`."""
    return Routes((*BUILTIN_SECRET_ROUTES, *routes))


def _token(m: re.Match[str]) -> str:
    for prefix in m.groups():
        if prefix is not None:
            return prefix + REDACTED
    return REDACTED


def _cli(m: re.Match[str], is_secret_key: Callable[[str], bool]) -> str:
    # The option's last word decides: ``--db-password`` and ``--api-key`` are secret, ``--token-file`` and
    # ``--key-size`` are not.
    last = re.split(r"[-_]", m["key"])[-1]
    if not (last and is_secret_key(last)) or m["value"].startswith(REDACTED):
        return m.group()
    value = m["value"]
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{m['opt']}{m['sep']}{quote}{REDACTED}{quote}"


def _prose(m: re.Match[str]) -> str:
    value = m["value"]
    if value.startswith(REDACTED) or value.startswith("[") and value.endswith("]"):
        return m.group()
    quote = value[0] if value[:1] in ("'", '"') else ""
    end = "." if not quote and value.endswith(".") and len(value) > 1 else ""
    return f"{m['key']}{m['sep']}{quote}{REDACTED}{quote}{end}"


def redact_shapes(text: str, is_secret_key: Callable[[str], bool], routes: Routes | None = None) -> str:
    """``text`` with every credential shape replaced (see the module's docstring).

    Args:
        text: any text (ASCII or not; non-ASCII text is matched normalised).
        is_secret_key: decides whether a command-line option name is secret.
        routes: the secret route patterns (:func:`compile_routes`), or None for the built-in ones.
    """
    if routes is not None:
        text = routes.sub(text)
    if "eyJ" in text:
        text = _JWT_RE.sub(REDACTED, text)
    if "PRIVATE KEY" in text:
        text = _PEM_RE.sub(REDACTED, text)
    if "://" in text and "@" in text:
        text = _URL_USER_RE.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    if any(hint in text for hint in _TOKEN_HINTS):
        text = _TOKEN_RE.sub(_token, text)
    if " -" in text or text[:1] == "-":
        text = _CLI_RE.sub(lambda m: _cli(m, is_secret_key), text)
    if any(verb in text for verb in _PROSE_VERBS):
        text = _PROSE_RE.sub(_prose, text)
    return text
