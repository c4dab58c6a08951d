"""structlog, imported without its optional Twisted support until someone asks for it.

``structlog/__init__.py`` tries ``from structlog import twisted`` at import time, which imports Twisted
whenever it is installed (daphne installs it): about 45 modules and 2 MB in a process that serves Django
requests and never touches Twisted's logging. When structlog is not imported yet, it is imported here with
that optional import (and the greenlet one of the deprecated ``structlog.threadlocal``) failing, and
``structlog.twisted`` becomes lazy: the first ``structlog.twisted``,
``from structlog import twisted`` or ``import structlog.twisted`` imports it as before (None when Twisted is
not installed, as structlog sets it).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__: list[str] = []


def _import() -> ModuleType:
    if "structlog" in sys.modules:
        return sys.modules["structlog"]
    # Both optional imports fail for the duration: structlog.twisted (Twisted) and the deprecated
    # structlog.threadlocal's greenlet storage (greenlet, 1.3 MB, installed beside playwright or gevent), which
    # then keeps threading.local (gevent's monkey-patching makes that greenlet-local anyway).
    blocked = [name for name in ("structlog.twisted", "structlog._greenlets") if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment] # the optional import fails
    try:
        module = importlib.import_module("structlog")
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    if module.__dict__.get("twisted", 0) is not None:
        return module  # another version of structlog: left as it is
    del module.__dict__["twisted"]
    fallback = module.__dict__.get("__getattr__")

    def __getattr__(name: str) -> Any:  # noqa: N807 (PEP 562)
        if name == "twisted":
            try:
                return importlib.import_module("structlog.twisted")
            except ImportError:
                module.__dict__["twisted"] = None
                return None
        if fallback is None:
            raise AttributeError(f"module 'structlog' has no attribute {name!r}")
        return fallback(name)

    module.__dict__["__getattr__"] = __getattr__
    return module


_import()
