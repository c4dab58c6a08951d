"""The RQ integration's parts that need no worker: the job's meta, install/uninstall, the worker's role."""

import sys

import pytest

from django_observe.correlation import bind_correlation_id, correlation_context, reset_correlation_id
from django_observe.integrations import INTEGRATIONS
from django_observe.integrations import rq as rqi
from django_observe.process import process_role
from django_observe.runtime import get_runtime
from tests import support

support.require_module("rq")


@pytest.fixture
def installed():
    rqi.integration.install(get_runtime())
    yield
    rqi.integration.uninstall()


@pytest.fixture
def queue():
    from redis import Redis
    from rq import Queue

    return Queue("reports", connection=Redis(port=1))  # creating a job talks to no server


def test_it_is_in_the_table_and_available_only_when_the_project_uses_rq(monkeypatch):
    (row,) = [row for row in INTEGRATIONS if row.name == "rq"]
    assert row.row is rqi.integration  # deferred: the module is imported only for a project that uses RQ
    monkeypatch.delitem(sys.modules, "rq", raising=False)
    assert rqi.integration.available(None) is False  # importable, but neither installed nor imported
    assert row.available(None) is False
    monkeypatch.setitem(sys.modules, "rq", object())
    assert rqi.integration.available(None) is True
    assert row.available(None) is True


def test_the_job_carries_the_callers_correlation_id_beside_its_own_meta(installed, queue):
    with correlation_context("req_unit_1"):
        job = queue.create_job(print, args=("x",), meta={"mine": 1})
        positional = queue.create_job(print, ("x",), None, None, None, None, None, None, None, None, {"mine": 2})
    assert job.meta == {"mine": 1, rqi.META_KEY: {"correlation_id": "req_unit_1"}}
    assert positional.meta == {"mine": 2, rqi.META_KEY: {"correlation_id": "req_unit_1"}}


def test_nothing_is_added_outside_a_request_or_job(installed, queue):
    token = bind_correlation_id(None)  # whatever an earlier test left bound in this thread
    try:
        assert queue.create_job(print, args=("x",)).meta == {}
    finally:
        reset_correlation_id(token)


@pytest.mark.parametrize(
    ("argv", "role"),
    [
        (["/srv/.venv/bin/rq", "worker", "default"], "worker"),
        (["/srv/.venv/bin/rq", "worker-pool", "-n", "2"], "worker"),
        (["/srv/.venv/bin/rq", "info"], "command"),
        (["manage.py", "rqworker", "default"], "worker"),
        (["manage.py", "rqworker-pool", "default"], "worker"),
    ],
)
def test_an_rq_worker_has_the_worker_role(argv, role):
    assert process_role(argv) == role


# Secret-shaped IDs match the default ID pattern; only the secret-shape check refuses them (#34 finding 11).
SECRET_SHAPED_IDS = (
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA",
    "AKIAQWERTYUIOPASDFGH",
    "ghp_0123456789abcdef0123456789abcdef0123",
)


@pytest.mark.parametrize("incoming", [*SECRET_SHAPED_IDS, "token:s3cret"])
def test_a_jobs_secret_shaped_correlation_id_is_replaced_by_a_new_one(installed, queue, incoming):
    from django_observe.correlation import get_correlation_id

    job = queue.create_job(len, args=("x",))
    job.meta[rqi.META_KEY] = {"correlation_id": incoming}  # as an enqueuer outside the project writes it
    run = rqi._begin(job, queue)
    try:
        bound = get_correlation_id()
    finally:
        rqi._end(run, True)
    assert bound != incoming and bound.startswith("req_") and len(bound) == 28


def test_a_jobs_plain_correlation_id_is_kept(installed, queue):
    from django_observe.correlation import get_correlation_id

    plain = get_runtime().correlation.new()  # an ID the web would make, under whatever policy is installed
    job = queue.create_job(len, args=("x",))
    job.meta[rqi.META_KEY] = {"correlation_id": plain}
    run = rqi._begin(job, queue)
    try:
        assert get_correlation_id() == plain
    finally:
        rqi._end(run, True)
