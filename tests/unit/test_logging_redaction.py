"""Every record from any logger, in every format and JSON flavour, is redacted after its values become text."""

import io
import logging

import pytest
import structlog

from django_observe.logging import JSONFormatter, TextFormatter
from django_observe.logging.setup import configure_structlog

SECRETS = ("HDRTOKEN", "COOKIEVAL", "PAYLOADPW", "OBJPW", "OBJTOKEN", "SECRETQ", "PWQ", "ARGPW", "EXTRAKEYVAL")
FORMATTERS = [
    pytest.param(lambda: TextFormatter(redact_keys=("ssn",)), id="text"),
    *(
        pytest.param(lambda f=f: JSONFormatter(flavor=f, redact_keys=("ssn",)), id=f"json-{f}")
        for f in ("default", "gcp", "datadog", "ecs")
    ),
]


class _Holder:
    def __str__(self):
        return "https://u:OBJPW@h/?token=OBJTOKEN"


class _FakeRequest:  # renders like Django's WSGIRequest
    def __repr__(self):
        return "<WSGIRequest: GET '/nope?token=SECRETQ&password=PWQ'>"

    __str__ = __repr__


@pytest.fixture
def capture():
    def run(formatter, emit):
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        log = logging.getLogger("test.redaction")
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
        configure_structlog(otel_enabled=False)
        try:
            emit(log)
        finally:
            log.removeHandler(handler)
        return stream.getvalue()

    return run


def _emit(log):
    log.warning(
        "extras",
        extra={
            "headers": {"Authorization": "Bearer HDRTOKEN", "Cookie": "sessionid=COOKIEVAL"},
            "payload": {"password": "PAYLOADPW", "ssn": "EXTRAKEYVAL"},
            "holder": _Holder(),
            "request": _FakeRequest(),
        },
    )
    log.warning("args %s", {"password": "ARGPW"})
    structlog.get_logger("test.redaction").warning(
        "from structlog", headers={"Authorization": "Bearer HDRTOKEN"}, holder=_Holder(), ssn="EXTRAKEYVAL"
    )


@pytest.mark.parametrize("make", FORMATTERS)
def test_every_format_redacts_nested_extras_objects_and_args(capture, make):
    out = capture(make(), _emit)
    assert out.count("\n") == 3, out
    for secret in SECRETS:
        assert secret not in out, (secret, out)
    assert "[REDACTED]" in out


@pytest.mark.parametrize("make", FORMATTERS)
def test_django_request_logger_line_is_redacted(make, client, settings):
    """Django's own ``django.request`` warning for a 404 carries the request object as an extra."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make())
    log = logging.getLogger("django.request")
    old = (log.handlers[:], log.propagate, log.level)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.WARNING)
    try:
        client.get("/nope-not-a-route", {"token": "SECRETQ", "password": "PWQ"})
    finally:
        log.handlers[:], log.propagate, log.level = old
    out = stream.getvalue()
    assert "Not Found" in out
    assert "SECRETQ" not in out and "PWQ" not in out, out
