"""Keep secrets out of anything we emit (health bodies, logs, span attributes).

The key pattern is Django's ``SafeExceptionReporterFilter.hidden_settings``
(API, AUTH, TOKEN, KEY, SECRET, PASS, SIGNATURE) plus cookies.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "is_secret_key", "redact_text", "redact_url"]

REDACTED = "[REDACTED]"

# A key is secret when one of its words (split on _ - . and camelCase) is one of these.
SECRET_WORDS = frozenset(
    {
        "api",
        "apikey",
        "auth",
        "authorization",
        "token",
        "key",
        "secret",
        "pass",
        "passwd",
        "password",
        "passphrase",
        "signature",
        "cookie",
        "csrf",
        "csrftoken",
        "session",
        "sessionid",
        "jwt",
        "credential",
        "credentials",
        "dsn",
        "private",
    }
)
_WORD_SPLIT = re.compile(r"[_\-.\s]+|(?<=[a-z0-9])(?=[A-Z])")

# scheme://user:password@host -> scheme://user:[REDACTED]@host
_URL_PASSWORD_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")
# key=value / key: value pairs whose key looks secret (libpq DSNs, query strings, messages).
_PAIR_RE = re.compile(
    r"(?P<key>\b[\w.-]*(?:api|auth|token|key|secret|pass|signature|cookie|session)[\w.-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<quote>['\"]?)(?P<value>[^\s&'\",;]+)",
    re.IGNORECASE,
)


# Authorization header values quoted in text: "Bearer abc.def" -> "Bearer [REDACTED]".
_AUTH_SCHEME_RE = re.compile(r"\b(?P<scheme>Bearer|Basic|Token|Digest)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """True for keys such as ``password``, ``api_key``, ``Authorization``, ``Set-Cookie``, ``accessToken``;
    false for ``tokens_used`` or ``monkey`` (whole words are compared, not substrings)."""
    return any(word.lower() in SECRET_WORDS for word in _WORD_SPLIT.split(key) if word)


def redact_url(url: str) -> str:
    """Remove the password from a URL/DSN (``redis://:s3cret@host`` -> ``redis://:[REDACTED]@host``)."""
    return _URL_PASSWORD_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", url)


def redact_text(text: str) -> str:
    """Remove URL passwords and ``secret_key=value`` pairs from free text."""
    text = redact_url(text)
    text = _AUTH_SCHEME_RE.sub(lambda m: f"{m['scheme']} {REDACTED}", text)
    return _PAIR_RE.sub(
        lambda m: f"{m['key']}{m['sep']}{m['quote']}{REDACTED}" if is_secret_key(m["key"]) else m.group(), text
    )
