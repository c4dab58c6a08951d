"""JSON lines are the json module's text whichever encoder writes them (orjson when it gives the same)."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from django_observe.logging import renderers
from tests import support

scalars = st.one_of(
    st.text(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-5, 1e-4, 0.00015, 1e16, 1e15 + 0.5, -0.0, 0.1, "\x7f", "\u2028", "\x1b[31m", "é"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=3))
keys = st.one_of(st.text(max_size=12), st.sampled_from(["message", "path", "\x00", "ключ"]))


def reference(event):
    return json.dumps(event, default=str, separators=(",", ":"))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, values, max_size=8))
def test_same_text_as_the_json_module(event):
    assert renderers._dumps(event) == reference(event)


def test_objects_are_written_by_str_as_before():
    class Order:
        def __str__(self):
            return "order 7"

    event = {"order": Order(), "non_str_key": {1: 2}, "nan": math.nan}
    assert renderers._dumps(event) == reference(event)


def test_a_plain_request_line_is_written_by_orjson(monkeypatch):
    support.require_module("orjson")  # in the `test` extra; without it the renderer falls back to json
    assert renderers.orjson is not None
    calls = []
    monkeypatch.setattr(renderers, "_encode", lambda event: calls.append(event) or "")
    line = renderers._dumps({"message": "GET /ping", "status": 200, "duration_ms": 0.12, "db_ms": 0.0})
    assert line == '{"message":"GET /ping","status":200,"duration_ms":0.12,"db_ms":0.0}' and not calls
