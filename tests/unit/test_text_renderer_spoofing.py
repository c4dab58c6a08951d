"""The text line cannot be spoofed: one line, no control/format characters, no injected fields or tail."""

import re
import sys
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from django_observe.logging.renderers import TextRenderer, _word

LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?P<level>\S+) \[(?P<logger>[^\]\s]*)\] "
    r'(?P<message>"(?:\\.|[^"\\])*"|[^="()]*?)'
    r"(?: \((?P<cid>[^()\s]+)\))?(?: - (?P<duration>\S*)ms)?"
    r'(?P<fields>(?: [^\s="]+=(?:"(?:\\.|[^"\\])*"|[^\s"]*))*)$'
)
FIELD = re.compile(r' ([^\s="]+)=(?:"(?:\\.|[^"\\])*"|[^\s"]*)')
SKIP = {"timestamp", "level", "logger", "message", "correlation_id", "duration_ms", "exception", "trace_id", "span_id"}


def render(**event):
    event.setdefault("timestamp", "2026-03-05T14:30:00.123Z")
    event.setdefault("level", "INFO")
    event.setdefault("logger", "api.chat")
    return TextRenderer()(None, "info", event)


def parse(line):
    match = LINE.match(line)
    assert match, line
    return match, {m.group(1) for m in FIELD.finditer(match["fields"])}


def test_every_cc_and_cf_character_is_escaped():
    bad = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) in ("Cc", "Cf")]
    line = render(message="".join(bad), value="".join(bad))
    assert not [c for c in line if unicodedata.category(c) in ("Cc", "Cf", "Cs")]


def test_csi_bidi_and_zero_width_are_escaped():
    line = render(message="a\u009b31mb\u202ec\u200bd", path="/x\u009b\u202e")
    assert "\u009b" not in line and "\u202e" not in line and "\u200b" not in line
    assert "\\x9b" in line and "\\u202e" in line


def test_quote_inside_a_value_cannot_add_fields():
    line = render(message="m", user='a" status=200 user_id="admin')
    _, keys = parse(line)
    assert keys == {"user"}, line


def test_path_cannot_imitate_the_id_and_duration():
    line = render(message="GET /x (req_spoofed) - 1ms", correlation_id="req_real", duration_ms=3, path="/x")
    match, keys = parse(line)
    assert match["cid"] == "req_real" and match["duration"] == "3", line
    assert keys == {"path"}


def test_seed_line_is_unchanged():
    line = render(message="Chat request processed", correlation_id="req_abc123", duration_ms=1250, user_id="u_4")
    assert line == "2026-03-05 14:30:00 INFO [api.chat] Chat request processed (req_abc123) - 1250ms user_id=u_4"


_ANY = st.text(max_size=40)
_KEYS = st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k not in SKIP), _ANY, max_size=4)


@settings(max_examples=300, deadline=None)
@given(message=_ANY, logger=_ANY, cid=st.one_of(st.none(), _ANY), duration=st.one_of(st.none(), _ANY), extra=_KEYS)
def test_arbitrary_fields_render_one_parseable_line(message, logger, cid, duration, extra):
    line = render(message=message, logger=logger, correlation_id=cid, duration_ms=duration, **extra)
    assert len(line.splitlines()) <= 1 and "\n" not in line
    assert not [c for c in line if unicodedata.category(c) in ("Cc", "Cf", "Cs")]
    match, keys = parse(line)
    assert keys == {_word(k) for k in extra}
    assert (match["cid"] is not None) == bool(cid)
    assert (match["duration"] is not None) == (duration is not None)
