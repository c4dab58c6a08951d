"""RQ jobs of the test project (``TESTPROJECT_RQ_URL`` lists ``django_rq``; ``/api/rq/enqueue`` enqueues them)."""

import logging

logger = logging.getLogger("demo.jobs")


def count_users(label: str) -> int:
    """Two queries and a log line of its own (it carries the job's correlation ID)."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    total = users.count() + users.filter(is_staff=True).count()
    logger.info("users counted", extra={"label": label})
    return total


def broken_report(label: str) -> None:
    raise ValueError(f"report {label} failed")
