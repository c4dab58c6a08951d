"""``db_model_operations_total{model,operation}``: inserts, updates and deletes by model.

Nothing is added to the cost of a query and no model needs a mixin:

- inserts and updates come from Django's ``post_save`` signal: one per ``Model.save()``, like
  django-prometheus's ``ExportModelOperationsMixin`` (``bulk_create`` and ``QuerySet.update()`` send none);
- deletes are the per-model row counts Django's deletion collector returns, for ``Model.delete()`` and
  ``QuerySet.delete()`` alike, cascades included. A ``post_delete`` receiver for every model would make Django
  load each row before deleting it (it disables the collector's fast path), so none is connected.

The ``model`` label is ``app_label.ModelName``, through the catalogue's cardinality guard. The signal receiver and
the deletion collector's wrapper are in ``django_observe.integrations.models``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NAME", "ModelOperations"]

NAME = "db_model_operations"


class ModelOperations:
    """The counter and its label guard, for one metrics state."""

    enabled = True

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
