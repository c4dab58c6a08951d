"""Pure pieces of the task-worker integrations: process roles, queue names, the heartbeat file, the carrier."""

import os
import types

from celery import Celery
from kombu import Queue

from django_observe.health.checks import configured_queues
from django_observe.integrations import celery as celery_integration
from django_observe.integrations import django_tasks
from django_observe.process import process_role


def test_task_workers_and_beat_have_their_roles():
    assert process_role(["manage.py", "db_worker", "--queue-name", "*"]) == "worker"
    assert process_role(["/venv/bin/celery", "-A", "proj", "beat"]) == "beat"
    assert process_role(["/venv/bin/celery", "-A", "proj", "worker", "-B"]) == "worker"
    assert process_role(["manage.py", "migrate"]) == "command"


def test_configured_queues_come_from_task_queues_or_the_default_queue():
    app = Celery("t")
    assert configured_queues(app) == ["celery"]
    app.conf.task_default_queue = "jobs"
    assert configured_queues(app) == ["jobs"]
    app.conf.task_queues = [Queue("b"), Queue("a")]
    assert configured_queues(app) == ["a", "b"]


def test_heartbeat_path_and_age(tmp_path):
    config = types.SimpleNamespace(celery_heartbeat_file=None)
    assert celery_integration.heartbeat_path(config).endswith(os.path.join("django_observe", "celery-worker.heartbeat"))
    assert celery_integration.heartbeat_path(types.SimpleNamespace(celery_heartbeat_file="off")) is None
    path = str(tmp_path / "hb")
    assert celery_integration.heartbeat_age(path) is None
    celery_integration._touch(path, "w1@host")
    os.utime(path, (1000.0, 1000.0))
    assert celery_integration.heartbeat_age(path, now=1012.5) == 12.5
    celery_integration._touch(path, "w1@host")  # touching an existing file only updates its time
    assert celery_integration.heartbeat_age(path) < 5


def test_the_reserved_argument_is_removed_before_the_function_runs():
    result = types.SimpleNamespace(kwargs={"label": "a", django_tasks.KWARG: {"correlation_id": "req_x"}})
    assert django_tasks._pop_carrier(result) == {"correlation_id": "req_x"}
    assert result.kwargs == {"label": "a"}
    assert django_tasks._pop_carrier(types.SimpleNamespace(kwargs={"label": "a"})) == {}
    hostile = types.SimpleNamespace(kwargs={django_tasks.KWARG: "not a dict"})
    assert django_tasks._pop_carrier(hostile) == {} and hostile.kwargs == {}
