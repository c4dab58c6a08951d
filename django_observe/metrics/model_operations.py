"""``db_model_operations_total{model,operation}``: inserts, updates and deletes by model.

Nothing is added to the cost of a query and no model needs a mixin:

- inserts and updates come from Django's ``post_save`` signal: one per ``Model.save()``, like
  django-prometheus's ``ExportModelOperationsMixin`` (``bulk_create`` and ``QuerySet.update()`` send none);
- deletes are the per-model row counts Django's deletion collector returns, for ``Model.delete()`` and
  ``QuerySet.delete()`` alike, cascades included. A ``post_delete`` receiver for every model would make Django
  load each row before deleting it (it disables the collector's fast path), so none is connected.

The ``model`` label is ``app_label.ModelName``, through the catalogue's cardinality guard.
"""

from __future__ import annotations

from typing import Any

from ..runtime import current

__all__ = ["ModelOperations", "install_model_instrumentation"]

NAME = "db_model_operations"
_SAVED_UID = "django_observe_model_saved"
_INSTRUMENTED = "_django_observe_model_operations"


class ModelOperations:
    """The counter and its label guard, for one metrics state."""

    def __init__(self, namespace: str, registry: Any, guard: Any):
        from prometheus_client import Counter

        self.counter = Counter(
            NAME,
            "Model inserts, updates and deletes (post_save / post_delete signals).",
            ["model", "operation"],
            namespace=namespace,
            registry=registry,
        )
        self.guard = guard
        self._children: dict[tuple[str, str], Any] = {}

    def record(self, model: str, operation: str, amount: int = 1) -> None:
        label = self.guard(model)
        key = (label, operation)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, self.counter.labels(label, operation))
        child.inc(amount)


def _operations() -> ModelOperations | None:
    rt = current()
    return None if rt is None or rt.metrics is None else rt.metrics.model_operations


def _saved(sender: Any, created: bool = False, **kwargs: Any) -> None:
    operations = _operations()
    if operations is not None:
        operations.record(sender._meta.label, "insert" if created else "update")


def _counting_deletes(delete: Any) -> Any:
    def counted_delete(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = delete(self, *args, **kwargs)
        operations = _operations()
        if operations is not None:
            for label, rows in result[1].items():
                if rows:
                    operations.record(label, "delete", rows)
        return result

    setattr(counted_delete, _INSTRUMENTED, True)
    return counted_delete


def install_model_instrumentation(enabled: bool) -> None:
    """Connect the ``post_save`` receiver and count deletes (``METRICS_MODELS`` off: disconnect, count none)."""
    from django.db.models.deletion import Collector
    from django.db.models.signals import post_save

    post_save.disconnect(dispatch_uid=_SAVED_UID)
    if not enabled:
        return
    post_save.connect(_saved, weak=False, dispatch_uid=_SAVED_UID)
    if not getattr(Collector.delete, _INSTRUMENTED, False):
        Collector.delete = _counting_deletes(Collector.delete)
