"""Pure pieces of the task-worker integrations: process roles, queue names, the heartbeat file, the carrier."""

import os
import types

import pytest
from celery import Celery
from kombu import Queue

from django_observe.health.checks import configured_queues
from django_observe.integrations import _celery_worker, django_tasks
from django_observe.integrations import celery as celery_integration
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
    config = types.SimpleNamespace(celery_heartbeat_file=None, service_name="shop")
    private = _celery_worker.heartbeat_dir()
    assert private.endswith(f"django_observe-{os.geteuid()}") or private.endswith(os.path.join("", "django_observe"))
    # One file per project and per worker (its node name) in the private directory.
    one, two = (celery_integration.heartbeat_path(config, name) for name in ("w1@host", "w2@host"))
    assert one != two and os.path.dirname(one) == os.path.dirname(two) == private
    assert one.endswith("celery-worker-shop-w1@host.heartbeat")
    other = types.SimpleNamespace(celery_heartbeat_file=None, service_name="blog/x")  # one file per project
    assert celery_integration.heartbeat_path(other, "w1@host").endswith("celery-worker-blog_x-w1@host.heartbeat")
    assert celery_integration.heartbeat_path(types.SimpleNamespace(celery_heartbeat_file="off")) is None
    path = str(tmp_path / "hb")
    assert celery_integration.heartbeat_age(path) is None
    _celery_worker.touch(path, "w1@host")
    os.utime(path, (1000.0, 1000.0))
    assert celery_integration.heartbeat_age(path, now=1012.5) == 12.5
    _celery_worker.touch(path, "w1@host")  # touching an existing file only updates its time
    assert celery_integration.heartbeat_age(path) < 5


def test_a_planted_link_is_never_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    directory = tmp_path / "hb"
    directory.mkdir(mode=0o700)
    path = directory / "celery-w1.heartbeat"
    path.symlink_to(victim)
    _celery_worker.touch(str(path), "w1@host")
    assert victim.read_text() == "keep me\n"
    assert path.is_file() and not path.is_symlink()


def test_a_directory_another_user_controls_is_refused(tmp_path):
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o777)
    os.chmod(directory, 0o777)  # any local user may plant files and links here
    with pytest.raises(PermissionError, match="writable by its group or by others"):
        _celery_worker.touch(str(directory / "celery-w1.heartbeat"), "w1@host")
    assert os.listdir(directory) == []
    planted = directory / "celery-w1.heartbeat"
    planted.symlink_to(tmp_path)  # a link proves no liveness
    assert celery_integration.heartbeat_age(str(planted)) is None


def test_the_reserved_argument_is_removed_before_the_function_runs():
    result = types.SimpleNamespace(kwargs={"label": "a", django_tasks.KWARG: {"correlation_id": "req_x"}})
    assert django_tasks._pop_carrier(result) == {"correlation_id": "req_x"}
    assert result.kwargs == {"label": "a"}
    assert django_tasks._pop_carrier(types.SimpleNamespace(kwargs={"label": "a"})) == {}
    hostile = types.SimpleNamespace(kwargs={django_tasks.KWARG: "not a dict"})
    assert django_tasks._pop_carrier(hostile) == {} and hostile.kwargs == {}
