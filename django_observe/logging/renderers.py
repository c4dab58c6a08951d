"""The two line formats: JSON (production) and the human text line (development)."""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = ["HUNDREDTHS", "JSONRenderer", "OrderedJSONRenderer", "TextRenderer", "escape", "quote"]

# Unicode categories Cc (C0, DEL, C1 including U+009B CSI) and Cf (bidi overrides, zero-width characters,
# soft hyphen, ...), the line and paragraph separators, and lone surrogates (stdout cannot encode them).
# Cf is listed as of Unicode 15 (a unit test compares it with the running interpreter's unicodedata).
_CONTROL_CLASS = (
    "\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
_CONTROL = re.compile(f"[{_CONTROL_CLASS}]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match) -> str:
    ch = match.group()
    code = ord(ch)
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape(text: str) -> str:
    """Escape control and format characters so user data can never start a new line, drive the terminal or
    reorder the text on screen (U+202E)."""
    return _CONTROL.sub(_escape_char, text) if _CONTROL.search(text) else text


# Characters that would let a value, key or the message pass for another part of the line.
# (whitespace that ``escape`` turns into ``\n``, ``\x1c``, ... does not need quotes)
_NEEDS_QUOTES = re.compile(r'["\\]|(?![\n\r\t\x0b\x0c\x1c-\x1f\x85\u2028\u2029])\s')
_MESSAGE_NEEDS_QUOTES = re.compile(r'[="\\()]| - |\s\s|^\s|\s$')
_UNSAFE_WORD = re.compile(r"[^\w.:@/+-]")


def _quoted(text: str) -> str:
    return '"' + escape(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _word(text: str) -> str:
    """A key, correlation ID or logger name: anything that is not a word character is escaped."""
    if _UNSAFE_WORD.search(text) is None:
        return text
    return _UNSAFE_WORD.sub(lambda m: "".join(f"\\x{b:02x}" for b in m.group().encode("utf-8")), text)


def _message(text: str) -> str:
    """The message as is when it cannot imitate a field, the ``(id)`` or the `` - Nms`` tail; quoted otherwise."""
    return escape(text) if _MESSAGE_NEEDS_QUOTES.search(text) is None else _quoted(text)


# Keys every line has, in this order; the event's own keys follow.
_JSON_HEAD = ("timestamp", "level", "logger", "message", "correlation_id")
# json.dumps(value, default=str, separators=(",", ":")) without building an encoder for every line.
_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode
# How json.dumps writes a str (ensure_ascii), in C: for lines written without an encoder's walk.
quote = encode_basestring_ascii
# f"{k // 100}{HUNDREDTHS[k % 100]}" is repr(k / 100) (and so json.dumps) for 0 <= k < 10**15, without the
# float's round and repr (tests/unit/test_json_lines.py checks it).
HUNDREDTHS = tuple(".0" if r == 0 else f".{r // 10}" if r % 10 == 0 else f".{r:02d}" for r in range(100))

orjson: Any = None
try:  # optional: about eight times cheaper than the json module for a request line
    import orjson as _orjson

    orjson = _orjson
except ImportError:  # pragma: no cover - orjson is in the test extra
    pass


def _dumps(event: dict) -> str:
    """``json.dumps(event, default=str, separators=(",", ":"))``, by orjson when it writes the same text.

    That is when every value is a plain str, int, bool, None or a float printed without an exponent
    (orjson writes ``1e-05`` as ``0.00001``), and the result is ASCII without DEL (``json`` escapes those,
    orjson does not); anything else, nested values included, goes to ``json``.
    """
    if orjson is not None:
        for value in event.values():
            kind = type(value)
            if kind is str or kind is int or kind is bool or value is None:
                continue
            if kind is float and (value == 0.0 or 1e-4 <= abs(value) < 1e16):  # NaN fails both
                continue
            break
        else:
            try:
                out = orjson.dumps(event)
            except TypeError:  # a key that is not a str, an int beyond 64 bits
                return _encode(event)
            if out.isascii() and b"\x7f" not in out:
                return out.decode()
    return _encode(event)


class JSONRenderer:
    """One JSON object per line, flat snake_case keys."""

    __slots__ = ()

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> str:
        ordered = {key: event_dict.pop(key) for key in _JSON_HEAD if key in event_dict}
        ordered.update(event_dict)
        return _dumps(ordered)


class OrderedJSONRenderer:
    """One JSON object per line, keys in the order the event has them (a flavour ordered them)."""

    __slots__ = ()

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> str:
        return _dumps(event_dict)


class TextRenderer:
    """``2026-03-05 14:30:00 INFO [api.chat] Chat request processed (req_abc123) - 1250ms key=value``.

    Control characters in the message and in values are escaped; a traceback follows on lines prefixed
    with ``  | `` so that it cannot pass for a log line of its own.

    Args:
        show_trace: append ``trace_id``/``span_id`` (shown only at debug level).
    """

    __slots__ = ("show_trace",)

    _SKIP = frozenset({"timestamp", "level", "logger", "message", "correlation_id", "duration_ms", "exception"})

    def __init__(self, show_trace: bool = False):
        self.show_trace = show_trace

    def __call__(self, logger: Any, method_name: str, event_dict: dict) -> str:
        ts = str(event_dict.get("timestamp", ""))
        ts = ts[:19].replace("T", " ") if len(ts) >= 19 else ts
        parts = [
            escape(ts),
            _word(str(event_dict.get("level", ""))),
            f"[{_word(str(event_dict.get('logger', '')))}]",
            _message(str(event_dict.get("message", ""))),
        ]
        line = " ".join(parts)
        cid = event_dict.get("correlation_id")
        if cid:
            line += f" ({_word(str(cid))})"
        duration = event_dict.get("duration_ms")
        if duration is not None:
            number = isinstance(duration, (int, float)) and not isinstance(duration, bool)
            line += f" - {duration:g}ms" if number else f" - {_word(str(duration))}ms"
        extras = [
            f"{_word(str(key))}={_value(value)}"
            for key, value in event_dict.items()
            if key not in self._SKIP and not (key in ("trace_id", "span_id") and not self.show_trace)
        ]
        if extras:
            line += " " + " ".join(extras)
        exception = event_dict.get("exception")
        if exception:
            text = exception if isinstance(exception, str) else json.dumps(exception, default=str)
            line += "\n" + "\n".join("  | " + escape(part) for part in text.splitlines())
        return line


def _value(value: Any) -> str:
    """Bare when it holds no space, quote or backslash; otherwise quoted with ``"`` and ``\\`` escaped."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and _NEEDS_QUOTES.search(text) is None:
        return escape(text)
    return _quoted(text)
