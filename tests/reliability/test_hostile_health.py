"""Hostile input against the health endpoints: every response is well formed, never a 500."""

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db(transaction=True)

HEALTH_PATHS = ["/healthz", "/readyz", "/health", "/api/health", "/health/database"]
header_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_characters="\x7f"), max_size=300
)
fuzz = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def well_formed(response):
    assert response.status_code < 500 or response.status_code == 503, response.status_code
    if response.status_code != 400:  # Django's own DisallowedHost/bad request page is HTML
        body = json.loads(response.content)
        assert isinstance(body, dict) and "status" in body
    assert response["Cache-Control"] == "no-store" or response.status_code == 400


@fuzz
@given(path=st.sampled_from(HEALTH_PATHS), accept=header_text)
def test_any_accept_header(path, accept):
    well_formed(Client().get(path, HTTP_ACCEPT=accept))


@fuzz
@given(query=st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=4))
def test_any_query_parameters(query):
    well_formed(Client().get("/health", query))


@fuzz
@given(check_id=st.text(max_size=80).filter(lambda s: not set(s) & set("/#?%") and s.strip() == s and s))
def test_any_check_id(check_id):
    response = Client().get("/health/" + check_id)
    assert response.status_code in {200, 404, 503}
    if response.status_code == 404:
        body = json.loads(response.content)
        assert body["error"] == "Unknown health check"  # the unknown id is never echoed
        assert "checks" not in body  # the list of ids is for authorized callers


@fuzz
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "FOO", "PROPFIND"]),
    path=st.sampled_from(HEALTH_PATHS),
)
def test_any_method(method, path):
    response = Client().generic(method, path)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


@fuzz
@given(token=st.text(max_size=200))
def test_any_authorization_header(token):
    well_formed(Client().get("/health", HTTP_AUTHORIZATION=token))
    well_formed(Client().get("/health", HTTP_AUTHORIZATION="Bearer " + token))


def test_oversized_headers():
    response = Client().get(
        "/health", HTTP_ACCEPT="application/health+json;" * 2000, HTTP_AUTHORIZATION="Bearer " + "x" * 100_000
    )
    well_formed(response)
