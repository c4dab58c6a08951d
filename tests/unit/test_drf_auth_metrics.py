"""DRF's authentication and permissions are timed in a project that has DRF, and DRF is not imported for one
that does not (its import alone would add 26k objects to every full garbage collection)."""

import os
import subprocess
import sys
import textwrap

import pytest
from django.test import Client

from django_observe import runtime
from tests import support

support.require_module("rest_framework")  # in the `test` extra


def timed(mechanism: str, decision: str) -> float:
    registry = runtime.get_runtime().metrics.registry
    labels = {"mechanism": mechanism, "decision": decision}
    return registry.get_sample_value("authorization_duration_seconds_count", labels) or 0.0


@pytest.mark.django_db
@pytest.mark.urls("tests.unit.drf_urls")
def test_drf_authentication_and_permissions_are_timed():
    before = timed("drf.permissions", "allow"), timed("drf.anonymous", "anonymous")
    assert Client().get("/drf/ok").status_code == 200
    assert timed("drf.permissions", "allow") == before[0] + 1
    assert timed("drf.anonymous", "anonymous") == before[1] + 1
    assert Client().get("/drf/denied").status_code == 403  # raised by the view, after the permission check
    assert timed("drf.permissions", "allow") == before[0] + 2


def test_a_project_without_drf_does_not_import_it():
    script = textwrap.dedent(
        """
        import contextvars, sys
        import django
        from django.conf import settings

        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_observe"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            ROOT_URLCONF="django_observe.urls",
            LOG_LEVEL="WARNING", LOG_FORMAT="json", OTEL_ENABLED=False,
        )
        django.setup()
        assert "rest_framework" not in sys.modules, "rest_framework imported"
        # psycopg_binary's import sets decimal's context variable, which every asgiref thread hop then copies
        assert "psycopg" not in sys.modules, "psycopg imported"
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
