"""Keep secrets out of anything we emit: log lines of every logger, span attributes and events, health bodies.

One entry point, :func:`redact`, walks mappings and sequences (values under secret-named keys are replaced
whole), turns any other object into text with ``str()`` first and then removes secrets from the text with
:func:`redact_text` (URL passwords, ``key=value`` / ``"key": "value"`` pairs with a secret-named key,
``Bearer``/``Basic`` credentials).

A key is secret when one of its words (split on ``_ - .``, spaces and camelCase) is in :data:`SECRET_WORDS`
(Django's ``SafeExceptionReporterFilter`` list API, AUTH, TOKEN, KEY, SECRET, PASS, SIGNATURE, plus cookies,
sessions, ...), when a word ends with one of :data:`SECRET_SUFFIXES` (``dbpassword``, ``accesstoken``), or
when it is one of the extra keys of the ``LOG_REDACT_KEYS`` option.

Bracketed form keys (PHP and Rails nest form fields this way, and the brackets may arrive percent-encoded)
are judged by their last bracketed name: ``user[password]``, ``data[api_key]``, ``user%5Bpassword%5D`` and
``user[password][]`` are secret, ``password[hint]`` is not. Empty and numeric components are indexes and
are skipped (``key[0]`` is judged by ``key``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from .secret_shapes import Routes, compile_routes, may_hide, normalise, redact_shapes

__all__ = [
    "REDACTED",
    "SECRET_SUFFIXES",
    "SECRET_WORDS",
    "Redactor",
    "get_redactor",
    "is_secret_key",
    "redact",
    "redact_text",
    "redact_url",
]

REDACTED = "[REDACTED]"

# A key is secret when one of its words is one of these ...
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
        "pwd",
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
# ... or ends with one of these (``dbpassword``, ``authtoken``, ``accesstoken``, ``clientsecret``).
SECRET_SUFFIXES = (
    "password",
    "passwd",
    "passphrase",
    "token",
    "secret",
    "apikey",
    "secretkey",
    "privatekey",
    "sessionid",
    "cookie",
    "credentials",
)
# Fragments a secret key contains; a cheap first filter for pairs in free text (``is_secret_key`` decides).
_KEY_FRAGMENTS = (
    "api",
    "auth",
    "token",
    "key",
    "secret",
    "pass",
    "pwd",
    "signature",
    "cookie",
    "session",
    "csrf",
    "jwt",
    "credential",
    "dsn",
    "private",
)
_WORD_SPLIT = re.compile(r"[_\-.\s\[\]]+|(?<=[a-z0-9])(?=[A-Z])")
# Form keys: ``user[password]``, ``items[0][token]``, ``user%5Bpassword%5D`` (brackets percent-encoded).
_ENCODED_BRACKET_RE = re.compile(r"%5([bBdD])")
_FORM_KEY_RE = re.compile(r"[^\[\]]*(?:\[[^\[\]]*\])+")
_FORM_PART_RE = re.compile(r"\[\s*([^\[\]]*?)\s*\]")

# scheme://user:password@host; the password may hold ``@``, ``/`` and ``:`` (it ends at the last ``@``).
_URL_PASSWORD_RE = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s'\"<>]*):(?P<password>[^\s'\"<>]+)@"
)
# Authorization header values quoted in text: "Bearer abc.def" -> "Bearer [REDACTED]".
_AUTH_SCHEME_RE = re.compile(
    r"\b(?P<scheme>Bearer|Basic|Token|Digest)(?P<sep>(?:\s|%20|\+)+)(?P<credential>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE
)
# "Token" and "Basic" are English words too ("token refresh", "basic plan"): after them, a credential has a
# digit, ``=`` or both cases, or is long; an all-lowercase word is prose.
_WORDLIKE = re.compile(r"[a-z.-]{1,19}")
# Values that are placeholders, not secrets: SQL parameters (``"session_key" = %s``), Python format fields.
_PLACEHOLDERS = frozenset({"%s", "?", "%(password)s", "{}", "{password}"})


def _auth_scheme(m: re.Match[str]) -> str:
    if m["scheme"].lower() in ("token", "basic") and _WORDLIKE.fullmatch(m["credential"]):
        return m.group()
    return f"{m['scheme']} {REDACTED}"


# Text often arrives escaped or encoded once more: a repr or JSON text inside another string
# (``'{\\'password\\': \\'x\\'}'``), and URLs as Django prints them (``/reset/token%3Dx``,
# ``?q=%7B%22password%22%3A%22x%22%7D``). So a quote may carry backslashes or be ``%22``/``%27``, and
# ``%3D``/``%3A`` separate, ``%20`` is a space.
_QUOTE = r"\\*['\"]|%2[27]"
_SEP = r"(?:\s|%20)*(?:=>|:=|[=:]|%3[dDaA])(?:\s|%20)*"
# A key's characters: word characters, ``.``, ``-`` and the brackets of form keys. Percent-encoded brackets
# (``user%5Bpassword%5D``) cost the pass about a tenth more, so only text holding ``%5`` gets that pattern.
_KEY_CHARS = r"[\w.\[\]-]*"
_KEY_CHARS_ENCODED = r"[\w.\[\]-]*(?:%5[bd][\w.\[\]-]*)*"
# A value after the separator: quoted (up to the same closing quote, or the end of the line when it never
# closes), a list or tuple as Python prints them (``<QueryDict: {'password': ['x']}>``, up to its first closing
# bracket outside quotes, or the end of the line), or bare (up to a space, ``&``, ``,``, ``;`` or a quote).
_LIST = r"""\[(?:'[^'\n]*'|"[^"\n]*"|[^\]\n])*\]?|\((?:'[^'\n]*'|"[^"\n]*"|[^)\n])*\)?"""
_VALUE = rf"(?:(?P<quote>{_QUOTE})(?:(?!(?P=quote))(?:\\.|[^\n]))*(?P=quote)?|{_LIST}|[^\s&'\",;]+)"

MAX_DEPTH = 16
# Percent-encoded separators of a URL's user-info or of a pair: worth matching the decoded text.
_ENCODED_HINT = re.compile(r"%(?:25)?(?:3[aAdD]|40)")


def _form_key_name(key: str) -> str:
    """The name that decides whether a bracketed form key is secret: its last bracketed component that is not
    an index (``user[password]`` -> ``password``, ``user[password][]`` -> ``password``, ``key[0]`` -> ``key``).

    A key whose brackets do not pair up is returned decoded; its words are then split on the brackets.
    """
    if "%" in key:
        key = _ENCODED_BRACKET_RE.sub(lambda m: "[" if m[1] in "bB" else "]", key)
    if _FORM_KEY_RE.fullmatch(key) is None:
        return key
    for part in reversed(_FORM_PART_RE.findall(key)):
        if part and not part.isdigit():
            return part
    return key[: key.index("[")]


def _pair_pattern(extra: Iterable[str], key_chars: str = _KEY_CHARS) -> re.Pattern[str]:
    fragments = "|".join([*_KEY_FRAGMENTS, *(re.escape(k) for k in sorted(extra))])
    return re.compile(
        rf"(?P<kq>(?:{_QUOTE})?)(?P<key>(?:\b|(?<=%2[27])){key_chars}(?:{fragments}){key_chars})(?P=kq)(?P<sep>{_SEP})"
        rf"{_VALUE}",
        re.IGNORECASE,
    )


class Redactor:
    """Redaction with a given set of extra secret key names (``LOG_REDACT_KEYS``) and secret routes.

    Args:
        extra_keys: key names (case-insensitive) treated as secret besides the built-in list; an entry holding
            ``<`` is a route pattern whose placeholders are secret path segments (``LOG_REDACT_PATHS``, e.g.
            ``reset/<uidb64>/<token>/``), added to ``secret_shapes.BUILTIN_SECRET_ROUTES``.
    """

    __slots__ = ("extra_keys", "_pairs", "_encoded_pairs", "known_keys", "routes")

    def __init__(self, extra_keys: Iterable[str] = ()):
        extra_keys = [k for k in extra_keys if k]
        self.routes: Routes = compile_routes(k for k in extra_keys if "<" in k)
        self.extra_keys = frozenset(k.lower() for k in extra_keys if "<" not in k)
        self._pairs = _pair_pattern(self.extra_keys)
        self._encoded_pairs = _pair_pattern(self.extra_keys, _KEY_CHARS_ENCODED)
        self.known_keys: dict[str, bool] = {}

    def is_secret_key(self, key: str) -> bool:
        """True for ``password``, ``api_key``, ``Authorization``, ``Set-Cookie``, ``accessToken``, ``dbpassword``;
        false for ``tokens_used`` or ``monkey`` (words are compared, not substrings).

        A bracketed form key is judged by its last bracketed name: true for ``user[password]``,
        ``data[api_key]`` and ``user%5Bpassword%5D``, false for ``password[hint]``."""
        secret = self.known_keys.get(key)
        if secret is None:
            extra = self.extra_keys
            name = _form_key_name(key) if "[" in key or "%5" in key else key
            secret = key.lower() in extra or name.lower() in extra
            if not secret:
                for word in _WORD_SPLIT.split(name):
                    word = word.lower()
                    if word and (word in SECRET_WORDS or word.endswith(SECRET_SUFFIXES) or word in extra):
                        secret = True
                        break
            if len(self.known_keys) < 4096:
                self.known_keys[key] = secret
        return secret

    def redact_text(self, text: str) -> str:
        """Remove URL passwords, credentials after ``Bearer``/``Basic``, secret ``key=value`` pairs and the
        credential shapes of ``secret_shapes`` (typed API keys, JWTs, PEM keys, ``--password x``, prose).

        Text that is not ASCII is matched normalised (fullwidth forms, invisible characters); text holding a
        percent-encoded URL or pair is matched decoded too. Either way the text is returned as it came
        unless it held a secret.
        """
        if may_hide(text):
            normal = normalise(text)
            if normal != text:
                cleaned = self._redact_text(normal)
                return cleaned if cleaned != normal else text
        cleaned = self._redact_text(text)
        if "%" in cleaned and _ENCODED_HINT.search(cleaned):
            # A DSN or pair percent-encoded inside a query value (``?dsn=postgres%3A%2F%2Fapp%3As%40db``),
            # perhaps twice: matched decoded, and returned decoded when that found a secret.
            decoded = unquote(unquote(cleaned)) if "%25" in cleaned else unquote(cleaned)
            redecoded = self._redact_text(decoded)
            if redecoded != decoded:
                return redecoded
        return cleaned

    def _redact_text(self, text: str) -> str:
        text = redact_shapes(redact_url(text), self.is_secret_key, self.routes)
        text = _AUTH_SCHEME_RE.sub(_auth_scheme, text)
        if "=" not in text and ":" not in text and "%3" not in text:
            return text  # no separator, no pair (most messages)
        pairs = self._encoded_pairs if "%5" in text else self._pairs
        return pairs.sub(self._pair, text)

    def _pair(self, m: re.Match[str]) -> str:
        if not self.is_secret_key(m["key"]):
            # The value of a harmless key may quote a secret pair (``note='password=x'``): it is scanned too.
            text, split = m.group(), m.end("sep") - m.start()
            value = text[split:]
            if "=" in value or ":" in value or "%3" in value:
                return text[:split] + m.re.sub(self._pair, value)
            return text
        quote = m["quote"] or ""
        value = m.group()[m.end("sep") - m.start() :]
        if value in _PLACEHOLDERS or (value[:1] == "$" and value[1:].isdigit()):
            return m.group()
        return f"{m['kq']}{m['key']}{m['kq']}{m['sep']}{quote}{REDACTED}{quote}"

    def redact(self, value: Any, _depth: int = 0) -> Any:
        """``value`` with every secret removed; JSON-friendly types are kept, other objects become text.

        Mappings keep their keys (values under secret keys become ``[REDACTED]``); lists, tuples and sets
        become lists; strings, and any other object after ``str()``, go through :meth:`redact_text`.
        Structures deeper than ``MAX_DEPTH`` are replaced whole.
        """
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, str):
            return self.redact_text(value)
        if _depth >= MAX_DEPTH:
            return REDACTED
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                name = key if isinstance(key, str) else str(key)
                out[self.redact_text(name)] = REDACTED if self.is_secret_key(name) else self.redact(item, _depth + 1)
            return out
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self.redact(item, _depth + 1) for item in value]
        try:
            text = str(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"
        return self.redact_text(text)


@functools.lru_cache(maxsize=32)
def _redactor(extra_keys: frozenset[str]) -> Redactor:
    return Redactor(extra_keys)


def get_redactor(extra_keys: Iterable[str] = ()) -> Redactor:
    """The shared :class:`Redactor` for these extra keys and routes (compiled once)."""
    return _redactor(frozenset(k if "<" in k else k.lower() for k in extra_keys if k))


def is_secret_key(key: str, extra_keys: Iterable[str] = ()) -> bool:
    """True when values under ``key`` are secret (see :meth:`Redactor.is_secret_key`)."""
    return get_redactor(extra_keys).is_secret_key(key)


def redact_url(url: str) -> str:
    """Remove the password from a URL/DSN (``redis://:s3cret@host`` -> ``redis://:[REDACTED]@host``)."""
    if "://" not in url:
        return url
    return _URL_PASSWORD_RE.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", url)


def redact_text(text: str, extra_keys: Iterable[str] = ()) -> str:
    """Remove URL passwords and secret ``key=value`` pairs from free text (see :meth:`Redactor.redact_text`)."""
    return get_redactor(extra_keys).redact_text(text)


def redact(value: Any, extra_keys: Iterable[str] = ()) -> Any:
    """Remove secrets from any value: nested mappings and sequences, strings, objects (see :meth:`Redactor.redact`)."""
    return get_redactor(extra_keys).redact(value)
