"""A built-in health check is one row of ``health.registry.BUILTINS``: the lists the registry and the endpoints
read are derived from it, and every row is exported, configurable and documented (#29)."""

import re
import types
from pathlib import Path

import pytest

from django_observe import conf, health
from django_observe.health import checks, registry

ROOT = Path(__file__).resolve().parents[2]
IDS = [row.id for row in registry.BUILTINS]


def _config(**options):
    return conf.load_config(types.SimpleNamespace(DEBUG=False, DJANGO_OBSERVE=options), environ={})


def test_the_lists_the_registry_reads_are_derived_from_the_table():
    assert len(set(IDS)) == len(IDS)
    assert list(registry.BUILTIN_CRITICAL) == IDS
    assert set(registry.COMPONENT_TYPES) == set(IDS)
    assert registry.OPT_IN == {row.id for row in registry.BUILTINS if row.opt_in} == {"celery_queues"}
    assert {registry.MEASUREMENTS[i] for i in IDS} >= {"responseTime", "utilization"}


@pytest.mark.parametrize("row", registry.BUILTINS, ids=IDS)
def test_every_row_is_exported(row):
    name = row.check.__name__
    assert name in checks.__all__ and name in health.__all__
    assert getattr(health, name) is row.check is getattr(checks, name)


def test_every_exported_check_class_is_a_row():
    classes = {getattr(checks, name) for name in checks.__all__ if isinstance(getattr(checks, name), type)}
    classes.discard(checks.Observation)  # a value a check returns, not a check
    assert classes == {row.check for row in registry.BUILTINS}


@pytest.mark.parametrize("row", registry.BUILTINS, ids=IDS)
def test_every_row_is_configurable(row):
    celery = types.SimpleNamespace(main="proj")
    project = dict(databases={"default": {}}, caches={"default": {"BACKEND": "locmem"}}, celery_app=celery)
    on = registry.build_specs(
        _config(REDIS_URLS=["redis://x"], HEALTH_CHECK_OPTIONS={row.id: {"enabled": True}}), **project
    )
    off = registry.build_specs(
        _config(REDIS_URLS=["redis://x"], HEALTH_CHECK_OPTIONS={row.id: {"enabled": False}}), **project
    )
    applies = row.id != "memory" or checks.memory_readable()  # memory: only where it can be read
    assert (row.id in {spec.id for spec in on}) is applies and row.id not in {spec.id for spec in off}
    for spec in (spec for spec in on if spec.id == row.id):
        assert isinstance(spec.check, row.check) and spec.critical is row.critical
        assert spec.component_type == row.component_type and spec.measurement == row.measurement


def test_every_row_is_documented_in_the_table_of_checks():
    text = (ROOT / "docs" / "health.md").read_text()
    table = text.split("## Checks", 1)[1].split("\n\n", 2)[1]
    documented = {match for line in table.splitlines() for match in re.findall(r"^\| `([a-z_]+)`", line)}
    assert documented == set(IDS)
