"""LLM calls as OpenTelemetry GenAI client spans, and their tokens, cost and latency as metrics.

Around any client (a context manager, or a decorator)::

    from django_observe import llm_call

    with llm_call(model="claude-sonnet-4", provider="anthropic") as call:
        response = client.messages.create(model="claude-sonnet-4", messages=messages, max_tokens=512)
        call.record_response(response)  # or call.record(input_tokens=..., output_tokens=..., ...)

opens a CLIENT span ``chat claude-sonnet-4`` with the GenAI semantic-convention attributes and records
``gen_ai_client_token_usage`` (by token type: input, output, cache_read, cache_write, reasoning),
``gen_ai_client_operation_duration_seconds`` and ``gen_ai_client_cost_total`` (priced with ``LLM_PRICES``).
With tracing off there is no span but the metrics are still recorded. A call made through the openai or
anthropic SDK inside the block fills the call by itself (``integrations.llm_clients``); without a block such
calls are measured all the same.

Prompts and completions are never recorded unless ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
says so (``true``, ``span_only`` or ``span_and_event``), and then only what :meth:`LLMCall.record_messages`
is given, redacted. Nor through an error: the message of an exception leaving the block (a provider's 400
quotes the prompt) is handed to :func:`withhold`, and the span exporter and the console replace it wherever
it was written (``llm.content``).

No duplicate span: when the GenAI instrumentation of the SDK (``opentelemetry-instrumentation-genai-openai``
or ``-genai-anthropic``, switched on with tracing when installed) traces the call, or when a GenAI span is
already the current span, the helper opens no span of its own and only records the metrics; the cost is put
on the instrumentation's span by ``tracing.genai_cost.CostHook``. ``span=True``/``span=False`` overrides.

Span attributes follow the GenAI semantic conventions as ``opentelemetry-util-genai`` 1.3b0 writes them
(open-telemetry/semantic-conventions-genai, schema 1.37.0 and later): ``gen_ai.usage.input_tokens``,
``gen_ai.usage.output_tokens``, ``gen_ai.usage.cache_read.input_tokens``,
``gen_ai.usage.cache_write.input_tokens`` (formerly ``cache_creation``), ``gen_ai.usage.reasoning.output_tokens``
and ``gen_ai.response.time_to_first_chunk``. The conventions have no cost attribute: ours are
``django_observe.llm.cost`` and ``django_observe.llm.currency`` (or ``django_observe.llm.unpriced``).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import sys
import time
from collections.abc import Iterable
from typing import Any, Protocol

from .. import __version__
from ..llm.content import CONTENT_ON_SPAN
from ..llm.pricing import PriceTable, call_cost
from ..llm.usage import Usage, add_to_request, field, usage_from
from ..metrics.recorders import llm_metrics
from ..redaction import redact
from ..runtime import Runtime, WithheldErrors
from ..tracing import agents, genai_cost, is_enabled
from ..tracing.genai_cost import (
    CACHE_READ_TOKENS,
    CACHE_WRITE_TOKENS,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    REASONING_TOKENS,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    CostHook,
    cost_attributes,
)

__all__ = [
    "CostHook",
    "GenAIIntegration",
    "LLMCall",
    "LLMRecorder",
    "current_llm_call",
    "integration",
    "llm_call",
    "record_call",
    "withhold",
]

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
# Deprecated for gen_ai.provider.name in the installed semantic conventions, but still what older
# instrumentations write: both are set so one query finds either span.
SYSTEM = "gen_ai.system"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"

# The GenAI instrumentation (module, class) that traces each provider's calls through its SDK.
INSTRUMENTATIONS = {
    "openai": ("opentelemetry.instrumentation.genai.openai", "OpenAIInstrumentor"),
    "azure.ai.openai": ("opentelemetry.instrumentation.genai.openai", "OpenAIInstrumentor"),
    "anthropic": ("opentelemetry.instrumentation.genai.anthropic", "AnthropicInstrumentor"),
}
TRACER_NAME = "django_observe.genai"

_current: contextvars.ContextVar[LLMCall | None] = contextvars.ContextVar("django_observe_llm_call", default=None)


def current_llm_call() -> LLMCall | None:
    """The call of the innermost ``llm_call`` block (a decorated function records usage through it)."""
    return _current.get()


def _tokens(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


class LLMCall:
    """What one LLM call reported; given by ``with llm_call(...) as call``."""

    __slots__ = (
        "cache_read_tokens",
        "cache_write_tokens",
        "cost",
        "cost_by_type",
        "currency",
        "error_type",
        "finish_reasons",
        "input_tokens",
        "operation",
        "output_tokens",
        "provider",
        "reasoning_tokens",
        "request_model",
        "response_id",
        "response_model",
        "span",
        "time_to_first_chunk",
        "_capture",
        "_claimed",
        "_pending",
    )

    def __init__(self, operation: str, provider: str, request_model: str, span: Any = None, capture: bool = False):
        self.operation, self.provider, self.request_model = operation, provider, request_model
        self.span = span
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.cache_read_tokens: int | None = None
        self.cache_write_tokens: int | None = None
        self.reasoning_tokens: int | None = None
        self.time_to_first_chunk: float | None = None
        self.finish_reasons: tuple[str, ...] | None = None
        self.error_type: str | None = None
        self.cost: float | None = None  # set when the call is recorded: its cost, None when unpriced
        self.cost_by_type: dict[str, float] | None = None
        self.currency: str | None = None
        self._capture = capture
        self._claimed = False  # an SDK call inside the block fills it (integrations.llm_clients)
        self._pending = False  # a stream of that call is still being read: it records the call at its end

    @property
    def captures_content(self) -> bool:
        """True when prompts and completions given to :meth:`record_messages` go on the span."""
        return self._capture and self.span is not None

    @property
    def usage(self) -> Usage:
        """The token counts recorded so far."""
        return Usage(
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
        )

    def record(
        self,
        *,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reasons: Iterable[str] | None = None,
        response_id: str | None = None,
        cache_read_tokens: int | None = None,
        cache_write_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        time_to_first_chunk: float | None = None,
    ) -> None:
        """Usage the provider reported. Token counts that are not non-negative integers are ignored.

        ``input_tokens`` counts every input token (cached ones included), ``output_tokens`` every output token
        (reasoning included); the cache and reasoning counts are parts of them.
        """
        if isinstance(response_model, str) and response_model:
            self.response_model = response_model
        if isinstance(response_id, str) and response_id:
            self.response_id = response_id
        for name, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("cache_read_tokens", cache_read_tokens),
            ("cache_write_tokens", cache_write_tokens),
            ("reasoning_tokens", reasoning_tokens),
        ):
            if value is not None:
                setattr(self, name, _tokens(value))
        if isinstance(time_to_first_chunk, (int, float)) and not isinstance(time_to_first_chunk, bool):
            self.time_to_first_chunk = max(float(time_to_first_chunk), 0.0)
        if finish_reasons is not None and not isinstance(finish_reasons, str):
            self.finish_reasons = tuple(str(r) for r in finish_reasons if r is not None)

    def record_usage(self, usage: Usage) -> None:
        """Token counts by type (see :class:`django_observe.llm.usage.Usage`)."""
        self.record(
            input_tokens=usage.input,
            output_tokens=usage.output,
            cache_read_tokens=usage.cache_read,
            cache_write_tokens=usage.cache_write,
            reasoning_tokens=usage.reasoning,
        )

    def record_response(self, response: Any) -> None:
        """Read model, id, usage (cached and reasoning tokens included) and finish reasons from a response object
        or dict: OpenAI chat completions (``usage.prompt_tokens``/``completion_tokens``,
        ``choices[].finish_reason``), the OpenAI Responses API and Anthropic (``usage.input_tokens``/
        ``output_tokens``, ``stop_reason``)."""
        self.record_usage(usage_from(field(response, "usage")))
        choices = field(response, "choices")
        reasons: list[str] | None = None
        if isinstance(choices, (list, tuple)):
            reasons = [r for r in (field(c, "finish_reason") for c in choices) if isinstance(r, str)]
        elif isinstance(field(response, "stop_reason"), str):
            reasons = [field(response, "stop_reason")]
        self.record(response_model=field(response, "model"), response_id=field(response, "id"), finish_reasons=reasons)

    def record_messages(self, *, input: Any = None, output: Any = None) -> None:
        """Prompts and completions: put on the span (redacted, as JSON) only when content capture is on."""
        if not self.captures_content:
            return
        for key, messages in ((INPUT_MESSAGES, input), (OUTPUT_MESSAGES, output)):
            if messages is not None:
                self.span.set_attribute(key, json.dumps(redact(messages), default=str, ensure_ascii=False))

    def _span_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        for key, value in (
            (RESPONSE_MODEL, self.response_model),
            (RESPONSE_ID, self.response_id),
            (INPUT_TOKENS, self.input_tokens),
            (OUTPUT_TOKENS, self.output_tokens),
            (CACHE_READ_TOKENS, self.cache_read_tokens),
            (CACHE_WRITE_TOKENS, self.cache_write_tokens),
            (REASONING_TOKENS, self.reasoning_tokens),
            (TIME_TO_FIRST_CHUNK, self.time_to_first_chunk),
            (FINISH_REASONS, self.finish_reasons),
            (ERROR_TYPE, self.error_type),
        ):
            if value is not None and value != "":
                attributes[key] = value
        return attributes


def _traced_elsewhere(provider: str) -> bool:
    """True when another instrumentation makes the GenAI span of this call."""
    from opentelemetry import trace

    current = trace.get_current_span()
    attributes = getattr(current, "attributes", None)
    if current.is_recording() and attributes and OPERATION_NAME in attributes:
        return True
    instrumentation = INSTRUMENTATIONS.get(provider)
    if instrumentation is None:
        return False
    module = sys.modules.get(instrumentation[0])
    return module is not None and getattr(module, instrumentation[1])().is_instrumented_by_opentelemetry


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
        call = self._call = LLMCall(self.operation, self.provider, self.model, capture=_bound.capture)
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
        if exc is not None:
            withhold(exc)
        if exc_type is not None and call.error_type is None:
            call.error_type = exc_type.__qualname__
        cost = None
        if not call._pending:  # else the stream still being read records the call when it ends
            cost = record_call(call, seconds)
        if call.span is not None:
            try:
                attributes = call._span_attributes()
                if not call._pending and not call.usage.empty:
                    attributes.update(cost_attributes(cost, call.currency or ""))
                call.span.set_attributes(attributes)
                if call.error_type:
                    from opentelemetry.trace import Status, StatusCode

                    call.span.set_status(Status(StatusCode.ERROR, call.error_type))
            finally:
                self._span_cm.__exit__(exc_type, exc, tb)


def withhold(error: BaseException) -> None:
    """Keep the message of ``error``, which left an LLM call, off spans and the console (content capture
    off; with it on, nothing is done)."""
    withheld = _bound.withheld
    if withheld is not None:
        try:
            withheld.add(error)
        except Exception:  # recording never breaks the call's own error
            pass


def record_call(call: LLMCall, seconds: float) -> dict[str, float] | None:
    """Price one finished call with the bound price table, count it in the request's totals and tell the
    recorders (the metrics, the console); its cost by type (None when unpriced or without token counts)."""
    table = _bound.prices
    usage = call.usage
    cost = None
    if not usage.empty:
        cost = call_cost(usage, table.price(call.response_model, call.request_model))
        add_to_request(usage, None if cost is None else sum(cost.values()), table.currency)
    call.cost_by_type, call.currency = cost, table.currency
    call.cost = None if cost is None else sum(cost.values())
    for recorder in _bound.recorders:
        recorder.llm_call(call, seconds)
    return cost


class LLMRecorder(Protocol):
    """Something told about every finished LLM call (the metrics, the console); the call's ``cost``,
    ``cost_by_type`` and ``currency`` are set before."""

    def llm_call(self, call: LLMCall, seconds: float) -> None: ...


class _Bound:
    """What ``llm_call`` needs of the runtime, bound by :meth:`GenAIIntegration.install`."""

    __slots__ = ("capture", "prices", "recorders", "withheld")

    def __init__(
        self,
        recorders: tuple[LLMRecorder, ...] = (),
        capture: bool = False,
        prices: PriceTable | None = None,
        withheld: WithheldErrors | None = None,
    ) -> None:
        self.recorders, self.capture, self.withheld = recorders, capture, withheld
        self.prices = prices if prices is not None else PriceTable.build("USD", {}, defaults=True)


_bound = _Bound()  # before django.setup() or after uninstall(): no metrics, no content on spans


class GenAIIntegration:
    """The ``genai`` row: hands ``llm_call`` (and the agent, tool and retrieval helpers) the runtime's LLM
    recorders, the price table and the content capture option."""

    name = "genai"

    def available(self, runtime: Runtime) -> bool:
        """Always: ``llm_call`` is django_observe's own helper, around any client."""
        return True

    def install(self, runtime: Runtime) -> None:
        """Bind ``runtime``'s recorders (``metrics.llm``, the console), its price table (``LLM_PRICES`` over the
        shipped defaults, in ``LLM_CURRENCY``) and ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``."""
        global _bound
        config = runtime.config
        metrics = llm_metrics(runtime.metrics)  # a do-nothing recorder with metrics off
        recorders: list[LLMRecorder] = [runtime.console, metrics] if runtime.console is not None else [metrics]
        capture = config.otel_instrumentation_genai_capture_message_content in CONTENT_ON_SPAN
        prices = PriceTable.build(config.llm_currency, config.llm_prices, config.llm_default_prices)
        _bound = _Bound(tuple(recorders), capture, prices, runtime.llm_errors)
        agents.bind(metrics, capture)
        genai_cost.bind(prices)

    def uninstall(self) -> None:
        """Unbind: calls are still traced, but recorded nowhere."""
        global _bound
        _bound = _Bound()
        agents.bind(agents.NO_DURATIONS, False)
        genai_cost.bind(None)


integration = GenAIIntegration()
