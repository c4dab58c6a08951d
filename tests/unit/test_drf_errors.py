"""Django REST framework's exception handler: its error responses still carry the correlation ID.

DRF is not a dependency of django-observe; the `test` extra installs it (without it: a skip locally, a failure in CI).
"""

import pytest
from django.test import Client

from tests import support

support.require_module("rest_framework")

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.unit.drf_urls")]


def test_drf_exception_handler_responses_carry_the_id(settings):
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    for kind, status in [("ok", 200), ("invalid", 400), ("denied", 403), ("missing", 404), ("throttled", 429)]:
        response = client.get(f"/drf/{kind}", HTTP_X_CORRELATION_ID=f"req_drf_{kind}")
        assert response.status_code == status, kind
        assert response["X-Correlation-ID"] == f"req_drf_{kind}"
    crash = client.get("/drf/crash", HTTP_X_CORRELATION_ID="req_drf_crash")
    assert crash.status_code == 500 and crash["X-Correlation-ID"] == "req_drf_crash"
    assert '<code id="correlation-id">req_drf_crash</code>' in crash.content.decode()
