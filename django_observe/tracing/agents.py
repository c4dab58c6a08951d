"""Agent runs, tool calls and retrievals: GenAI spans and duration metrics, like :func:`~django_observe.llm_call`.

Context managers (or decorators)::

    from django_observe import execute_tool, invoke_agent, retrieval

    with invoke_agent("support-bot", agent_id=str(agent.pk)) as run:
        with retrieval("pgvector", name="pgvector.similarity_search") as found:
            documents = search(query)
            found.record(documents=len(documents))
        step = run.step()                                # 1: the first model call
        ...
        with execute_tool("lookup_plan", call_id=call.id, step=run.step()) as tool:
            tool.record(arguments=args, result=result)   # on the span only with content capture on

Spans (the GenAI agent conventions): ``invoke_agent {name}`` (``gen_ai.operation.name`` ``invoke_agent``,
``gen_ai.agent.name``, ``gen_ai.agent.id``; at its end ``django_observe.agent.steps`` and
``django_observe.agent.tools``, the distinct tools its tool calls used), ``execute_tool {tool}``
(``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ``gen_ai.tool.type``, ``django_observe.agent.step``) and
``retrieval {data source}`` (``gen_ai.data_source.id``, ``django_observe.retrieval.documents``: how many came
back). Metrics, with tracing on or off: ``gen_ai_invoke_agent_duration_seconds``,
``gen_ai_execute_tool_duration_seconds`` and ``gen_ai_retrieval_duration_seconds``.

Tool arguments and results (``gen_ai.tool.call.arguments``/``result``) and the retrieval query
(``gen_ai.retrieval.query.text``) go on the spans only when
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` says so, redacted. A failure sets ``error.type`` and
the span's status to its class name, never its message (it may quote the content).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import time
from typing import Any, Protocol

from .. import __version__
from ..redaction import redact
from . import is_enabled

__all__ = [
    "NO_DURATIONS",
    "AgentRun",
    "Retrieval",
    "ToolCall",
    "bind",
    "current_agent_run",
    "execute_tool",
    "invoke_agent",
    "retrieval",
]

TRACER_NAME = "django_observe.genai"
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
ERROR_TYPE = "error.type"

AGENT_ID = "gen_ai.agent.id"
AGENT_NAME = "gen_ai.agent.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
DATA_SOURCE = "gen_ai.data_source.id"
QUERY_TEXT = "gen_ai.retrieval.query.text"
STEP = "django_observe.agent.step"
STEPS = "django_observe.agent.steps"
TOOLS_USED = "django_observe.agent.tools"
DOCUMENTS = "django_observe.retrieval.documents"

_agent: contextvars.ContextVar[AgentRun | None] = contextvars.ContextVar("django_observe_agent_run", default=None)


class DurationRecorder(Protocol):
    """Where the helpers' durations go (``django_observe.metrics.genai.LLMMetrics``)."""

    def agent(self, name: str, seconds: float, error_type: str | None) -> None: ...

    def tool(self, name: str, seconds: float, error_type: str | None) -> None: ...

    def retrieval(self, data_source: str, seconds: float, error_type: str | None) -> None: ...


class _NoDurations:
    """Records nothing (metrics off, or before ``integrations.genai`` binds a runtime's recorder)."""

    __slots__ = ()

    def agent(self, name: str, seconds: float, error_type: str | None) -> None:
        pass

    def tool(self, name: str, seconds: float, error_type: str | None) -> None:
        pass

    def retrieval(self, data_source: str, seconds: float, error_type: str | None) -> None:
        pass


NO_DURATIONS: DurationRecorder = _NoDurations()


class _Bound:
    __slots__ = ("capture", "recorder")

    def __init__(self, recorder: DurationRecorder = NO_DURATIONS, capture: bool = False) -> None:
        self.recorder, self.capture = recorder, capture


_bound = _Bound()


def bind(recorder: DurationRecorder, capture: bool) -> None:
    """Hand the helpers their recorder (:data:`NO_DURATIONS` with metrics off) and whether content goes on
    spans (``integrations.genai`` does, for each runtime)."""
    global _bound
    _bound = _Bound(recorder, capture)


def current_agent_run() -> AgentRun | None:
    """The run of the innermost ``invoke_agent`` block."""
    return _agent.get()


def _captures() -> bool:
    return _bound.capture


def _content(value: Any) -> str:
    redacted = redact(value)
    return redacted if isinstance(redacted, str) else json.dumps(redacted, default=str, ensure_ascii=False)


