"""The integrations record through the recorders the metrics subsystem hands them when installed: cache
operations, database statements and connections; with the option off, nothing is wrapped or recorded."""

import pytest
from django.core.cache import caches
from django.db import connection
from django.db.backends.signals import connection_created

from django_observe import runtime
from django_observe.metrics.recorders import cache_operations, db_metrics, llm_metrics, model_operations

pytestmark = pytest.mark.django_db


def sample(name: str, labels: dict) -> float:
    return runtime.get_runtime().metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_cache_opened_with_cache_metrics_on_counts_hits_and_misses(observe):
    observe(METRICS_CACHE=True)
    backend = caches.create_connection("default")
    backend.set("k", 1)
    assert backend.get("k") == 1 and backend.get("absent", "d") == "d"
    labels = {"cache": "default", "operation": "get"}
    assert sample("cache_operations_total", {**labels, "result": "hit"}) == 1
    assert sample("cache_operations_total", {**labels, "result": "miss"}) == 1
    assert sample("cache_operations_total", {"cache": "default", "operation": "set", "result": "ok"}) == 1


def test_a_cache_opened_with_cache_metrics_off_is_left_alone(observe):
    observe(METRICS_CACHE=False)
    backend = caches.create_connection("default")
    assert type(backend).get is getattr(backend.get, "__func__", None)  # the class's own method, not a wrapper


def test_a_new_connection_counts_and_times_its_statements(observe):
    observe(METRICS_DB=True)
    # The in-memory test database stays open: announce the connection as Django does when it opens one.
    connection.ensure_connection()
    connection.execute_wrappers.clear()
    connection_created.send(sender=type(connection), connection=connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    labels = {"alias": "default", "vendor": connection.vendor}
    assert sample("db_client_connections_created_total", labels) == 1
    assert sample("db_client_operation_duration_seconds_count", labels) >= 1


def test_metrics_off_hands_do_nothing_recorders(observe):
    config = observe(METRICS_ENABLED=False)
    assert runtime.get_runtime().metrics is None
    assert not cache_operations(None, config).enabled and cache_operations(None, config).for_alias("x") is None
    assert not db_metrics(None, config).enabled
    db_metrics(None, config).connection_opened("default", "sqlite")  # records nothing, raises nothing
    assert not model_operations(None).enabled
    model_operations(None).record("app.Model", "insert")
    llm_metrics(None).llm_call(object(), 1.0)
