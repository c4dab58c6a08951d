"""Django Channels: every WebSocket connection a consumer serves (daphne, uvicorn, any ASGI server).

Installed only in a project that uses Channels (``"channels"`` in ``INSTALLED_APPS`` or already imported when
Django starts, or ``"daphne"`` in ``INSTALLED_APPS``, as Channels' installation guide has it); it
wraps ``channels.consumer.AsyncConsumer.__call__``, which every consumer runs once per connection (sync and
async, JSON or not), so no routing has to change. For each ``websocket`` scope:

- Correlation: the handshake's correlation header (``CORRELATION_HEADERS``, ``X-Correlation-ID`` first) or,
  since browsers cannot set headers on a WebSocket, the query parameter ``correlation_id``; validated with the
  same policy as HTTP (an invalid one is replaced, never logged), else a new one. It is bound for the
  connection's whole life, so every line the consumer writes carries it, and it is returned in the first
  ``CORRELATION_HEADERS`` header of the handshake response on servers that send ``websocket.accept`` headers
  (uvicorn; daphne ignores them).
- Logs (logger ``django_observe.channels``): ``websocket_connected`` when the consumer accepts, and
  ``websocket_closed`` at the end with ``duration_ms``, ``close_code``, ``messages_received`` and
  ``messages_sent``; both carry ``consumer`` (the consumer class) and ``path``.
- Metrics: ``websocket_server_active_connections{consumer}`` (a gauge summed over live processes),
  ``websocket_server_connections_total{consumer,close_code}``, ``websocket_server_messages_received_total``
  and ``websocket_server_messages_sent_total{consumer}``, ``websocket_server_message_duration_seconds{consumer}``.
- Tracing: a SERVER span ``WS <consumer>`` per connection (the handshake's ``traceparent`` is its parent) and
  an INTERNAL span ``WS <consumer> receive`` per message the consumer handles, child of it.

The close code is the one of the first close: the consumer's ``websocket.close`` (1000 when it gives none),
or the client's ``websocket.disconnect``; ``rejected`` when the consumer closed before accepting (the server
answers the handshake with 403), ``1011`` when the consumer raised. Nothing here raises into the consumer:
a failure of django_observe is logged and the connection runs unobserved.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from ..correlation import correlation_id_var, tag_exception
from ..metrics.recorders import WebSocketMetrics, websocket_metrics
from ..runtime import Correlation, Runtime
from . import _uses
from ._patching import Patches

__all__ = ["QUERY_PARAM", "ChannelsIntegration", "WebSocketObserver", "consumer_name", "integration"]

QUERY_PARAM = "correlation_id"
REJECTED = "rejected"
logger = logging.getLogger("django_observe.channels")

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def consumer_name(consumer: Any) -> str:
    """The label of a consumer: its class's dotted path (``chat.consumers.RoomConsumer``)."""
    cls = type(consumer)
    return f"{cls.__module__}.{cls.__qualname__}"


class WebSocketObserver:
    """What a connection needs of the runtime, taken when the integration is installed.

    Args:
        policy: which incoming correlation IDs are accepted, and how new ones look.
        header_names: ``CORRELATION_HEADERS``; the first one present in the handshake decides.
        metrics: the ``websocket_server_*`` recorder (``metrics.recorders.websocket_metrics``; records nothing
            with metrics off).
        tracing: tracing is on (the global tracer provider is django_observe's).
    """

    __slots__ = ("_header_keys", "_tracer", "metrics", "policy", "response_header")

    def __init__(
        self,
        policy: Correlation,
        header_names: tuple[str, ...],
        metrics: WebSocketMetrics | None = None,
        tracing: bool = False,
    ) -> None:
        self.policy = policy
        self._header_keys = tuple(name.lower().encode("latin-1") for name in header_names)
        self.response_header = header_names[0].lower().encode("latin-1") if header_names else None
        self.metrics = metrics if metrics is not None else WebSocketMetrics()
        self._tracer: Any = None
        if tracing:
            from opentelemetry import trace

            self._tracer = trace.get_tracer("django_observe.channels")

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> WebSocketObserver:
        return cls(
            runtime.correlation,
            tuple(runtime.config.correlation_headers),
            websocket_metrics(runtime.metrics),
            runtime.tracing is not None,
        )

    def correlation_id(self, scope: dict[str, Any]) -> str:
        """The connection's ID: an accepted handshake header, else an accepted query parameter, else a new one.

        The first configured header present decides, as for HTTP: an invalid value is replaced, not skipped.
        """
        headers = scope.get("headers") or ()
        for key in self._header_keys:
            for name, value in headers:
                if name.lower() == key:
                    return self.policy.accept(value.decode("latin-1")) or self.policy.new()
        query = scope.get("query_string") or b""
        if QUERY_PARAM.encode() in query:
            text = query.decode("latin-1") if isinstance(query, bytes) else str(query)
            for name, value in parse_qsl(text, max_num_fields=64):
                if name == QUERY_PARAM:
                    return self.policy.accept(value) or self.policy.new()
        return self.policy.new()

    def open(self, consumer: Any, scope: dict[str, Any]) -> Connection:
        return Connection(self, consumer_name(consumer), scope)


