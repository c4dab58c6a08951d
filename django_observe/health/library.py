"""django-health-check's ``HealthCheck`` base class and exceptions, without its built-in checks.

``health_check/__init__.py`` imports ``health_check.checks``, which imports dnspython and redis (and through
redis, OpenTelemetry) at import time: about 180 modules and 10 MB a project pays although our checks use none
of them. When nothing has imported ``health_check`` yet, :func:`_load` registers the package without running
its ``__init__`` and imports only ``health_check.base`` and ``health_check.exceptions``; the package's
``__init__`` runs in full the first time anyone reads one of its other names (``health_check.Cache``,
``from health_check import DNS``, ``health_check.__version__``), so a project that uses django-health-check's
own checks or views sees the package exactly as before.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from typing import Any

__all__ = ["HealthCheck", "HealthCheckException", "ServiceUnavailable", "ServiceWarning"]

_lock = threading.RLock()


def _load() -> None:
    with _lock:
        if "health_check" in sys.modules:
            return
        spec = importlib.util.find_spec("health_check")
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            return  # not installed: the imports below raise the usual ImportError
        package = importlib.util.module_from_spec(spec)
        loader = spec.loader

        def __getattr__(name: str) -> Any:  # noqa: N807 (PEP 562)
            # The first name the partial package lacks: run its real __init__, once, in place.
            with _lock:
                if package.__dict__.pop("__getattr__", None) is not None:
                    loader.exec_module(package)
            return package.__dict__[name] if name in package.__dict__ else _missing(name)

        def _missing(name: str) -> Any:
            raise AttributeError(f"module 'health_check' has no attribute {name!r}")

        package.__dict__["__getattr__"] = __getattr__
        sys.modules["health_check"] = package


_load()

from health_check.base import HealthCheck  # noqa: E402
from health_check.exceptions import HealthCheckException, ServiceUnavailable, ServiceWarning  # noqa: E402
