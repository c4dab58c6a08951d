"""Cache metrics, for any cache backend (database metrics: ``django_observe.queries``)."""

from __future__ import annotations

from typing import Any

from ..runtime import current

__all__ = ["install_cache_instrumentation"]

_INSTRUMENTED = "_django_observe_metrics"


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


def install_cache_instrumentation() -> None:
    """Count operations of every cache alias (``cache_operations_total{cache,operation,result}``), once per
    process; a cache connection opened while the current runtime has cache metrics off is left alone."""
    from django.core.cache import CacheHandler

    if getattr(CacheHandler.create_connection, _INSTRUMENTED, False):
        return
    original = CacheHandler.create_connection

    def create_connection(self: Any, alias: str) -> Any:
        backend = original(self, alias)
        runtime = current()
        if runtime is None or runtime.metrics is None or not runtime.config.metrics_cache:
            return backend
        counter = runtime.metrics.catalogue.cache_operations

        class Bound:
            @staticmethod
            def labels(operation: str, result: str) -> Any:
                return counter.labels(alias, operation, result)

        for operation in _CACHE_OPERATIONS:
            method = getattr(backend, operation, None)
            if method is not None:
                setattr(backend, operation, _wrap(method, Bound, operation))
        return backend

    setattr(create_connection, _INSTRUMENTED, True)
    CacheHandler.create_connection = create_connection
