"""Tasks for Django's tasks framework (``django.tasks``, or the ``django_tasks`` backport on Django 5.2).

Imported only with ``TESTPROJECT_DJANGO_TASKS=1`` (the views import it lazily).
"""

import logging

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the backport
    from django_tasks import task

logger = logging.getLogger("demo.background")


@task()
def count_users(label: str) -> int:
    """Two queries and a log line of its own (it carries the task's correlation ID)."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    total = users.count() + users.filter(is_staff=True).count()
    logger.info("users counted", extra={"label": label})
    return total


@task(queue_name="reports")
def broken_report(label: str) -> None:
    raise ValueError(f"report {label} failed")
