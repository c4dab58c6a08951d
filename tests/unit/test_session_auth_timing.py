"""Loading the session user through Django's AuthenticationMiddleware is timed
(``authorization_duration_seconds{mechanism="session"}``), anonymous and authenticated, once per request that
reads ``request.user``."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from django_observe import runtime


def timed(decision: str) -> float:
    registry = runtime.get_runtime().metrics.registry
    labels = {"mechanism": "session", "decision": decision}
    return registry.get_sample_value("authorization_duration_seconds_count", labels) or 0.0


@pytest.mark.django_db
@pytest.mark.urls("tests.unit.session_urls")
def test_the_session_user_is_timed_once_per_request_anonymous_and_authenticated():
    anonymous, authenticated = timed("anonymous"), timed("authenticated")
    client = Client()
    assert client.get("/whoami").json() == {"authenticated": False}
    assert (timed("anonymous"), timed("authenticated")) == (anonymous + 1, authenticated)
    user = get_user_model().objects.create_user("session-timing", password="not-used-here")
    client.force_login(user)
    assert client.get("/whoami").json() == {"authenticated": True}
    assert client.get("/whoami").json() == {"authenticated": True}
    assert (timed("anonymous"), timed("authenticated")) == (anonymous + 1, authenticated + 2)
