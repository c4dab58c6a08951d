import secrets

from django.conf import settings
from django.db import models


def new_token_key() -> str:
    return secrets.token_hex(20)


class ApiToken(models.Model):
    """A bearer token for the demo API (``Authorization: Bearer <key>``)."""

    key = models.CharField(max_length=64, unique=True, default=new_token_key)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    created = models.DateTimeField(auto_now_add=True)


if getattr(settings, "DJANGO_PROMETHEUS", False):  # django-prometheus's model counters (DJANGO_PROMETHEUS=1)
    from django_prometheus.models import ExportModelOperationsMixin

    MESSAGE_BASES: tuple[type, ...] = (ExportModelOperationsMixin("message"), models.Model)
else:
    MESSAGE_BASES = (models.Model,)


class Message(*MESSAGE_BASES):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="messages")
    text = models.TextField()
    reply = models.TextField(blank=True)
    processed = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)


class Agent(models.Model):
    """A configured assistant: which model answers and how."""

    name = models.CharField(max_length=64, unique=True)
    model = models.CharField(max_length=64, default="gpt-4o-mini")
    instructions = models.TextField(blank=True, default="You are a helpful assistant.")


class ChatSession(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_sessions")
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="sessions")
    created = models.DateTimeField(auto_now_add=True)
