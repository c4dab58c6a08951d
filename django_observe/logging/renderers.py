"""The two line formats: JSON (production) and the seed's human text line (development)."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["JSONRenderer", "OrderedJSONRenderer", "TextRenderer", "escape"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(match: re.Match) -> str:
    ch = match.group()
    return _ESCAPES.get(ch) or f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def escape(text: str) -> str:
    """Escape control characters so user data can never start a new line or drive the terminal."""
    return _CONTROL.sub(_escape_char, text) if _CONTROL.search(text) else text


# Keys every line has, in this order; the event's own keys follow.
_JSON_HEAD = ("timestamp", "level", "logger", "message", "correlation_id")
# json.dumps(value, default=str, separators=(",", ":")) without building an encoder for every line.
_encode = json.JSONEncoder(default=str, separators=(",", ":")).encode

try:  # optional: about eight times cheaper than the json module for a request line
    import orjson
except ImportError:  # pragma: no cover - orjson is in the dev extra
    orjson = None


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
            ts,
            str(event_dict.get("level", "")),
            f"[{escape(str(event_dict.get('logger', '')))}]",
            escape(str(event_dict.get("message", ""))),
        ]
        line = " ".join(parts)
        cid = event_dict.get("correlation_id")
        if cid:
            line += f" ({escape(str(cid))})"
        duration = event_dict.get("duration_ms")
        if duration is not None:
            line += f" - {duration:g}ms" if isinstance(duration, (int, float)) else f" - {escape(str(duration))}ms"
        extras = [
            f"{escape(str(key))}={_value(value)}"
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
    text = escape(value if isinstance(value, str) else json.dumps(value, default=str))
    return f'"{text}"' if (" " in text or not text) else text
