"""docs/security.md: an incoming correlation ID is at most 128 characters, whatever CORRELATION_ID_PATTERN allows.

The default pattern (``{1,128}``) caps the length by itself, so these tests use a project pattern without a limit:
only the policy's own cap stands between a 100,000-character header and every log line, span and response.
"""

import types

import pytest

from django_observe import correlation
from django_observe.correlation import get_correlation_id
from django_observe.integrations import celery as ci

UNBOUNDED = r"[A-Za-z0-9_]+"  # a project pattern with no length limit (the generated req_<hex> IDs match it)
AT_CAP, OVER_CAP, HUGE = "a" * 128, "a" * 129, "a" * 100_000


@pytest.mark.parametrize("pattern", [correlation.DEFAULT_PATTERN, UNBOUNDED])
def test_the_policy_accepts_128_characters_and_refuses_129(pattern):
    policy = correlation.CorrelationPolicy(pattern)
    assert policy.accept(AT_CAP) == AT_CAP
    assert policy.accept(OVER_CAP) is None
    assert policy.accept(HUGE) is None


@pytest.mark.django_db
def test_an_http_header_over_128_characters_is_replaced(observe, client):
    observe(CORRELATION_ID_PATTERN=UNBOUNDED)
    assert client.get("/api/ping", HTTP_X_CORRELATION_ID=AT_CAP)["X-Correlation-ID"] == AT_CAP
    for hostile in (OVER_CAP, HUGE):
        replaced = client.get("/api/ping", HTTP_X_CORRELATION_ID=hostile)["X-Correlation-ID"]
        assert replaced != hostile and replaced.startswith("req_") and len(replaced) == 28


class TaskRequest(dict):  # Celery's Context: a dict that takes attributes
    pass


def bound_in_task(header_value):
    task = types.SimpleNamespace(name="tasks.add", request=TaskRequest({ci.HEADER: header_value}))
    ci.on_prerun(task_id="t-cap", task=task)
    try:
        return get_correlation_id()
    finally:
        ci.on_postrun(task_id="t-cap", task=task, state="SUCCESS")


def test_a_celery_header_over_128_characters_is_replaced(observe):
    observe(CORRELATION_ID_PATTERN=UNBOUNDED)
    assert bound_in_task(AT_CAP) == AT_CAP
    for hostile in (OVER_CAP, HUGE):
        replaced = bound_in_task(hostile)
        assert replaced != hostile and replaced.startswith("req_") and len(replaced) == 28
