"""Hostile correlation headers and log injection, fuzzed in-process through the whole middleware stack."""

import io
import json
import logging
import re

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_observe.logging import JSONFormatter, TextFormatter

pytestmark = pytest.mark.django_db(transaction=True)

VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
fuzz = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Capture:
    def __init__(self, formatter):
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(formatter)
        self.loggers = [logging.getLogger("django_observe.request"), logging.getLogger("api.chat")]

    def __enter__(self):
        for logger in self.loggers:
            logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        for logger in self.loggers:
            logger.removeHandler(self.handler)

    def lines(self):
        return self.stream.getvalue().splitlines()


header_values = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="abc_:.-\n\r\x1b\x00\t ,;\"'{}", max_size=50),
    st.just("x" * 10_000),
)


@fuzz
@given(value=header_values, second=st.one_of(st.none(), header_values))
def test_any_correlation_header_gives_one_valid_id_and_one_clean_line(value, second):
    headers = {"HTTP_X_CORRELATION_ID": value}
    if second is not None:
        headers["HTTP_X_REQUEST_ID"] = second
    with Capture(JSONFormatter()) as capture:
        response = Client().get("/api/work", {"marker": "m"}, **headers)
    assert response.status_code == 200
    cid = response["X-Correlation-ID"]
    assert VALID.fullmatch(cid)
    if VALID.fullmatch(value) and len(value) <= 128:
        assert cid == value
    events = [json.loads(line) for line in capture.lines()]
    assert [e["logger"] for e in events] == ["api.chat", "api.chat", "django_observe.request"]
    assert all(e["correlation_id"] == cid for e in events)
    if cid != value and len(value.strip()) >= 8:  # short strings could occur in any JSON line by chance
        assert value not in capture.stream.getvalue()


@fuzz
@given(marker=st.text(max_size=200))
def test_user_controlled_text_cannot_forge_a_text_line(marker):
    with Capture(TextFormatter()) as capture:
        Client().get("/api/work", {"marker": marker})
    lines = capture.lines()
    assert len(lines) == 3  # work started, work done, the request line: nothing more
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR) \[", line) for line in lines)
    assert not any(ch in capture.stream.getvalue() for ch in "\r\x1b\x00\u2028")


def test_secrets_never_reach_the_logs():
    with Capture(JSONFormatter()) as capture:
        Client().get(
            "/api/work",
            {"marker": "m", "token": "tok123", "password": "pw123"},
            HTTP_AUTHORIZATION="Bearer abc.def",
            HTTP_COOKIE="sessionid=sess123",
        )
        Client().post(
            "/api/chat",
            data='{"message": "password=pw456"}',
            content_type="application/json",
            HTTP_AUTHORIZATION="Bearer notatoken",
        )
    text = capture.stream.getvalue()
    for secret in ("tok123", "pw123", "abc.def", "sess123", "notatoken"):
        assert secret not in text


def test_an_id_beyond_ascii_that_the_project_allows_goes_out_encoded(observe):
    # Only ASCII IDs go straight into the header store; Django encodes the rest (RFC 2047) and the log line
    # carries the ID as it came.
    observe(CORRELATION_ID_PATTERN=r"[\w-]{1,64}", CORRELATION_ID_PREFIX="id-")
    with Capture(JSONFormatter()) as capture:
        response = Client().get("/api/work", {"marker": "m"}, HTTP_X_CORRELATION_ID="日本-7")
    assert response.status_code == 200
    assert response["X-Correlation-ID"] == "=?utf-8?b?5pel5pysLTc=?="
    assert json.loads(capture.lines()[-1])["correlation_id"] == "日本-7"
    generated = Client().get("/api/work", {"marker": "m"})["X-Correlation-ID"]
    assert re.fullmatch(r"id-[0-9a-f]{24}", generated)
