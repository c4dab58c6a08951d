"""The console's tables (three kinds, as Laravel Pulse): pre-computed aggregates, kept entries, current values.

Aggregates are written once per period (1 hour, 6 hours, 24 hours, 7 days) in buckets of a sixtieth of it,
so a card reads about sixty rows per key whatever the period and never the raw events. Sizes: docs/console.md.
"""

from __future__ import annotations

from django.db import models

from .recorder import BINS

__all__ = ["Aggregate", "ExceptionOccurrence", "FailedJob", "KeptRequest", "Value", "WrittenBatch"]


class Aggregate(models.Model):
    """What happened to one key (a route, a statement shape, a host, a task...) in one bucket of one period."""

    period = models.PositiveIntegerField(help_text="Bucket length in seconds (60, 360, 1440 or 10080).")
    bucket = models.BigIntegerField(help_text="Start of the bucket, seconds since the epoch.")
    type = models.CharField(max_length=32)
    key = models.TextField()
    key_hash = models.CharField(max_length=32)
    count = models.BigIntegerField(default=0)
    total = models.FloatField(default=0.0)
    peak = models.FloatField(default=0.0)
    errors = models.BigIntegerField(default=0)
    value = models.FloatField(default=0.0)
    locals().update({f"h{i}": models.BigIntegerField(default=0) for i in range(BINS)})

    class Meta:
        db_table = "observe_console_aggregate"
        default_permissions = ()
        permissions = [("view_console", "Can view the django-observe console")]
        constraints = [
            models.UniqueConstraint(fields=["period", "bucket", "type", "key_hash"], name="observe_console_agg_key")
        ]
        indexes = [models.Index(fields=["type", "period", "bucket"], name="observe_console_agg_read")]


class KeptRequest(models.Model):
    """A slow, failed or sampled request with its timeline and log lines."""

    correlation_id = models.CharField(max_length=128, db_index=True)
    at = models.DateTimeField(db_index=True)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    method = models.CharField(max_length=16)
    route = models.CharField(max_length=255)
    path = models.CharField(max_length=500)
    status = models.IntegerField()
    duration_ms = models.FloatField()
    reason = models.CharField(max_length=16)
    user_id = models.CharField(max_length=64, null=True, blank=True)
    trace_id = models.CharField(max_length=32, blank=True)
    exception_group = models.CharField(max_length=32, blank=True)
    repeats = models.IntegerField(default=0)
    dropped = models.IntegerField(default=0)
    timeline = models.JSONField(default=list)
    logs = models.JSONField(default=list)

    class Meta:
        db_table = "observe_console_request"
        default_permissions = ()


class ExceptionOccurrence(models.Model):
    """One exception of a group (type and location), with its redacted traceback."""

    group = models.CharField(max_length=32, db_index=True)
    at = models.DateTimeField(db_index=True)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    type = models.CharField(max_length=255)
    location = models.CharField(max_length=500)
    message = models.TextField()
    traceback = models.TextField()
    correlation_id = models.CharField(max_length=128, blank=True)
    where = models.CharField(max_length=255)

    class Meta:
        db_table = "observe_console_exception"
        default_permissions = ()


class FailedJob(models.Model):
    """A task run that failed (Celery or django.tasks)."""

    at = models.DateTimeField(db_index=True)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    task = models.CharField(max_length=255)
    queue = models.CharField(max_length=255)
    kind = models.CharField(max_length=32)
    duration_ms = models.FloatField()
    error = models.TextField()
    correlation_id = models.CharField(max_length=128, blank=True)
    exception_group = models.CharField(max_length=32, blank=True)

    class Meta:
        db_table = "observe_console_job"
        default_permissions = ()


class Value(models.Model):
    """What is true now for one key: a server process, a health check."""

    type = models.CharField(max_length=32)
    key = models.CharField(max_length=255)
    data = models.JSONField(default=dict)
    updated = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "observe_console_value"
        default_permissions = ()
        constraints = [models.UniqueConstraint(fields=["type", "key"], name="observe_console_value_key")]


class WrittenBatch(models.Model):
    """The id of every batch written: a batch retried after an unanswered commit is not counted twice."""

    id = models.CharField(max_length=32, primary_key=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "observe_console_batch"
        default_permissions = ()
