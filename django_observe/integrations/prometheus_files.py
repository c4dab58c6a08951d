"""prometheus_client's multiprocess files: ``prometheus_client.values.MmapedDict`` replaced by the one of
``django_observe.metrics.storage``, which reserves a file's blocks before mapping them (a full directory no
longer kills the process with SIGBUS) and keeps values in memory when the directory cannot take them.

It must be in place before the first metric value of a process is made, so ``wiring.prepare`` installs it as
soon as multiprocess mode is chosen (when Django imports the app), besides the table's install.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import forking
from ..metrics import storage

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["PrometheusFilesIntegration", "integration"]


class PrometheusFilesIntegration:
    """The row of ``INTEGRATIONS``: multiprocess metrics in use (a multiprocess directory was chosen)."""

    name = "prometheus_files"

    def __init__(self) -> None:
        self._original: Any = None

    def available(self, runtime: Runtime) -> bool:
        return runtime.metrics is not None and runtime.metrics.multiprocess_path is not None

    def install(self, runtime: Runtime | None = None) -> None:
        from prometheus_client import values

        if self._original is None:
            self._original = values.MmapedDict
            values.MmapedDict = storage.safe_mmaped_dict()  # type: ignore[misc, assignment]
        # Every metric update takes this lock: a child forked while another thread updates one must not inherit it
        # held.
        forking.reinit_in_child(forking.multiprocess_value_lock())

    def uninstall(self) -> None:
        if self._original is not None:
            from prometheus_client import values

            values.MmapedDict = self._original  # type: ignore[misc]
            self._original = None


integration = PrometheusFilesIntegration()
