import logging

from celery import shared_task

from django_observe.metrics import timed

from .metrics import DELIVERIES, MESSAGES_PROCESSED, REPLY_DURATION, TOKENS, tokens

logger = logging.getLogger("demo.tasks")


@shared_task
def process_message(message_id: int, model: str = "echo-1") -> str:
    """The seed's background job: answer a chat message, then summarize it in a child task."""
    from .models import Message

    with timed(REPLY_DURATION, model=model):
        message = Message.objects.get(pk=message_id)
        message.reply = f"echo: {message.text[:200]}"
        message.processed = True
        message.save(update_fields=["reply", "processed"])
    MESSAGES_PROCESSED.inc()
    TOKENS.labels(model=model, kind="completion").inc(tokens(message.reply))
    logger.info("Chat message processed", extra={"message_id": message_id})
    summarize.delay(message_id)
    return message.reply


@shared_task
def store_message(text: str, username: str = "demo") -> int:
    """Inserts one message (model metrics from a worker's pool child)."""
    from django.contrib.auth import get_user_model

    from .models import Message

    return Message.objects.create(user=get_user_model().objects.get(username=username), text=text).pk


@shared_task
def summarize(message_id: int) -> int:
    logger.info("Summary written", extra={"message_id": message_id})
    return message_id


@shared_task
def lookups(n: int) -> int:
    """The N+1 shape in a task: one query per user."""
    from django.contrib.auth import get_user_model

    return sum(get_user_model().objects.filter(pk=i).exists() for i in range(1, n + 1))


@shared_task
def add(x: int, y: int) -> int:
    return x + y


@shared_task
def fail(reason: str = "boom") -> None:
    raise RuntimeError(reason)


@shared_task(bind=True, max_retries=2, default_retry_delay=0)
def flaky(self, succeed_on: int = 2) -> int:
    """Retries until attempt ``succeed_on`` (0-based retries count)."""
    if self.request.retries < succeed_on:
        raise self.retry(exc=RuntimeError("not yet"), countdown=0)
    return self.request.retries


@shared_task
def chain_parent(marker: str) -> str:
    logger.info("parent task ran", extra={"marker": marker})
    chain_child.delay(marker)
    return marker


@shared_task
def chain_child(marker: str) -> str:
    logger.info("child task ran", extra={"marker": marker})
    return marker


@shared_task
def fetch(url: str, client: str = "requests") -> int:
    """An outbound call from a worker (propagation tests); loopback URLs only, like the view."""
    from .outbound import call_outbound, loopback_url

    if loopback_url(url) is None:
        raise ValueError("fetch only calls http:// loopback URLs")
    return call_outbound(url, client)


@shared_task
def deliver(recipient: str) -> bool:
    """One campaign message: addresses without "@" or under ".invalid" fail (the seed's delivery rate)."""
    ok = "@" in recipient and not recipient.endswith(".invalid")
    DELIVERIES.inc(result="succeeded" if ok else "failed")
    if not ok:
        logger.warning("Delivery failed", extra={"recipient_domain": recipient.rpartition("@")[2][:64]})
    return ok


class CallFailed(Exception):
    pass


@shared_task
def echo_hostile(task: dict) -> dict:
    """Logs its arguments carelessly (the hostile corpus), calls ``task["url"]`` (loopback only), fails with
    ``task["fail"]`` in the message when given, and returns its arguments (Celery logs the result)."""
    from .outbound import call_outbound, loopback_url

    logger.warning("task args %s", task)
    logger.info("task payload", extra={"payload": task})
    url = loopback_url(task.get("url"))
    if url is not None:
        call_outbound(url, "httpx" if task.get("client") == "httpx" else "requests")
    if task.get("fail"):
        raise CallFailed(f"call failed: {task['fail']}")
    return task


@shared_task
def llm_direct(provider: str, stream: bool) -> int:
    """An LLM call through the SDK itself in a worker (tests/integration/test_llm_e2e.py)."""
    from . import llm

    return len(llm.direct_call(provider, stream))