class Connection:
    """One WebSocket connection: its correlation ID, counts, span and metrics."""

    __slots__ = (
        "_context_token",
        "_correlation_token",
        "accepted",
        "close_code",
        "consumer",
        "correlation_id",
        "labels",
        "observer",
        "path",
        "received",
        "sent",
        "span",
        "start",
    )

    def __init__(self, observer: WebSocketObserver, consumer: str, scope: dict[str, Any]) -> None:
        self.observer, self.consumer = observer, consumer
        self.start = time.perf_counter()
        self.path = str(scope.get("path", ""))
        self.accepted = False
        self.close_code: str | None = None
        self.received = self.sent = 0
        self.labels = observer.metrics.connection(consumer)
        self.correlation_id = observer.correlation_id(scope)
        self._correlation_token = correlation_id_var.set(self.correlation_id)
        self.span: Any = None
        self._context_token: Any = None
        if observer._tracer is not None:
            self._start_span(scope)

    def _start_span(self, scope: dict[str, Any]) -> None:
        from opentelemetry import context, propagate, trace

        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers") or ()}
        attributes = {
            "url.path": self.path,
            "url.scheme": str(scope.get("scheme") or "ws"),
            "network.protocol.name": "websocket",
            "code.namespace": self.consumer,
            "correlation_id": self.correlation_id,
        }
        self.span = self.observer._tracer.start_span(
            f"WS {self.consumer}",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes=attributes,
        )
        self._context_token = context.attach(trace.set_span_in_context(self.span))

    # --- what the consumer receives and sends

    def receive(self, receive: Receive) -> Receive:
        async def observed_receive() -> Message:
            message = await receive()
            if message.get("type") == "websocket.disconnect" and self.close_code is None:
                self.close_code = str(message.get("code", 1005))
            return message

        return observed_receive

    def send(self, send: Send) -> Send:
        async def observed_send(message: Message) -> None:
            kind = message.get("type")
            if kind == "websocket.send":
                self.sent += 1
                self.observer.metrics.sent(self.labels)
            elif kind == "websocket.accept" and not self.accepted:
                message = self._accepting(message)
            elif kind == "websocket.close" and self.close_code is None:
                self.close_code = str(message.get("code") or 1000) if self.accepted else REJECTED
            await send(message)

        return observed_send

    def _accepting(self, message: Message) -> Message:
        self.accepted = True
        self.observer.metrics.opened(self.labels)
        logger.info("websocket_connected", extra={"consumer": self.consumer, "path": self.path})
        header = self.observer.response_header
        headers = list(message.get("headers") or ())
        if header is not None and not any(name.lower() == header for name, _ in headers):
            headers.append((header, self.correlation_id.encode("latin-1", "replace")))
            message = {**message, "headers": headers}
        return message

    def dispatch(self, dispatch: Callable[[Message], Awaitable[None]]) -> Callable[[Message], Awaitable[None]]:
        """The consumer's ``dispatch`` counting, timing and tracing each ``websocket.receive`` it handles."""

        @functools.wraps(dispatch)
        async def observed_dispatch(message: Message) -> None:
            if message.get("type") != "websocket.receive":
                await dispatch(message)
                return
            self.received += 1
            metrics = self.observer.metrics
            metrics.received(self.labels)
            span: Any = None
            token: Any = None
            if self.span is not None:
                from opentelemetry import context, trace

                span = self.observer._tracer.start_span(
                    f"WS {self.consumer} receive",
                    kind=trace.SpanKind.INTERNAL,
                    attributes={"websocket.message.type": "binary" if message.get("bytes") else "text"},
                )
                token = context.attach(trace.set_span_in_context(span))
            start = time.perf_counter()
            try:
                await dispatch(message)
            except BaseException as exc:
                if span is not None:
                    _span_error(span, exc)
                raise
            finally:
                metrics.handled(self.labels, time.perf_counter() - start)
                if span is not None:
                    from opentelemetry import context

                    span.end()
                    context.detach(token)

        return observed_dispatch

    # --- the end

    def close(self, error: BaseException | None) -> None:
        if error is not None and not _stopped(error):
            self.close_code = "1011"  # what the server sends when the application raised
            tag_exception(error, self.correlation_id)  # the server's own error line about it gets the ID
        code = self.close_code or "1005"
        fields = {
            "consumer": self.consumer,
            "path": self.path,
            "duration_ms": round((time.perf_counter() - self.start) * 1000, 2),
            "close_code": code,
            "messages_received": self.received,
            "messages_sent": self.sent,
        }
        self.observer.metrics.closed(self.labels, self.accepted, code)
        if code == "1011":
            logger.error("websocket_closed", extra=fields, exc_info=_exc_info(error))
        else:
            logger.info("websocket_closed", extra=fields)
        if self.span is not None:
            from opentelemetry import context

            self.span.set_attribute("websocket.close_code", code)
            if code == "1011" and error is not None:
                _span_error(self.span, error)
            self.span.end()
            context.detach(self._context_token)
        try:
            correlation_id_var.reset(self._correlation_token)
        except ValueError:  # ended in another context (a cancelled task's cleanup): just clear it
            correlation_id_var.set(None)


