"""Cache metrics, for any cache backend: ``cache_operations_total{cache,operation,result}``.

Wraps ``django.core.cache.CacheHandler.create_connection``, so each cache alias's backend gets its operations
counted as it is created (database metrics: ``django_observe.integrations.db``).
"""

from __future__ import annotations

from typing import Any

from ..metrics.recorders import CacheOperations, cache_operations
from ..runtime import Runtime
from ._patching import Patches

__all__ = ["CacheIntegration", "integration"]

_CACHE_OPERATIONS = (
    "get",
    "set",
    "add",
    "delete",
    "get_many",
    "set_many",
    "delete_many",
    "incr",
    "decr",
    "touch",
    "has_key",
    "get_or_set",
)


def _wrap(method: Any, counter: Any, operation: str) -> Any:
    if operation in ("get", "has_key"):
        hit, miss = (
            counter.labels(operation=operation, result="hit"),
            counter.labels(operation=operation, result="miss"),
        )
        sentinel = object()

        if operation == "get":

            def get(key: Any, default: Any = None, version: Any = None) -> Any:
                value = method(key, sentinel, version=version)
                if value is sentinel:
                    miss.inc()
                    return default
                hit.inc()
                return value

            return get

        def has_key(key: Any, version: Any = None) -> bool:
            found = method(key, version=version)
            (hit if found else miss).inc()
            return found

        return has_key
    done = counter.labels(operation=operation, result="ok")

    def operation_wrapper(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        done.inc()
        return result

    return operation_wrapper


_recorder = CacheOperations()  # bound by CacheIntegration.install(): the current runtime's


def _counting_connections(original: Any) -> Any:
    def create_connection(self: Any, alias: str) -> Any:
        backend = original(self, alias)
        bound = _recorder.for_alias(alias)
        if bound is None:  # cache metrics off in the current runtime: the connection is left alone
            return backend
        for operation in _CACHE_OPERATIONS:
            method = getattr(backend, operation, None)
            if method is not None:
                setattr(backend, operation, _wrap(method, bound, operation))
        return backend

    return create_connection


class CacheIntegration:
    """The ``cache`` row: counts operations of every cache alias (``METRICS_CACHE``, metrics on)."""

    name = "cache"

    def __init__(self) -> None:
        self.patches = Patches()

    def available(self, runtime: Runtime) -> bool:
        """Django's cache framework: every project has it."""
        return True

    def install(self, runtime: Runtime) -> None:
        """Wrap ``CacheHandler.create_connection`` once; a connection opened while the current runtime has cache
        metrics off is left alone."""
        global _recorder
        _recorder = cache_operations(runtime.metrics, runtime.config)
        if not _recorder.enabled:
            return
        from django.core.cache import CacheHandler

        self.patches.wrap(CacheHandler, "create_connection", _counting_connections)

    def uninstall(self) -> None:
        """Put ``CacheHandler.create_connection`` back (backends already created keep counting)."""
        global _recorder
        _recorder = CacheOperations()
        self.patches.restore()


integration = CacheIntegration()
