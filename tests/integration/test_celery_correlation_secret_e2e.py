"""A secret-shaped correlation ID arriving in Celery task headers is refused, end to end (#34 finding 11).

A real prefork worker consumes its own queue on the shared Redis; this process publishes tasks to it with
Celery's own producer, each with an ``x_correlation_id`` header: a dotted JWT, an AWS access key ID, a GitHub
token (all match the default ID pattern ``[A-Za-z0-9._:-]{1,128}``, so only the secret-shape check refuses
them), and a plain ID that must be kept. The secret ones reach no worker line and no exported span; the tasks
run under a new ID instead."""

import base64
import json
import secrets
import uuid

import pytest
from celery import Celery

from tests import support, support_otlp

pytestmark = pytest.mark.integration

TASK = "testproject.demo.tasks.echo_hostile"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def secret_ids() -> dict[str, str]:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    jwt = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64({'sub': secrets.token_hex(6)})}.{secrets.token_urlsafe(24)}"
    return {
        "jwt": jwt,
        "aws": "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16)),
        "github": "ghp_" + secrets.token_hex(18),
    }


def test_secret_shaped_correlation_headers_of_celery_tasks_are_replaced(tmp_path):
    url = support.redis_url(3)
    queue = f"corr-secret-{uuid.uuid4().hex[:12]}"  # its own queue on the shared Redis
    planted = secret_ids()
    kept = f"req_kept{uuid.uuid4().hex[:12]}"
    with support_otlp.HttpReceiver() as receiver:
        env = support.sqlite_env(tmp_path, REDIS_URL=url, LOG_FORMAT="json", **support.tracing_to(receiver.endpoint))
        worker = support.celery_worker(env, tmp_path / "worker.log", extra=("-Q", queue))
        worker.start()
        try:
            support.wait_worker_ready(worker)
            app = Celery("probe", broker=url)
            try:
                ids = {
                    name: app.send_task(
                        TASK, args=[{"note": name}], queue=queue, headers={"x_correlation_id": value}
                    ).id
                    for name, value in {**planted, "kept": kept}.items()
                }
            finally:
                app.close()

            def lines():
                return [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]

            def done():
                finished = {e.get("task_id") for e in lines() if "task_succeeded" in json.dumps(e)}
                runs = [s for s in receiver.spans if s.name.startswith("run/")]
                return set(ids.values()) <= finished and len(runs) >= len(ids)

            support.wait_until(done, timeout=90, message=lambda: f"the 4 tasks ran:\n{worker.output()[-3000:]}")
        finally:
            worker.stop()
            import redis

            with redis.Redis.from_url(url) as client:  # our queue's keys only: the Redis is shared
                client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        spans = list(receiver.spans)
    output = worker.output()
    by_task = {}
    for event in lines():
        if event.get("task_id") in ids.values():
            by_task.setdefault(event["task_id"], set()).add(event.get("correlation_id"))
    assert by_task[ids["kept"]] == {kept}, "a valid ID from the header is kept"
    for name, value in planted.items():
        assert value not in output, f"{name} ID in the worker's output"
        leaks = [s.name for s in spans for text in s.texts() if value in text]
        assert not leaks, f"{name} ID on spans {leaks}"
        generated = by_task[ids[name]]
        assert len(generated) == 1 and next(iter(generated)).startswith("req_"), (name, generated)
    assert len([s for s in spans if s.name == f"run/{TASK}"]) == len(ids), "each task's span was exported"
