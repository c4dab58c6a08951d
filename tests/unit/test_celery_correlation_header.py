"""A correlation ID arriving in Celery task headers passes the same policy as an HTTP header."""

import types

import pytest

from django_observe.correlation import get_correlation_id
from django_observe.integrations import celery as ci


class _Request(dict):
    pass


def _task(header_value):
    return types.SimpleNamespace(name="tasks.add", request=_Request({ci.HEADER: header_value}))


def _bound_for(task):
    ci.on_prerun(task_id="t-1", task=task)
    try:
        return get_correlation_id()
    finally:
        ci.on_postrun(task_id="t-1", task=task, state="SUCCESS")


@pytest.mark.parametrize(
    "value", ["a" * 300 + "\r\n" + "INFO forged line" + "b" * 11, "id with spaces", "x\x1b[2J", "", 42, "token:s3cret"]
)
def test_hostile_header_is_replaced_by_a_new_id(value):
    bound = _bound_for(_task(value))
    assert bound != value and bound.startswith("req_") and len(bound) == 28
    assert get_correlation_id() is None  # postrun restored the context


def test_valid_header_is_bound():
    assert _bound_for(_task("req_0123456789abcdef01234567")) == "req_0123456789abcdef01234567"


def test_project_pattern_is_used(observe):
    observe(CORRELATION_ID_PATTERN=r"job[-/][0-9a-f]+", CORRELATION_ID_PREFIX="job-")
    assert _bound_for(_task("job/12")) == "job/12"
    assert _bound_for(_task("req_0123456789abcdef01234567")).startswith("job-")
