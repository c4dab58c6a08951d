"""Keep secrets out of anything we emit (health bodies, logs, span attributes).

The key pattern is Django's ``SafeExceptionReporterFilter.hidden_settings``
(API, AUTH, TOKEN, KEY, SECRET, PASS, SIGNATURE) plus cookies.
"""

from __future__ import annotations

import re

__all__ = ["REDACTED", "is_secret_key", "redact_text", "redact_url"]

REDACTED = "[REDACTED]"

SECRET_KEY_RE = re.compile(r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|COOKIE|CSRF|SESSION", re.IGNORECASE)

# scheme://user:password@host -> scheme://user:[REDACTED]@host
_URL_PASSWORD_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")
# key=value / key: value pairs whose key looks secret (libpq DSNs, query strings, messages).
_PAIR_RE = re.compile(
    r"(?P<key>\b[\w.-]*(?:api|auth|token|key|secret|pass|signature|cookie|session)[\w.-]*)"
    r"(?P<sep>\s*[=:]\s*)(?P<quote>['\"]?)(?P<value>[^\s&'\",;]+)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    """True for keys such as ``password``, ``api_key``, ``Authorization``, ``Set-Cookie``."""
    return bool(SECRET_KEY_RE.search(key))


def redact_url(url: str) -> str:
    """Remove the password from a URL/DSN (``redis://:s3cret@host`` -> ``redis://:[REDACTED]@host``)."""
    return _URL_PASSWORD_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", url)


def redact_text(text: str) -> str:
    """Remove URL passwords and ``secret_key=value`` pairs from free text."""
    text = redact_url(text)
    return _PAIR_RE.sub(lambda m: f"{m['key']}{m['sep']}{m['quote']}{REDACTED}", text)