def _stopped(error: BaseException) -> bool:
    return type(error).__name__ == "StopConsumer"


def _exc_info(error: BaseException | None) -> Any:
    return (type(error), error, error.__traceback__) if error is not None else None


def _span_error(span: Any, error: BaseException) -> None:
    from opentelemetry import trace

    span.record_exception(error)
    span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))


# --- the patch


def _observed_call(original: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    @functools.wraps(original)
    async def __call__(self: Any, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        observer = integration.observer
        if observer is None or scope.get("type") != "websocket":
            return await original(self, scope, receive, send)
        try:
            connection = observer.open(self, scope)
            self.dispatch = connection.dispatch(self.dispatch)
            receive, send = connection.receive(receive), connection.send(send)
        except Exception:
            logger.exception("django_observe failed to observe a WebSocket connection; it runs unobserved")
            return await original(self, scope, receive, send)
        error: BaseException | None = None
        try:
            await original(self, scope, receive, send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                connection.close(error)
            except Exception:
                logger.exception("django_observe failed to close a WebSocket connection's observation")

    return __call__


class ChannelsIntegration:
    """The ``channels`` row of the integration table."""

    name = "channels"

    def __init__(self) -> None:
        self.patches = Patches()
        self.observer: WebSocketObserver | None = None  # None: not installed, connections pass through

    def available(self, runtime: Runtime) -> bool:
        """The project uses Channels (:func:`integrations._uses.channels`)."""
        return _uses.channels(runtime)

    def install(self, runtime: Runtime) -> None:
        """Observe connections with ``runtime``'s parts; wraps ``AsyncConsumer.__call__`` once."""
        from channels.consumer import AsyncConsumer

        self.observer = WebSocketObserver.from_runtime(runtime)
        self.patches.wrap(AsyncConsumer, "__call__", _observed_call)

    def uninstall(self) -> None:
        """Restore ``AsyncConsumer.__call__``."""
        self.observer = None
        self.patches.restore()


integration = ChannelsIntegration()
