"""A correlation ID arriving in Celery task headers passes the same policy as an HTTP header."""

import types

import pytest

from django_observe import celery_integration as ci
from django_observe.correlation import get_correlation_id


class _Request(dict):
    pass


def _task(header_value):
    return types.SimpleNamespace(name="tasks.add", request=_Request({ci.HEADER: header_value}))


@pytest.mark.parametrize(
    "value", ["a" * 300 + "\r\n" + "INFO forged line" + "b" * 11, "id with spaces", "x\x1b[2J", "", 42]
)
def test_hostile_header_is_replaced_by_a_new_id(value):
    ci.on_prerun(task_id="t-1", task=_task(value))
    try:
        bound = get_correlation_id()
        assert bound != value and bound.startswith("req_") and len(bound) == 28
    finally:
        ci.on_postrun(task_id="t-1", task=_task(value), state="SUCCESS")


def test_valid_header_is_bound():
    ci.on_prerun(task_id="t-2", task=_task("req_0123456789abcdef01234567"))
    try:
        assert get_correlation_id() == "req_0123456789abcdef01234567"
    finally:
        ci.on_postrun(task_id="t-2", task=_task(""), state="SUCCESS")


def test_project_pattern_is_used():
    from django_observe.correlation import CorrelationPolicy

    old = ci._policy
    ci._policy = CorrelationPolicy(r"job/[0-9]+", "job-")
    try:
        ci.on_prerun(task_id="t-3", task=_task("job/12"))
        assert get_correlation_id() == "job/12"
        ci.on_postrun(task_id="t-3", task=_task(""), state="SUCCESS")
    finally:
        ci._policy = old
