"""db_migrations_applied / db_migrations_unapplied: counted at scrape time, per alias, cached."""

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings

from django_observe import runtime
from django_observe.metrics.collectors.base import Deadline, ScrapeErrors
from django_observe.metrics.collectors.migrations import MigrationsCollector, count_migrations, migration_aliases

PENDING = {"demo": "tests.unit.pending_migrations"}


def samples(collector: MigrationsCollector) -> dict:
    return {(s.name, s.labels.get("alias")): s.value for family in collector.collect() for s in family.samples}


def collector(**kwargs) -> MigrationsCollector:
    return MigrationsCollector("", ScrapeErrors(), Deadline(5.0), ["default"], **kwargs)


@pytest.mark.django_db
def test_none_unapplied_after_migrate():
    applied, unapplied = count_migrations(connection)
    assert unapplied == 0
    assert applied == len(MigrationLoader(connection).graph.nodes) > 10


@pytest.mark.django_db
def test_an_unapplied_migration_is_counted():
    applied_before, _ = count_migrations(connection)
    with override_settings(MIGRATION_MODULES=PENDING):
        assert count_migrations(connection) == (applied_before, 1)
        # The collector reads on a connection of its own, in its own thread.
        assert samples(collector()) == {
            ("db_migrations_applied", "default"): applied_before,
            ("db_migrations_unapplied", "default"): 1,
        }


def test_results_are_cached_and_a_failure_is_retried():
    calls, now = [], [0.0]

    def count(alias):
        calls.append(alias)
        if len(calls) == 1:
            raise RuntimeError("database down")
        return (40, 2)

    errors = ScrapeErrors()
    reader = MigrationsCollector("app_", errors, Deadline(1.0), ["default"], ttl=60, count=count, clock=lambda: now[0])
    assert samples(reader) == {}
    assert errors.counts == {"migrations": 1}
    assert samples(reader) == {
        ("app_db_migrations_applied", "default"): 40,
        ("app_db_migrations_unapplied", "default"): 2,
    }
    now[0] = 59
    samples(reader)
    assert len(calls) == 2
    now[0] = 61
    samples(reader)
    assert len(calls) == 3


def test_aliases_skip_the_dummy_backend():
    databases = {
        "default": {"ENGINE": "django.db.backends.dummy"},
        "other": {"ENGINE": "django_prometheus.db.backends.postgresql"},
    }
    assert migration_aliases(databases) == ["other"]


@pytest.mark.django_db
def test_wired_by_the_option(observe):
    observe()
    assert any(isinstance(c, MigrationsCollector) for c in runtime.get_runtime().metrics.collectors)
    observe(METRICS_MIGRATIONS=False)
    assert not any(isinstance(c, MigrationsCollector) for c in runtime.get_runtime().metrics.collectors)
