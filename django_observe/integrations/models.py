"""Model operations for ``db_model_operations_total{model,operation}`` (``METRICS_MODELS``).

- inserts and updates: a ``post_save`` receiver (one per ``Model.save()``);
- deletes: ``django.db.models.deletion.Collector.delete`` wrapped to count the per-model rows it returns,
  cascades included (a ``post_delete`` receiver would make Django load each row before deleting it).

See ``django_observe.metrics.model_operations`` for the counter.
"""

from __future__ import annotations

from typing import Any

from ..metrics.recorders import model_operations
from ..runtime import Runtime
from ._patching import Patches

__all__ = ["ModelsIntegration", "integration"]

_SAVED_UID = "django_observe_model_saved"


_operations: Any = model_operations(None)  # bound by ModelsIntegration.install(): the current runtime's


def _saved(sender: Any, created: bool = False, **kwargs: Any) -> None:
    _operations.record(sender._meta.label, "insert" if created else "update")


def _counting_deletes(delete: Any) -> Any:
    def counted_delete(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = delete(self, *args, **kwargs)
        for label, rows in result[1].items():
            if rows:
                _operations.record(label, "delete", rows)
        return result

    return counted_delete


class ModelsIntegration:
    """The ``models`` row: counts saves and deletes by model while the runtime has the counter."""

    name = "models"

    def __init__(self) -> None:
        self.patches = Patches()

    def available(self, runtime: Runtime) -> bool:
        """Django's ORM: every project has it."""
        return True

    def install(self, runtime: Runtime) -> None:
        """Connect the ``post_save`` receiver and wrap ``Collector.delete`` (``METRICS_MODELS`` off or metrics
        off: the receiver is disconnected, deletes pass through)."""
        from django.db.models.deletion import Collector
        from django.db.models.signals import post_save

        global _operations
        _operations = model_operations(runtime.metrics)
        post_save.disconnect(dispatch_uid=_SAVED_UID)
        if not _operations.enabled:
            return
        post_save.connect(_saved, weak=False, dispatch_uid=_SAVED_UID)
        self.patches.wrap(Collector, "delete", _counting_deletes)

    def uninstall(self) -> None:
        """Disconnect the receiver and put ``Collector.delete`` back."""
        global _operations
        from django.db.models.signals import post_save

        _operations = model_operations(None)
        post_save.disconnect(dispatch_uid=_SAVED_UID)
        self.patches.restore()


integration = ModelsIntegration()
