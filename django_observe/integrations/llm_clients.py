"""The openai and anthropic SDKs: every call measured, with or without tracing, and without ``llm_call``.

A light wrapper around ``chat.completions.create`` and ``responses.create`` (openai) and ``messages.create``
(anthropic), sync and async, streaming or not, records what :func:`django_observe.llm_call` records: tokens by
type, cost, duration, and for a stream the time to its first chunk and the usage reported at its end
(openai chat completions report it only with ``stream_options={"include_usage": True}``). It opens no span:
with tracing on, the GenAI instrumentations (``opentelemetry-instrumentation-genai-openai``/``-anthropic``,
switched on by ``tracing.setup``) make the spans, and :class:`~django_observe.integrations.genai.CostHook` puts the
cost on them. Inside an ``llm_call`` block the first SDK call fills the block's call instead, so the call is
counted once.

The SDK is patched when the project imports it (a post-import hook), never imported for it.
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..llm.usage import field, usage_from
from . import _uses
from ._patching import after_import
from .genai import LLMCall, current_llm_call, record_call, withhold

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["LLMClientsIntegration", "SDKPatch", "integration"]

logger = logging.getLogger("django_observe.genai")
ORIGINAL = "__django_observe_original__"
_installed: set[str] = set()


class Measured:
    """One SDK call being measured: its own :class:`LLMCall`, or the enclosing ``llm_call`` block's."""

    __slots__ = ("call", "chunks", "claimed", "done", "started")

    def __init__(self, provider: str, model: str):
        block = current_llm_call()
        self.claimed = block is not None and not block._claimed
        if self.claimed:
            assert block is not None
            block._claimed = True
            self.call = block
        else:
            self.call = LLMCall("chat", provider, model)
        self.started = time.perf_counter()
        self.chunks = 0
        self.done = False

    def response(self, response: Any) -> None:
        self.call.record_response(response)

    def stream_started(self) -> None:
        if self.claimed:
            self.call._pending = True

    def chunk(self, item: Any) -> None:
        """Read one stream item: openai chat chunks, Responses API events, Anthropic message events."""
        call = self.call
        if self.chunks == 0:
            call.record(time_to_first_chunk=time.perf_counter() - self.started)
        self.chunks += 1
        kind = field(item, "type")
        if kind == "message_start":  # anthropic: model, id and input usage
            message = field(item, "message")
            call.record(response_model=field(message, "model"), response_id=field(message, "id"))
            call.record_usage(usage_from(field(message, "usage")))
        elif kind == "message_delta":  # anthropic: the output count so far, the stop reason
            usage = field(item, "usage")
            call.record(output_tokens=field(usage, "output_tokens"))
            reason = field(field(item, "delta"), "stop_reason")
            if isinstance(reason, str):
                call.record(finish_reasons=[reason])
        elif kind in ("response.completed", "response.incomplete", "response.failed"):  # openai Responses API
            call.record_response(field(item, "response"))
        elif kind is None:  # openai chat completion chunk
            call.record(response_model=field(item, "model"), response_id=field(item, "id"))
            usage = field(item, "usage")
            if usage is not None:
                call.record_usage(usage_from(usage))
            choices = field(item, "choices")
            if isinstance(choices, (list, tuple)):
                reasons = [r for r in (field(c, "finish_reason") for c in choices) if isinstance(r, str)]
                if reasons:
                    call.record(finish_reasons=reasons)

    def finish(self, error: BaseException | None = None) -> None:
        if self.done:
            return
        self.done = True
        call = self.call
        if error is not None:
            withhold(error)  # its message may quote the prompt (a provider's 400)
        if error is not None and call.error_type is None:
            call.error_type = type(error).__qualname__
        if self.claimed:
            if call._pending:  # the block ended before the stream: record the call now, for both
                call._pending = False
                if _block_closed(call):
                    record_call(call, time.perf_counter() - self.started)
            return
        record_call(call, time.perf_counter() - self.started)


def _block_closed(call: LLMCall) -> bool:
    return current_llm_call() is not call


class Stream:
    """A stream of the SDK, measured as it is read; everything else is the stream's own."""

    def __init__(self, stream: Any, measured: Measured):
        self._stream, self._measured = stream, measured
        measured.stream_started()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._stream)
        except StopIteration:
            self._measured.finish()
            raise
        except BaseException as exc:
            self._measured.finish(exc)
            raise
        self._measured.chunk(item)
        return item

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: Any) -> Any:
        try:
            return self._stream.__exit__(*exc)
        finally:
            self._measured.finish(exc[1])

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._measured.finish()


