"""db_model_operations_total: inserts and updates from post_save, deletes from the deletion collector."""

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext

from django_observe import runtime
from testproject.demo.models import Message

pytestmark = pytest.mark.django_db


def count(model: str, operation: str, name: str = "db_model_operations_total") -> float:
    registry = runtime.get_runtime().metrics.registry
    return registry.get_sample_value(name, {"model": model, "operation": operation}) or 0.0


def receivers() -> list:
    return [r for r in post_save.receivers if r[0][0] == "django_observe_model_saved"]


def test_save_update_and_delete_count_by_model(observe):
    observe()
    user = get_user_model().objects.create(username="alice")
    message = Message.objects.create(user=user, text="hi")
    assert count("auth.User", "insert") == 1
    assert count("demo.Message", "insert") == 1
    assert count("demo.Message", "update") == 0
    message.text = "hello"
    message.save()
    message.save(update_fields=["text"])
    assert count("demo.Message", "update") == 2
    assert count("demo.Message", "insert") == 1
    message.delete()
    assert count("demo.Message", "delete") == 1


def test_queryset_and_cascade_deletes_count_rows_and_keep_the_fast_path(observe):
    observe()
    user = get_user_model().objects.create(username="bob")
    Message.objects.bulk_create([Message(user=user, text=str(i)) for i in range(3)])  # bulk: no insert counted
    assert count("demo.Message", "insert") == 0
    with CaptureQueriesContext(connection) as queries:
        deleted, _ = Message.objects.filter(user=user).delete()
    assert deleted == 3
    # One DELETE, no SELECT of the rows first: a post_delete receiver would have disabled the fast path.
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["DELETE"]
    assert count("demo.Message", "delete") == 3
    Message.objects.create(user=user, text="x")
    Message.objects.create(user=user, text="y")
    user.delete()  # cascades to the messages
    assert count("demo.Message", "delete") == 5
    assert count("auth.User", "delete") == 1


def test_option_off_connects_no_receiver_and_registers_no_metric(observe):
    observe()
    assert len(receivers()) == 1
    observe(METRICS_MODELS=False)
    assert receivers() == []
    assert runtime.get_runtime().metrics.model_operations is None
    user = get_user_model().objects.create(username="carol")
    Message.objects.create(user=user, text="hi").delete()
    registry = runtime.get_runtime().metrics.registry
    for operation in ("insert", "delete"):
        labels = {"model": "demo.Message", "operation": operation}
        assert registry.get_sample_value("db_model_operations_total", labels) is None
    observe()
    assert len(receivers()) == 1


def test_namespace_and_cardinality_guard(observe):
    observe(METRICS_NAMESPACE="shop", METRICS_MAX_LABEL_VALUES=1)
    user = get_user_model().objects.create(username="dave")
    Message.objects.create(user=user, text="hi")
    assert count("auth.User", "insert", "shop_db_model_operations_total") == 1
    assert count("__other__", "insert", "shop_db_model_operations_total") == 1  # the second model is folded
    registry = runtime.get_runtime().metrics.registry
    overflow = registry.get_sample_value(
        "shop_metrics_label_overflow_total", {"metric": "db_model_operations_total", "label": "model"}
    )
    assert overflow == 1
