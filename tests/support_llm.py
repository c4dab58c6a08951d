"""A local fake LLM server on loopback, OpenAI- and Anthropic-compatible, so the real ``openai`` and
``anthropic`` SDKs can be pointed at it: ``POST /v1/chat/completions`` (``openai.OpenAI(base_url=server.base_url)``)
and ``POST /v1/messages`` (``anthropic.Anthropic(base_url=server.anthropic_url)``), each answering a fixed reply
with fixed usage, as JSON or, with ``"stream": true``, as server-sent events.

The known workload's token counts (and the shipped prices they cost, USD per million tokens):

- OpenAI: 57 input tokens of which 32 cached, 116 output tokens of which 20 reasoning;
  gpt-4o-mini costs (57 - 32) x 0.15 + 32 x 0.075 + 116 x 0.60 = 0.00007575 per call.
  A stream reports usage only when asked (``stream_options={"include_usage": True}``).
- Anthropic: 40 uncached input tokens + 200 read from the cache + 50 written to it (290 input), 90 output;
  claude-sonnet-4-5 costs 40 x 3 + 200 x 0.30 + 50 x 3.75 + 90 x 15 = 0.0017175 per call.
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

from tests import support

PROMPT_TOKENS, COMPLETION_TOKENS = 57, 116
CACHED_TOKENS, REASONING_TOKENS = 32, 20
OPENAI_COST = ((PROMPT_TOKENS - CACHED_TOKENS) * 0.15 + CACHED_TOKENS * 0.075 + COMPLETION_TOKENS * 0.60) / 1e6

ANTHROPIC_INPUT, ANTHROPIC_CACHE_READ, ANTHROPIC_CACHE_WRITE, ANTHROPIC_OUTPUT = 40, 200, 50, 90
ANTHROPIC_TOTAL_INPUT = ANTHROPIC_INPUT + ANTHROPIC_CACHE_READ + ANTHROPIC_CACHE_WRITE
ANTHROPIC_COST = (
    ANTHROPIC_INPUT * 3.0 + ANTHROPIC_CACHE_READ * 0.30 + ANTHROPIC_CACHE_WRITE * 3.75 + ANTHROPIC_OUTPUT * 15.0
) / 1e6
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"


class FakeLLM:
    """``with FakeLLM() as server``: ``server.base_url`` (``http://127.0.0.1:<port>/v1``, for openai),
    ``server.anthropic_url`` (``http://127.0.0.1:<port>``), ``server.requests`` (the JSON bodies received).
    ``status`` other than 200 answers a provider-style error; ``echo_prompt``: its message quotes the last
    message's content, as OpenAI's 400s do (``Invalid 'messages[1].content': '<the prompt>' ...``)."""

    def __init__(self, reply: str = "Here is what I found.", status: int = 200, echo_prompt: bool = False) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply, self.status, self.echo_prompt = reply, status, echo_prompt
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = json.loads(body or b"{}")
                fake.requests.append(request)
                if self.path not in ("/v1/chat/completions", "/v1/messages"):
                    return self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                if fake.status != 200:
                    message = "overloaded"
                    if fake.echo_prompt:
                        content = (request.get("messages") or [{}])[-1].get("content")
                        message = f"Invalid 'messages[-1].content': {content!r} violates the usage policy."
                    kind = "invalid_request_error" if fake.echo_prompt else "server_error"
                    error = {"message": message, "type": kind}
                    return self._send(fake.status, {"error": error})
                if self.path == "/v1/messages":
                    if request.get("stream"):
                        return self._events(fake.anthropic_events(request.get("model", "claude-sonnet-4-5")))
                    return self._send(200, fake.message(request.get("model", "claude-sonnet-4-5")))
                model = request.get("model", "gpt-4o-mini")
                if request.get("stream"):
                    usage = (request.get("stream_options") or {}).get("include_usage", False)
                    return self._events([(None, c) for c in fake.chunks(model, usage)] + [(None, "[DONE]")])
                self._send(200, fake.completion(model, request))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _events(self, events: list[tuple[str | None, Any]]) -> None:
                data = b""
                for name, payload in events:
                    text = payload if isinstance(payload, str) else json.dumps(payload)
                    data += (f"event: {name}\n" if name else "").encode() + f"data: {text}\n\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", support.free_port()), Handler)
        self.anthropic_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.base_url = f"{self.anthropic_url}/v1"

    @staticmethod
    def openai_usage() -> dict[str, Any]:
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
            "completion_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
        }

    def completion(self, model: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """The reply; to a request offering ``tools`` and holding no tool result yet, a call of the first tool
        (an agent's first step) with ``{"plan": "blue"}``."""
        request = request or {}
        message: dict[str, Any] = {"role": "assistant", "content": self.reply}
        finish = "stop"
        tools = request.get("tools") or []
        if tools and not any(m.get("role") == "tool" for m in request.get("messages", [])):
            name = tools[0]["function"]["name"]
            call = {
                "id": "call_fake_1",
                "type": "function",
                "function": {"name": name, "arguments": '{"plan": "blue"}'},
            }
            message, finish = {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls"
        return {
            "id": "chatcmpl-fake-1",
            "object": "chat.completion",
            "created": 1772721000,
            "model": f"{model}-2024-07-18",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self.openai_usage(),
        }

    def chunks(self, model: str, usage: bool) -> list[dict[str, Any]]:
        base = {"id": "chatcmpl-fake-2", "object": "chat.completion.chunk", "created": 1772721000}
        base["model"] = f"{model}-2024-07-18"
        words = self.reply.split(" ")
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"content": w + " "}, "finish_reason": None}]} for w in words
        ]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if usage:
            chunks.append({**base, "choices": [], "usage": self.openai_usage()})
        return chunks

    @staticmethod
    def anthropic_usage() -> dict[str, Any]:
        return {
            "input_tokens": ANTHROPIC_INPUT,
            "cache_read_input_tokens": ANTHROPIC_CACHE_READ,
            "cache_creation_input_tokens": ANTHROPIC_CACHE_WRITE,
            "output_tokens": ANTHROPIC_OUTPUT,
        }

    def message(self, model: str) -> dict[str, Any]:
        return {
            "id": "msg_fake_1",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_MODEL if model.startswith("claude-sonnet-4-5") else model,
            "content": [{"type": "text", "text": self.reply}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": self.anthropic_usage(),
        }

    def anthropic_events(self, model: str) -> list[tuple[str, dict[str, Any]]]:
        message = {**self.message(model), "content": [], "stop_reason": None}
        message["usage"] = {**self.anthropic_usage(), "output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": message})]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            )
        )
        for word in self.reply.split(" "):
            delta = {"type": "text_delta", "text": word + " "}
            events.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": ANTHROPIC_OUTPUT},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def __enter__(self) -> FakeLLM:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


FakeOpenAI = FakeLLM  # the name the older tests use
