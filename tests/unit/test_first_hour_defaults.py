"""Quiet development defaults and the package's metadata (issue #32)."""

from __future__ import annotations

import pathlib
import tomllib
import types

from django_observe.checks import metrics_exposure_warnings
from django_observe.conf import CONFIGURATION_URL, DOCS_URL, load_config

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_metrics_port_binds_loopback_under_debug_and_w002_is_silent():
    config = load_config(types.SimpleNamespace(DEBUG=True), {})
    assert config.metrics_address == "127.0.0.1"
    assert metrics_exposure_warnings(config) == []


def test_production_binds_every_interface_and_still_warns():
    config = load_config(types.SimpleNamespace(DEBUG=False), {})
    assert config.metrics_address == "0.0.0.0"
    assert [w.id for w in metrics_exposure_warnings(config)] == ["django_observe.W002"]


def test_package_metadata_links_the_public_docs_and_ships_license_and_changelog():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    urls = project["urls"]
    assert urls["Documentation"] == DOCS_URL
    assert urls["Homepage"] == DOCS_URL
    assert urls["Configuration"] == CONFIGURATION_URL
    assert CONFIGURATION_URL.startswith(DOCS_URL)
    mkdocs = (ROOT / "mkdocs.yml").read_text()
    assert f"site_url: {DOCS_URL}" in mkdocs
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")
    assert (ROOT / "CONTRIBUTING.md").exists()


def test_service_environment_is_development_under_debug():
    assert load_config(types.SimpleNamespace(DEBUG=True), {}).service_environment == "development"
    assert load_config(types.SimpleNamespace(DEBUG=False), {}).service_environment == "production"
    assert load_config(types.SimpleNamespace(DEBUG=True), {"SERVICE_ENVIRONMENT": "staging"}).service_environment == (
        "staging"
    )


def test_generated_rules_do_not_send_users_into_site_packages():
    from django_observe.alerting.output import HEADER

    assert "django_observe/alerting/rules.py" not in HEADER
    assert "rule file of your own" in HEADER
    assert (ROOT / "deploy/prometheus/rules.yml").read_text().startswith(HEADER)


def test_authorization_recording_rules_only_where_those_series_exist():
    from django_observe.alerting import rules
    from django_observe.management.commands.observe_rules import uses_authorization

    config = load_config(types.SimpleNamespace(DEBUG=False), {})

    def records(authorization: bool) -> set[str]:
        groups = rules.rule_file(config, authorization)["groups"]
        return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}

    assert records(True) >= rules.AUTHORIZATION_RECORDS
    assert not rules.AUTHORIZATION_RECORDS & records(False)
    assert uses_authorization(["django.contrib.auth", "django_observe"])
    assert uses_authorization(["rest_framework"])
    assert not uses_authorization(["django.contrib.contenttypes", "django_observe"])