class _Operation(contextlib.ContextDecorator):
    """One span (when tracing is on) and one duration observation (always)."""

    operation = ""

    def __init__(self, span_name: str, attributes: dict[str, Any]):
        self._span_name, self._attributes = span_name, attributes
        self._span_cm: Any = None
        self.span: Any = None
        self._started = 0.0
        self.error_type: str | None = None

    def _recreate_cm(self) -> _Operation:
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._span_cm = clone.span = None
        return clone

    def __enter__(self) -> Any:
        if is_enabled():
            from opentelemetry import trace

            tracer = trace.get_tracer(TRACER_NAME, __version__)
            attributes = {k: v for k, v in self._attributes.items() if v is not None}
            attributes[OPERATION_NAME] = self.operation
            self._span_cm = tracer.start_as_current_span(
                self._span_name,
                kind=trace.SpanKind.INTERNAL,
                attributes=attributes,
                record_exception=False,  # an exception's message may quote a prompt or a tool's arguments
                set_status_on_exception=False,
            )
            self.span = self._span_cm.__enter__()
        self._started = time.perf_counter()
        return self

    def _set(self, key: str, value: Any) -> None:
        if self.span is not None and value is not None:
            self.span.set_attribute(key, value)

    def _finish(self, seconds: float) -> None:
        raise NotImplementedError

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        seconds = time.perf_counter() - self._started
        if exc_type is not None and self.error_type is None:
            self.error_type = exc_type.__qualname__
        try:
            self._finish(seconds)
        finally:
            if self.span is not None:
                try:
                    if self.error_type:
                        from opentelemetry.trace import Status, StatusCode

                        self.span.set_attribute(ERROR_TYPE, self.error_type)
                        self.span.set_status(Status(StatusCode.ERROR, self.error_type))
                finally:
                    self._span_cm.__exit__(exc_type, exc, tb)


class AgentRun(_Operation):
    """An agent run: ``with invoke_agent("name", agent_id=...) as run``; ``run.step()`` counts its steps."""

    operation = "invoke_agent"

    def __init__(self, name: str, agent_id: str | None = None, provider: str | None = None):
        super().__init__(
            f"invoke_agent {name}" if name else "invoke_agent",
            {AGENT_NAME: name or None, AGENT_ID: agent_id, PROVIDER_NAME: provider},
        )
        self.name, self.agent_id = name, agent_id
        self.steps = 0
        self.tools: list[str] = []
        self._token: contextvars.Token | None = None

    def step(self) -> int:
        """Count one more step (a model call or a tool call) and return its number, from 1."""
        self.steps += 1
        return self.steps

    def __enter__(self) -> AgentRun:
        super().__enter__()
        self.steps, self.tools = 0, []
        self._token = _agent.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._token is not None:
            _agent.reset(self._token)
        super().__exit__(exc_type, exc, tb)

    def _finish(self, seconds: float) -> None:
        self._set(STEPS, self.steps)
        if self.tools:
            self._set(TOOLS_USED, tuple(dict.fromkeys(self.tools)))
        _bound.recorder.agent(self.name, seconds, self.error_type)


class ToolCall(_Operation):
    """A tool call: ``with execute_tool("name", call_id=..., step=...) as tool``."""

    operation = "execute_tool"

    def __init__(self, name: str, call_id: str | None = None, step: int | None = None, tool_type: str = "function"):
        super().__init__(
            f"execute_tool {name}" if name else "execute_tool",
            {TOOL_NAME: name or None, TOOL_CALL_ID: call_id, TOOL_TYPE: tool_type, STEP: step},
        )
        self.name = name

    def __enter__(self) -> ToolCall:
        super().__enter__()
        run = _agent.get()
        if run is not None:
            run.tools.append(self.name)
            if self._attributes.get(STEP) is None:
                self._set(STEP, run.step())
            if run.name:
                self._set(AGENT_NAME, run.name)
        return self

    def record(self, *, arguments: Any = None, result: Any = None) -> None:
        """The tool's arguments and result: on the span (redacted) only when content capture is on."""
        if self.span is None or not _captures():
            return
        if arguments is not None:
            self._set(TOOL_ARGUMENTS, _content(arguments))
        if result is not None:
            self._set(TOOL_RESULT, _content(result))

    def _finish(self, seconds: float) -> None:
        _bound.recorder.tool(self.name, seconds, self.error_type)


class Retrieval(_Operation):
    """A retrieval from a vector or search store: ``with retrieval("pgvector") as found``."""

    operation = "retrieval"

    def __init__(self, data_source: str, *, name: str | None = None, top_k: int | None = None):
        super().__init__(
            name or (f"retrieval {data_source}" if data_source else "retrieval"),
            {DATA_SOURCE: data_source or None, "gen_ai.request.top_k": top_k},
        )
        self.data_source = data_source
        self.documents: int | None = None

    def record(self, *, documents: int | None = None, query: str | None = None) -> None:
        """How many documents came back; the query text on the span only when content capture is on."""
        if isinstance(documents, int) and not isinstance(documents, bool) and documents >= 0:
            self.documents = documents
            self._set(DOCUMENTS, documents)
        if query is not None and self.span is not None and _captures():
            self._set(QUERY_TEXT, _content(query))

    def __enter__(self) -> Retrieval:
        super().__enter__()
        return self

    def _finish(self, seconds: float) -> None:
        _bound.recorder.retrieval(self.data_source, seconds, self.error_type)


invoke_agent = AgentRun
execute_tool = ToolCall
retrieval = Retrieval
