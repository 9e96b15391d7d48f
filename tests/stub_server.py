"""A scripted OpenAI-compatible stub server, for what a real server will not do on demand.

Used for faults (HTTP 429/500/400, connection resets, hangs, malformed JSON) and for the harness benchmark (answers
instantly). Not a model: never use it where the real embedded server can do the job.

Behaviour per request: the next entry of ``script`` (a list of actions), then ``default`` forever. Actions:
``ok`` (a chat completion whose content is ``answer``), ``400``, ``429``, ``500``, ``503``, ``reset`` (close the
connection without answering), ``hang`` (never answer), ``malformed`` (200 with a body that is not JSON),
``nochoices`` (200 JSON without choices), ``length`` (ok but finish_reason "length"), ``badutf8`` (ok, the answer
followed by bytes that are not UTF-8), ``surrogate`` (ok, the answer followed by a lone surrogate escape ``\\ud800``),
``cut`` (a 200 whose body stops short of its Content-Length, then the connection closes), ``502`` (an nginx-style
HTML error page). A request with ``"stream": true`` (the preflight) gets its ``ok`` as server-sent events.
``max_model_len`` (set through ``/control``) rejects with 400 every request whose ``max_tokens`` does not fit, as vLLM
does; ``report_ctx`` lists it in ``/v1/models``.
``GET /v1/models`` takes its own script (``models_script``: ``ok``, ``502``, ``cut``), then answers ``ok``.
A POST with JSON ``{"script": [...], "default": "ok", "answer": "...", "models_script": [...]}`` to ``/control``
replaces the scripts.
``--delay S`` answers ``ok`` after S seconds (a replica with some latency); ``--host`` picks the loopback address
(several stubs on one port, as replicas on several nodes); ``--models FILE`` serves that JSON as ``/v1/models``
(a real server's, so the stub passes for one of its replicas).
``GET /stats`` returns counts of requests seen and the last ``Authorization`` header received. ``GET /v1/models`` lists ``model``.

Written on raw asyncio (uvloop when available) so it can sustain thousands of requests per second on one core.
Run: ``python tests/stub_server.py --port 0`` prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter, deque
from typing import Any


class StubState:
    def __init__(self, model: str = "stub-model", answer: str = "Answer: A", default: str = "ok",
                 script: list[str] | None = None) -> None:  # fmt: skip
        self.model = model
        self.answer = answer
        self.default = default
        self.script: deque[str] = deque(script or [])
        self.models_script: deque[str] = deque()
        self.counts: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.keep_bodies = False
        self.last_authorization: str | None = None
        self.delay = 0.0
        self.models: bytes | None = None
        self.max_model_len: int | None = None
        self.report_ctx = False

    def next_action(self) -> str:
        return self.script.popleft() if self.script else self.default


def _response(status: int, body: bytes, reason: str = "OK") -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


class StubProtocol(asyncio.Protocol):
    def __init__(self, state: StubState) -> None:
        self.state = state
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
                elif k.strip().lower() == "authorization":
                    self.state.last_authorization = v.strip()
            if len(self.buf) < end + 4 + length:
                return
            body = self.buf[end + 4 : end + 4 + length]
            self.buf = self.buf[end + 4 + length :]
            method, path = head.split(" ", 2)[:2]
            if not self.handle(method, path, body):
                return

    def handle(self, method: str, path: str, body: bytes) -> bool:
        st = self.state
        t = self.transport
        assert t is not None
        if method == "GET" and path.endswith("/models") and st.models is not None:
            t.write(_response(200, st.models))
            return True
        if method == "GET" and path.endswith("/models"):
            action = st.models_script.popleft() if st.models_script else "ok"
            st.counts[f"models_{action}"] += 1
            if action != "ok":
                return self.fault(action)
            payload = {
                "object": "list",
                "data": [
                    {
                        "id": st.model,
                        "object": "model",
                        "created": 0,
                        "owned_by": "stub",
                        **({"max_model_len": st.max_model_len} if st.report_ctx else {}),
                    }
                ],
            }
            t.write(_response(200, json.dumps(payload).encode()))
            return True
        if method == "GET" and path == "/stats":
            t.write(_response(200, json.dumps({**st.counts, "last_authorization": st.last_authorization}).encode()))
            return True
        if method == "POST" and path == "/control":
            cfg = json.loads(body or b"{}")
            st.script = deque(cfg.get("script", []))
            st.default = cfg.get("default", st.default)
            st.answer = cfg.get("answer", st.answer)
            st.models_script = deque(cfg.get("models_script", []))
            st.max_model_len = cfg.get("max_model_len")
            st.report_ctx = bool(cfg.get("report_ctx"))
            st.counts.clear()
            t.write(_response(200, b"{}"))
            return True
        action = st.next_action()
        if st.max_model_len and int(json.loads(body).get("max_tokens") or 0) >= st.max_model_len:
            action = "400"  # as vLLM answers a request that cannot fit its context
        st.counts[action] += 1
        st.counts["total"] += 1
        if st.keep_bodies:
            st.bodies.append(json.loads(body))
        if action in ("ok", "length", "badutf8", "surrogate"):
            content = json.dumps(st.answer).encode()
            if action == "badutf8":
                content = content[:-1] + b" \xff\xfe\xc3(" + b'"'
            elif action == "surrogate":
                content = content[:-1] + b' \\ud800"'
            payload = (
                b'{"id":"stub","object":"chat.completion","model":"' + st.model.encode() + b'","choices":[{"index":0,'
                b'"message":{"role":"assistant","content":'
                + content
                + b'},"finish_reason":"'
                + (b"length" if action == "length" else b"stop")
                + b'"}],"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}'
            )
            response = _response(200, payload)
            if b'"stream":true' in body.replace(b" ", b""):  # the preflight: server-sent events, as vLLM streams
                chunk = (
                    b'{"id":"stub","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":'
                    + content
                    + b"}}]}"
                )
                events = b"data: " + chunk + b"\n\ndata: [DONE]\n\n"
                response = _response(200, events).replace(b"application/json", b"text/event-stream")
            if st.delay:
                asyncio.get_running_loop().call_later(st.delay, lambda: t.is_closing() or t.write(response))
            else:
                t.write(response)
        elif action in ("400", "429", "500", "503"):
            t.write(_response(int(action), b'{"error":{"message":"stub ' + action.encode() + b'"}}', "Err"))
        elif action == "malformed":
            t.write(_response(200, b"<html>not json"))
        elif action == "nochoices":
            t.write(_response(200, b'{"object":"chat.completion"}'))
        else:
            return self.fault(action)
        return True

    def fault(self, action: str) -> bool:
        """Write a fault; False when the connection is closed or left hanging."""
        t = self.transport
        assert t is not None
        if action == "reset":
            t.abort()
            return False
        if action == "hang":
            self.buf = b""  # keep the connection open, never answer
            return False
        if action == "cut":
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
            t.write(head + b'{"object":"list","data":[{"id"')
            t.close()
            return False
        if action == "502":
            page = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway"
                    b"</h1></center>\r\n<hr><center>nginx/1.18.0 (Ubuntu)</center>\r\n</body>\r\n</html>\r\n")  # fmt: skip
            t.write(_response(502, page, "Bad Gateway").replace(b"application/json", b"text/html"))
            return True
        t.write(_response(500, b'{"error":"unknown stub action"}', "Err"))
        return True


async def start(state: StubState, host: str = "127.0.0.1", port: int = 0) -> tuple[asyncio.AbstractServer, int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: StubProtocol(state), host, port, backlog=1024)
    return server, server.sockets[0].getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--models", default=None)
    ap.add_argument("--model", default="stub-model")
    ap.add_argument("--answer", default="Answer: A")
    ap.add_argument("--default", default="ok")
    ap.add_argument("--script", default="", help="comma-separated actions")
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def run() -> None:
        state = StubState(a.model, a.answer, a.default, [s for s in a.script.split(",") if s])
        state.delay = a.delay
        if a.models:
            with open(a.models, "rb") as f:
                state.models = f.read()
        server, port = await start(state, host=a.host, port=a.port)
        print(f"PORT {port}", flush=True)
        async with server:
            await server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