class AsyncStream:
    """An async stream of the SDK, measured as it is read."""

    def __init__(self, stream: Any, measured: Measured):
        self._stream, self._measured = stream, measured
        measured.stream_started()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._stream.__anext__()
        except StopAsyncIteration:
            self._measured.finish()
            raise
        except BaseException as exc:
            self._measured.finish(exc)
            raise
        self._measured.chunk(item)
        return item

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self._stream.__aexit__(*exc)
        finally:
            self._measured.finish(exc[1])

    async def close(self) -> None:
        try:
            await self._stream.close()
        finally:
            self._measured.finish()


def _streaming(kwargs: dict[str, Any]) -> bool:
    return kwargs.get("stream") is True


def _measured(provider: str, kwargs: dict[str, Any]) -> Measured | None:
    try:
        return Measured(provider, str(kwargs.get("model") or ""))
    except Exception:  # measuring never breaks the call
        logger.exception("django_observe could not measure an LLM call")
        return None


def _sync(original: Callable[..., Any], provider: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = original.__get__(self, type(self))
        measured = _measured(provider, kwargs)
        if measured is None:
            return bound(*args, **kwargs)
        try:
            result = bound(*args, **kwargs)
        except BaseException as exc:
            measured.finish(exc)
            raise
        if _streaming(kwargs):
            return Stream(result, measured)
        measured.response(result)
        measured.finish()
        return result

    setattr(create, ORIGINAL, original)
    return create


def _async(original: Callable[..., Any], provider: str) -> Callable[..., Any]:
    @functools.wraps(original)
    async def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = original.__get__(self, type(self))
        measured = _measured(provider, kwargs)
        if measured is None:
            return await bound(*args, **kwargs)
        try:
            result = await bound(*args, **kwargs)
        except BaseException as exc:
            measured.finish(exc)
            raise
        if _streaming(kwargs):
            return AsyncStream(result, measured)
        measured.response(result)
        measured.finish()
        return result

    setattr(create, ORIGINAL, original)
    return create


class SDKPatch:
    """One SDK's measured methods.

    Args:
        name: the SDK's top-level package (``openai``, ``anthropic``), also the provider name.
        targets: (module, sync class, async class) whose ``create`` is measured.
    """

    def __init__(self, name: str, targets: tuple[tuple[str, str, str], ...]):
        self.name = name
        self.targets = targets

    def installed(self) -> bool:
        return _uses.importable(self.name)

    def install(self) -> None:
        """Patch now if the SDK is imported, else right after its first import (idempotent)."""
        if self.name in sys.modules:
            self._patch()
        elif self.name not in _installed:
            _installed.add(self.name)
            after_import(self.name, self._patch)

    def _patch(self) -> None:
        if self.name in _removed:
            return
        for module_name, sync_name, async_name in self.targets:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            for class_name, wrap in ((sync_name, _sync), (async_name, _async)):
                cls: Any = getattr(module, class_name, None)
                original = None if cls is None else cls.__dict__.get("create")
                if original is None or getattr(original, ORIGINAL, None) is not None:
                    continue
                cls.create = wrap(original, self.name)

    def uninstall(self) -> None:
        """Restore ``create`` where our wrapper is still the outermost."""
        for module_name, sync_name, async_name in self.targets:
            module = sys.modules.get(module_name)
            for class_name in (sync_name, async_name):
                cls: Any = getattr(module, class_name, None)
                current = None if cls is None else cls.__dict__.get("create")
                original = getattr(current, ORIGINAL, None)
                if original is not None:
                    cls.create = original


_removed: set[str] = set()  # uninstalled: a pending post-import hook patches nothing
SDKS = (
    SDKPatch(
        "openai",
        (
            ("openai.resources.chat.completions", "Completions", "AsyncCompletions"),
            ("openai.resources.responses", "Responses", "AsyncResponses"),
        ),
    ),
    SDKPatch("anthropic", (("anthropic.resources.messages", "Messages", "AsyncMessages"),)),
)


class LLMClientsIntegration:
    """The ``llm_clients`` row: the openai and anthropic SDKs' calls measured (see the module docstring)."""

    name = "llm_clients"

    def available(self, runtime: Runtime) -> bool:
        """An SDK is installed (:func:`integrations._uses.llm_sdks`): patched when the project imports it."""
        return _uses.llm_sdks(runtime)

    def install(self, runtime: Runtime) -> None:
        """Patch each installed SDK now if imported, else on its import. The wrappers record through
        ``integrations.genai`` (what its row bound for the runtime), so a rebuilt runtime needs nothing more."""
        for sdk in SDKS:
            if sdk.installed():
                _removed.discard(sdk.name)
                sdk.install()

    def uninstall(self) -> None:
        """Restore the SDKs' ``create`` methods."""
        for sdk in SDKS:
            _removed.add(sdk.name)
            sdk.uninstall()


integration = LLMClientsIntegration()
