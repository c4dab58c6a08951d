"""Database and cache metrics, for any engine and any cache backend."""

from __future__ import annotations

import time
from typing import Any

__all__ = ["install_cache_instrumentation", "install_db_instrumentation"]

_INSTRUMENTED = "_django_observe_metrics"


class QueryTimer:
    """A ``connection.execute_wrapper``: times every query and counts errors (per alias and vendor)."""

    __slots__ = ("duration", "errors")

    def __init__(self, catalogue: Any, alias: str, vendor: str):
        self.duration = catalogue.db_duration.labels(alias, vendor)
        self.errors = (catalogue.db_errors, alias, vendor)

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        except Exception as exc:
            counter, alias, vendor = self.errors
            counter.labels(alias, vendor, type(exc).__name__).inc()
            raise
        finally:
            self.duration.observe(time.perf_counter() - start)


def install_db_instrumentation(catalogue: Any) -> None:
    """Time queries on every connection (pooled PostgreSQL too) and count connections opened."""
    from django.db.backends.signals import connection_created

    def on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
        catalogue.db_connections.labels(connection.alias, connection.vendor).inc()
        if not any(isinstance(w, QueryTimer) for w in connection.execute_wrappers):
            connection.execute_wrappers.append(QueryTimer(catalogue, connection.alias, connection.vendor))

    connection_created.connect(on_connection_created, weak=False, dispatch_uid="django_observe.metrics.db")


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


def install_cache_instrumentation(catalogue: Any) -> None:
    """Count operations of every cache alias (``cache_operations_total{cache,operation,result}``)."""
    from django.core.cache import CacheHandler

    if getattr(CacheHandler.create_connection, _INSTRUMENTED, False):
        return
    original = CacheHandler.create_connection

    def create_connection(self: Any, alias: str) -> Any:
        backend = original(self, alias)
        counter = catalogue.cache_operations

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
