"""LLM calls as OpenTelemetry GenAI client spans, and their token usage and latency as metrics.

Around any client (a context manager, or a decorator)::

    from django_observe import llm_call

    with llm_call(model="claude-sonnet-4", provider="anthropic") as call:
        response = client.messages.create(model="claude-sonnet-4", messages=messages, max_tokens=512)
        call.record_response(response)  # or call.record(input_tokens=..., output_tokens=..., ...)

opens a CLIENT span ``chat claude-sonnet-4`` with the GenAI semantic-convention attributes and records
``gen_ai_client_token_usage`` and ``gen_ai_client_operation_duration_seconds``. With tracing off there is no
span but the metrics are still recorded.

Prompts and completions are never recorded unless ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
says so (``true``, ``span_only`` or ``span_and_event``), and then only what :meth:`LLMCall.record_messages`
is given, redacted.

No duplicate span: when the official OpenAI instrumentation (``opentelemetry-instrumentation-openai-v2``,
switched on with tracing when installed) traces the call, or when a GenAI span is already the current span,
the helper opens no span of its own and only records the metrics. ``span=True``/``span=False`` overrides.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .. import __version__, runtime
from ..redaction import redact
from . import is_enabled

__all__ = ["LLMCall", "current_llm_call", "llm_call"]

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
# Deprecated for gen_ai.provider.name in the installed semantic conventions, but still what the OpenAI
# instrumentation writes by default (conventions 1.30): both are set so one query finds either span.
SYSTEM = "gen_ai.system"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"

# OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT values that put content on the span.
CONTENT_ON_SPAN = frozenset({"true", "span_only", "span_and_event"})
# Providers whose calls the official OpenAI instrumentation traces (through the openai SDK).
OPENAI_PROVIDERS = frozenset({"openai", "azure.ai.openai"})
TRACER_NAME = "django_observe.genai"

_current: contextvars.ContextVar[LLMCall | None] = contextvars.ContextVar("django_observe_llm_call", default=None)


def current_llm_call() -> LLMCall | None:
    """The call of the innermost ``llm_call`` block (a decorated function records usage through it)."""
    return _current.get()


def _tokens(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


class LLMCall:
    """What one LLM call reported; given by ``with llm_call(...) as call``."""

    __slots__ = (
        "error_type",
        "finish_reasons",
        "input_tokens",
        "operation",
        "output_tokens",
        "provider",
        "request_model",
        "response_id",
        "response_model",
        "span",
        "_capture",
    )

    def __init__(self, operation: str, provider: str, request_model: str, span: Any = None, capture: bool = False):
        self.operation, self.provider, self.request_model = operation, provider, request_model
        self.span = span
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.finish_reasons: tuple[str, ...] | None = None
        self.error_type: str | None = None
        self._capture = capture

    @property
    def captures_content(self) -> bool:
        """True when prompts and completions given to :meth:`record_messages` go on the span."""
        return self._capture and self.span is not None

    def record(
        self,
        *,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reasons: Iterable[str] | None = None,
        response_id: str | None = None,
    ) -> None:
        """Usage the provider reported. Token counts that are not non-negative integers are ignored."""
        if isinstance(response_model, str) and response_model:
            self.response_model = response_model
        if isinstance(response_id, str) and response_id:
            self.response_id = response_id
        if input_tokens is not None:
            self.input_tokens = _tokens(input_tokens)
        if output_tokens is not None:
            self.output_tokens = _tokens(output_tokens)
        if finish_reasons is not None and not isinstance(finish_reasons, str):
            self.finish_reasons = tuple(str(r) for r in finish_reasons if r is not None)

    def record_response(self, response: Any) -> None:
        """Read model, id, usage and finish reasons from a response object or dict: OpenAI chat completions
        (``usage.prompt_tokens``/``completion_tokens``, ``choices[].finish_reason``), the OpenAI Responses API
        and Anthropic (``usage.input_tokens``/``output_tokens``, ``stop_reason``)."""
        usage = _field(response, "usage")
        input_tokens = output_tokens = None
        if usage is not None:
            input_tokens = _field(usage, "prompt_tokens")
            if input_tokens is None:
                input_tokens = _field(usage, "input_tokens")
            output_tokens = _field(usage, "completion_tokens")
            if output_tokens is None:
                output_tokens = _field(usage, "output_tokens")
        choices = _field(response, "choices")
        reasons: list[str] | None = None
        if isinstance(choices, (list, tuple)):
            reasons = [r for r in (_field(c, "finish_reason") for c in choices) if isinstance(r, str)]
        elif isinstance(_field(response, "stop_reason"), str):
            reasons = [_field(response, "stop_reason")]
        self.record(
            response_model=_field(response, "model"),
            response_id=_field(response, "id"),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            finish_reasons=reasons,
        )

    def record_messages(self, *, input: Any = None, output: Any = None) -> None:
        """Prompts and completions: put on the span (redacted, as JSON) only when content capture is on."""
        if not self.captures_content:
            return
        for key, messages in ((INPUT_MESSAGES, input), (OUTPUT_MESSAGES, output)):
            if messages is not None:
                self.span.set_attribute(key, json.dumps(redact(messages), default=str, ensure_ascii=False))

    def _span_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        if self.response_model:
            attributes[RESPONSE_MODEL] = self.response_model
        if self.response_id:
            attributes[RESPONSE_ID] = self.response_id
        if self.input_tokens is not None:
            attributes[INPUT_TOKENS] = self.input_tokens
        if self.output_tokens is not None:
            attributes[OUTPUT_TOKENS] = self.output_tokens
        if self.finish_reasons is not None:
            attributes[FINISH_REASONS] = self.finish_reasons
        if self.error_type:
            attributes[ERROR_TYPE] = self.error_type
        return attributes


def _traced_elsewhere(provider: str) -> bool:
    """True when another instrumentation makes the GenAI span of this call."""
    from opentelemetry import trace

    current = trace.get_current_span()
    attributes = getattr(current, "attributes", None)
    if current.is_recording() and attributes and OPERATION_NAME in attributes:
        return True
    if provider in OPENAI_PROVIDERS:
        module = sys.modules.get("opentelemetry.instrumentation.openai_v2")
        return module is not None and module.OpenAIInstrumentor().is_instrumented_by_opentelemetry
    return False


class llm_call(contextlib.ContextDecorator):  # lower case: used like a function, as contextlib.suppress
    """Trace one LLM call (a context manager giving an :class:`LLMCall`, or a decorator).

    Args:
        model: the requested model (``gen_ai.request.model``); the span is named ``{operation} {model}``.
        provider: ``gen_ai.provider.name``: ``openai``, ``anthropic``, ``aws.bedrock``, ``gcp.vertex_ai``,
            ``azure.ai.openai``, ``mistral_ai``, ... (the convention's values) or your own.
        operation: ``gen_ai.operation.name``: ``chat`` (default), ``text_completion``, ``embeddings``,
            ``generate_content``, ...
        server_address, server_port: where the model is served (``server.address``, ``server.port``).
        span: True or False forces the span on or off; None (default) skips it when another instrumentation
            already traces the call (see the module docstring).
    """

    def __init__(
        self,
        model: str,
        provider: str,
        operation: str = "chat",
        *,
        server_address: str | None = None,
        server_port: int | None = None,
        span: bool | None = None,
    ):
        self.model, self.provider, self.operation = str(model or ""), str(provider or ""), str(operation or "chat")
        self.server_address, self.server_port, self.span = server_address, server_port, span
        self._call: LLMCall | None = None
        self._span_cm: Any = None
        self._token: contextvars.Token | None = None
        self._started = 0.0

    def _recreate_cm(self) -> llm_call:
        # As a decorator: a fresh block per call, so concurrent calls of the function do not share state.
        return llm_call(
            self.model,
            self.provider,
            self.operation,
            server_address=self.server_address,
            server_port=self.server_port,
            span=self.span,
        )

    def __enter__(self) -> LLMCall:
        current = runtime.current()
        capture = current is not None and (
            current.config.otel_instrumentation_genai_capture_message_content in CONTENT_ON_SPAN
        )
        call = self._call = LLMCall(self.operation, self.provider, self.model, capture=capture)
        traced = is_enabled()
        if traced and (self.span is True or (self.span is None and not _traced_elsewhere(self.provider))):
            call.span = self._start_span()
        self._token = _current.set(call)
        self._started = time.perf_counter()
        return call

    def _start_span(self) -> Any:
        from opentelemetry import trace

        attributes: dict[str, Any] = {
            OPERATION_NAME: self.operation,
            PROVIDER_NAME: self.provider,
            SYSTEM: self.provider,
        }
        if self.model:
            attributes[REQUEST_MODEL] = self.model
        if self.server_address:
            attributes["server.address"] = self.server_address
        if isinstance(self.server_port, int):
            attributes["server.port"] = self.server_port
        tracer = trace.get_tracer(TRACER_NAME, __version__)
        # No exception event: an SDK error message may quote the prompt.
        self._span_cm = tracer.start_as_current_span(
            f"{self.operation} {self.model}" if self.model else self.operation,
            kind=trace.SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )
        return self._span_cm.__enter__()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        seconds = time.perf_counter() - self._started
        call = self._call
        if call is None:
            return
        if self._token is not None:
            _current.reset(self._token)
        if exc_type is not None and call.error_type is None:
            call.error_type = exc_type.__qualname__
        if call.span is not None:
            try:
                call.span.set_attributes(call._span_attributes())
                if call.error_type:
                    from opentelemetry.trace import Status, StatusCode

                    call.span.set_status(Status(StatusCode.ERROR, call.error_type))
            finally:
                self._span_cm.__exit__(exc_type, exc, tb)
        _record_metrics(call, seconds)


def _record_metrics(call: LLMCall, seconds: float) -> None:
    current = runtime.current()
    if current is None or current.metrics is None:
        return
    from ..metrics.genai import record_llm_call

    record_llm_call(
        current.metrics.catalogue,
        operation=call.operation,
        provider=call.provider,
        request_model=call.request_model,
        response_model=call.response_model or "",
        seconds=seconds,
        input_tokens=call.input_tokens,
        output_tokens=call.output_tokens,
        error_type=call.error_type,
    )
