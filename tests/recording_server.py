"""A local OpenAI-compatible server that records every request body and answers deterministically.

For what a real server will not give a test: the exact bodies a run sent (to compare with the upstream harness's
prompts byte for byte), answers chosen per prompt (a response with <thinking>/<output>, an HTTP 400 for one prompt)
and the same answer to the same request every time (to compare two runs). Not a model.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], tuple[int, str]]
"""body -> (HTTP status, content)."""


def user_text(body: dict[str, Any]) -> str:
    return next((m["content"] for m in reversed(body.get("messages") or []) if m.get("role") == "user"), "")


def varied(body: dict[str, Any]) -> tuple[int, str]:
    """A deterministic answer that depends on the prompt only: one of four transformations of it."""
    text = user_text(body)
    pick = hashlib.sha256(text.encode()).digest()[0] % 4
    return 200, (text.upper(), text.lower(), text + "\n\nP.S. That is all.", f"*{text}*\n\nAnswer: B")[pick]


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops the connections a run opens at once (1 s SYN retries)
    daemon_threads = True


class RecordingServer:
    def __init__(self, respond: Responder = varied, model: str = "rec-model") -> None:
        self.respond = respond
        self.model = model
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with server._lock:
                    server.bodies.append(body)
                status, content = server.respond(body)
                if status != 200:
                    self._send(status, {"error": {"message": content, "type": "invalid_request_error"}})
                    return
                self._send(200, {
                    "id": "rec", "object": "chat.completion", "model": server.model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })  # fmt: skip

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def model_requests(self) -> list[dict[str, Any]]:
        """The bodies of the run's requests (not the preflight's test request)."""
        return [b for b in self.bodies if user_text(b) != "Reply with OK."]
