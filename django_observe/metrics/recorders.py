"""What the metrics subsystem hands the integrations: one narrow recorder each, or a do-nothing one when its
metrics are off, so an integration takes it when it is installed and never checks ``runtime.metrics``.

Task metrics: :func:`django_observe.metrics.tasks.task_metrics`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .auth import AuthorizationMetrics
from .setup import state_of
from .tasks import NO_TASK_METRICS, NoTaskMetrics, task_metrics

if TYPE_CHECKING:
    from ..runtime import Config
    from .genai import LLMMetrics
    from .model_operations import ModelOperations

__all__ = [
    "NO_TASK_METRICS",
    "AuthorizationMetrics",
    "CacheOperations",
    "DbMetrics",
    "NoTaskMetrics",
    "WebSocketMetrics",
    "authorization_metrics",
    "cache_operations",
    "db_metrics",
    "llm_metrics",
    "model_operations",
    "task_metrics",
    "websocket_metrics",
]


class CacheOperations:
    """``cache_operations_total{cache,operation,result}`` (``METRICS_CACHE``); ``enabled`` False: records
    nothing, and :meth:`for_alias` gives None (the cache is left alone)."""

    __slots__ = ("counter", "enabled")

    def __init__(self, counter: Any = None) -> None:
        self.counter, self.enabled = counter, counter is not None

    def for_alias(self, alias: str) -> Any:
        """An object with ``labels(operation, result)`` for one cache alias, or None when off."""
        counter = self.counter
        if counter is None:
            return None

        class Bound:
            @staticmethod
            def labels(operation: str, result: str) -> Any:
                return counter.labels(alias, operation, result)

        return Bound


class DbMetrics:
    """``db_client_*`` (``METRICS_DB``): the children a connection's statement wrapper observes; ``enabled``
    False: none."""

    __slots__ = ("catalogue", "enabled")

    def __init__(self, catalogue: Any = None) -> None:
        self.catalogue, self.enabled = catalogue, catalogue is not None

    def connection_opened(self, alias: str, vendor: str) -> None:
        if self.catalogue is not None:
            self.catalogue.db_connections.labels(alias, vendor).inc()


class WebSocketMetrics:
    """``websocket_server_*{consumer}`` of the Channels integration; built without a catalogue (metrics off) it
    records nothing. ``labels`` is what :meth:`connection` returned for the connection's consumer."""

    __slots__ = ("catalogue", "guard")

    def __init__(self, catalogue: Any = None) -> None:
        self.catalogue = catalogue
        self.guard = catalogue.guard("websocket_server", "consumer") if catalogue is not None else None

    def connection(self, consumer: str) -> tuple[str, ...]:
        """The labels of a connection of ``consumer`` (its class path, through the cardinality guard)."""
        return (self.guard(consumer),) if self.guard is not None else ()

    def opened(self, labels: tuple[str, ...]) -> None:
        if self.catalogue is not None:
            self.catalogue.websocket_active_connections.labels(*labels).inc()

    def closed(self, labels: tuple[str, ...], accepted: bool, close_code: str) -> None:
        if self.catalogue is not None:
            if accepted:
                self.catalogue.websocket_active_connections.labels(*labels).dec()
            self.catalogue.websocket_connections.labels(*labels, close_code).inc()

    def received(self, labels: tuple[str, ...]) -> None:
        if self.catalogue is not None:
            self.catalogue.websocket_messages_received.labels(*labels).inc()

    def sent(self, labels: tuple[str, ...]) -> None:
        if self.catalogue is not None:
            self.catalogue.websocket_messages_sent.labels(*labels).inc()

    def handled(self, labels: tuple[str, ...], seconds: float) -> None:
        if self.catalogue is not None:
            self.catalogue.websocket_message_duration.labels(*labels).observe(seconds)


class _NoModelOperations:
    __slots__ = ()
    enabled = False

    def record(self, model: str, operation: str, amount: int = 1) -> None:
        pass


class _NoLLMMetrics:
    __slots__ = ()

    def llm_call(self, call: Any, seconds: float) -> None:
        pass

    def agent(self, name: str, seconds: float, error_type: str | None) -> None:
        pass

    def tool(self, name: str, seconds: float, error_type: str | None) -> None:
        pass

    def retrieval(self, data_source: str, seconds: float, error_type: str | None) -> None:
        pass


# Each takes a runtime's ``metrics`` part (None with metrics off) and what it needs of the configuration.


def authorization_metrics(metrics: object) -> AuthorizationMetrics:
    state = state_of(metrics)
    return AuthorizationMetrics(state.catalogue.authorization_duration if state is not None else None)


def cache_operations(metrics: object, config: Config) -> CacheOperations:
    state = state_of(metrics)
    return CacheOperations(state.catalogue.cache_operations if state is not None and config.metrics_cache else None)


def db_metrics(metrics: object, config: Config) -> DbMetrics:
    state = state_of(metrics)
    return DbMetrics(state.catalogue if state is not None and config.metrics_db else None)


def model_operations(metrics: object) -> ModelOperations | _NoModelOperations:
    state = state_of(metrics)
    operations = state.model_operations if state is not None else None
    return operations if operations is not None else _NoModelOperations()


def llm_metrics(metrics: object) -> LLMMetrics | _NoLLMMetrics:
    state = state_of(metrics)
    return state.llm if state is not None else _NoLLMMetrics()


def websocket_metrics(metrics: object) -> WebSocketMetrics:
    state = state_of(metrics)
    return WebSocketMetrics(state.catalogue if state is not None else None)
