"""A local OpenAI-compatible server on loopback: ``POST /v1/chat/completions`` answers a fixed completion with
``usage``, so the real ``openai`` SDK can be pointed at it (``base_url=server.base_url``)."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

from tests import support

PROMPT_TOKENS, COMPLETION_TOKENS = 57, 116


class FakeOpenAI:
    """``with FakeOpenAI() as server``: ``server.base_url`` (``http://127.0.0.1:<port>/v1``), ``server.requests``
    (the JSON bodies received). ``status`` other than 200 answers an OpenAI-style error."""

    def __init__(self, reply: str = "Here is what I found.", status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        self.reply, self.status = reply, status
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = json.loads(body or b"{}")
                fake.requests.append(request)
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                if fake.status != 200:
                    return self._send(fake.status, {"error": {"message": "overloaded", "type": "server_error"}})
                self._send(200, fake.completion(request.get("model", "gpt-4o-mini")))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", support.free_port()), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def completion(self, model: str) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake-1",
            "object": "chat.completion",
            "created": 1772721000,
            "model": f"{model}-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            },
        }

    def __enter__(self) -> FakeOpenAI:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
