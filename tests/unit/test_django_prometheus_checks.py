"""System checks for django-prometheus next to django_observe (W003 its own port, W004 app order, W005 migrations)."""

import types

import pytest

from django_observe import conf
from django_observe.checks import check_django_prometheus

APPS = ["django.contrib.auth", "django_observe", "django_prometheus", "testproject.demo"]


def config(**options):
    return conf.load_config(types.SimpleNamespace(DEBUG=False, DJANGO_OBSERVE=options), environ={})


def ids(settings=None, apps=APPS, **options):
    found = check_django_prometheus(types.SimpleNamespace(**(settings or {})), apps, config(**options))
    return sorted(message.id for message in found)


@pytest.fixture(autouse=True)
def _no_multiproc_env(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


def test_the_documented_setup_is_quiet():
    assert ids() == []
    assert ids({"PROMETHEUS_METRICS_EXPORT_PORT": 8001}, apps=["django_observe"]) == []  # not installed


@pytest.mark.parametrize("name", ["PROMETHEUS_METRICS_EXPORT_PORT", "PROMETHEUS_METRICS_EXPORT_PORT_RANGE"])
def test_its_own_export_port_warns_while_ours_is_on(name):
    value = 8001 if name.endswith("PORT") else range(8001, 8010)
    assert ids({name: value}) == ["django_observe.W003"]
    assert ids({name: value}, METRICS_PORT=0, METRICS_WORKER_PORT=0) == []
    assert ids({name: value}, METRICS_ENABLED=False) == []


def test_listed_before_django_observe_warns_unless_the_environment_sets_multiprocess(monkeypatch):
    before = ["django_prometheus", "django_observe"]
    assert ids(apps=before) == ["django_observe.W004"]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/metrics")
    assert ids(apps=before) == []


def test_its_migration_gauges_warn():
    assert ids({"PROMETHEUS_EXPORT_MIGRATIONS": True}) == ["django_observe.W005"]
    assert ids({"PROMETHEUS_EXPORT_MIGRATIONS": False}) == []


def test_registered_for_manage_py_check(settings, monkeypatch):
    from django.apps import apps
    from django.core import checks

    settings.PROMETHEUS_METRICS_EXPORT_PORT = 8001

    def w003():
        return [m.id for m in checks.run_checks(tags=["django_observe"]) if m.id == "django_observe.W003"]

    assert w003() == []  # django_prometheus is not installed in the test settings
    installed = apps.get_app_configs()
    monkeypatch.setattr(apps, "get_app_configs", lambda: [*installed, types.SimpleNamespace(name="django_prometheus")])
    assert w003() == ["django_observe.W003"]
