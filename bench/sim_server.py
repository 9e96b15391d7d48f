"""A simulated continuous-batching LLM server (vLLM-like), OpenAI-compatible, on loopback only.

The model of the server (issue #13):
- ``--slots`` batch slots (256); requests beyond them wait in a FIFO queue and join at a step boundary;
- each decode step lasts 25 ms + 0.04 ms x running sequences and produces one token for every running sequence;
  a request that joins adds 40 ms per 1,000 prompt tokens (tokens = characters / 4) to its step;
- answer lengths: lognormal (sigma 0.6) seeded by a hash of the conversation, median by prompt kind (multiple choice
  350, math 450, code 300, other 400 tokens), 0.2% running to max_tokens; capped at the request's max_tokens;
- ``--speed`` F: simulated time runs F times faster than real time.

It answers with text of the drawn length (4 characters a token) ending in an answer of the prompt's kind, so the
client's extraction and grading do real work: a letter for multiple choice, a number for math, a Python block for
code (it fails its tests, but runs in the sandbox), plain prose otherwise.

``GET /metrics``: ``vllm:num_requests_running`` and ``vllm:num_requests_waiting`` (``--no-metrics``: 404).
``GET /stats``: makespan (first arrival to last answer, simulated seconds), mean batch occupancy and the share of
the makespan with a non-empty queue, the drain (simulated seconds from the last step with the batch at least half
full to the last answer: the tail of long answers that started late), the simulator's own lag (how late its steps ran against the schedule), and the
server-bound ideal for the requests it served (:func:`ideal_makespan`). ``--queue-limit N``: HTTP 429 when N
requests already wait (to test back-off). It stops by itself after ``--idle-exit`` seconds without a request and
after ``--max-wall`` seconds in all.

Run: ``python bench/sim_server.py --port 0`` prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import heapq
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

STEP_MS = 25.0
PER_SEQ_MS = 0.04
PREFILL_MS_PER_1K = 40.0
SIGMA = 0.6
MEDIANS = {"multiple_choice": 350, "math": 450, "code": 300, "other": 400}
RUNAWAY = 0.002


def step_ms(running: int, joining_prompt_tokens: float = 0.0) -> float:
    return STEP_MS + PER_SEQ_MS * running + PREFILL_MS_PER_1K * joining_prompt_tokens / 1000.0


def kind_of(text: str) -> str:
    if "Answer: $option" in text or "Answer: $LETTER" in text:
        return "multiple_choice"
    if "```python" in text:
        return "code"
    if "Answer: $ANSWER" in text:
        return "math"
    return "other"


def draw_length(conversation: str, kind: str, max_tokens: int) -> int:
    """Seeded by the conversation: the same request always gets the same length."""
    rng = random.Random(hashlib.sha256(conversation.encode()).digest())
    if rng.random() < RUNAWAY:
        return max_tokens
    n = int(round(math.exp(math.log(MEDIANS[kind]) + SIGMA * rng.gauss(0.0, 1.0))))
    return max(1, min(n, max_tokens))


def answer_text(kind: str, tokens: int) -> str:
    """Reflection-style text of about ``tokens`` tokens: reasoning in <thinking>, the answer in <output>."""
    tail = {"multiple_choice": "Answer: B", "math": "Answer: 42",
            "code": "```python\ndef f(x):\n    return x\n```", "other": "Here is my answer."}[kind]  # fmt: skip
    filler = max(0, tokens * 4 - len(tail) - 40)
    thinking = ("lorem ipsum dolor sit amet, " * (filler // 28 + 1))[:filler]
    return f"<thinking>{thinking}</thinking>\n<output>{tail}</output>"


def ideal_makespan(served: list[tuple[float, int]], slots: int) -> float:
    """Simulated seconds the server needs for these (prompt tokens, completion tokens) requests when all arrive at
    time 0 and join longest first: the server-bound ideal."""
    return makespan_in_order(sorted(served, key=lambda r: -r[1]), slots)


def makespan_in_order(pending: list[tuple[float, int]], slots: int) -> float:
    """Simulated seconds for these requests when all arrive at time 0 and join in the order given."""
    i = 0
    step = 0
    t_ms = 0.0
    running: list[int] = []  # finish step of each running sequence (heap)
    while i < len(pending) or running:
        joining = 0.0
        while i < len(pending) and len(running) < slots:
            joining += pending[i][0]
            heapq.heappush(running, step + pending[i][1])
            i += 1
        # one step with the joiners, then whole steps until the next sequence finishes
        t_ms += step_ms(len(running), joining)
        step += 1
        nxt = running[0]
        if nxt > step:
            t_ms += (nxt - step) * step_ms(len(running))
            step = nxt
        while running and running[0] <= step:
            heapq.heappop(running)
    return t_ms / 1000.0


@dataclass
class Seq:
    prompt_tokens: float
    tokens: int
    content: str
    fut: asyncio.Future[None]
    finish_step: int = 0


@dataclass(order=True)
class _Running:
    finish_step: int
    n: int
    seq: Seq = field(compare=False)


class Engine:
    def __init__(self, slots: int, speed: float) -> None:
        self.slots = slots
        self.speed = speed
        self.waiting: list[Seq] = []
        self.running: list[_Running] = []
        self.step = 0
        self.counter = 0
        self.wake = asyncio.Event()
        self.joined_head = 0
        self.timeline: list[tuple[float, int, int]] = []
        self.last_half_full: float | None = None
        """Entries of ``waiting`` before this index have joined the batch."""
        self.served: list[tuple[float, int]] = []
        self.first_arrival: float | None = None
        self.last_done: float | None = None
        self.first_arrival_wall: float | None = None
        self.last_done_wall: float | None = None
        self.busy_slot_s = 0.0  # simulated slot-seconds in use
        self.queue_s = 0.0  # simulated seconds with a non-empty queue
        self.lag_max_s = 0.0
        self.lag_sum_s = 0.0
        self.steps = 0
        self.t0 = time.monotonic()

    def now(self) -> float:
        """Simulated seconds since start."""
        return (time.monotonic() - self.t0) * self.speed

    def submit(self, seq: Seq) -> None:
        if self.first_arrival is None:
            self.first_arrival = self.now()
            self.first_arrival_wall = time.time()
        self.waiting.append(seq)
        self.wake.set()

    async def loop(self) -> None:
        sched = 0.0  # simulated time of the next step's start
        while True:
            waiting_head = self.joined_head
            if not self.running and waiting_head >= len(self.waiting):
                self.waiting.clear()
                waiting_head = self.joined_head = 0
                self.wake.clear()
                await self.wake.wait()
                sched = max(sched, self.now())
            joining = 0.0
            while waiting_head < len(self.waiting) and len(self.running) < self.slots:
                s = self.waiting[waiting_head]
                waiting_head += 1
                joining += s.prompt_tokens
                self.counter += 1
                heapq.heappush(self.running, _Running(self.step + s.tokens, self.counter, s))
            if waiting_head > 4096:
                del self.waiting[:waiting_head]
                waiting_head = 0
            self.joined_head = waiting_head
            dur = step_ms(len(self.running), joining) / 1000.0
            n_run = len(self.running)
            queued = waiting_head < len(self.waiting)
            sched += dur
            self.step += 1
            self.steps += 1
            self.busy_slot_s += dur * n_run
            if 2 * n_run >= self.slots:
                self.last_half_full = sched
            if self.steps % 200 == 0:
                self.timeline.append((round(sched, 1), n_run, self.waiting_count()))
            if queued:
                self.queue_s += dur
            delay = (sched - self.now()) / self.speed
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                lag = -delay * self.speed
                self.lag_max_s = max(self.lag_max_s, lag)
                self.lag_sum_s += lag * dur
                if self.steps % 64 == 0:
                    await asyncio.sleep(0)  # let the HTTP side run when the engine is behind
            while self.running and self.running[0].finish_step <= self.step:
                r = heapq.heappop(self.running)
                self.served.append((r.seq.prompt_tokens, r.seq.tokens))
                self.last_done = sched
                self.last_done_wall = time.time()
                if not r.seq.fut.done():
                    r.seq.fut.set_result(None)

    def waiting_count(self) -> int:
        return len(self.waiting) - self.joined_head

    def stats(self) -> dict[str, Any]:
        span = (self.last_done or 0.0) - (self.first_arrival or 0.0)
        ideal = ideal_makespan(self.served, self.slots) if self.served else 0.0
        return {
            "served": len(self.served),
            "slots": self.slots,
            "speed": self.speed,
            "makespan_s": round(span, 3),
            "ideal_s": round(ideal, 3),
            "ratio": round(span / ideal, 4) if ideal else None,
            "mean_occupancy": round(self.busy_slot_s / (span * self.slots), 4) if span > 0 else None,
            "queue_nonempty_share": round(self.queue_s / span, 4) if span > 0 else None,
            "drain_s": round((self.last_done or 0.0) - self.last_half_full, 3) if self.last_half_full else None,
            "lag_max_s": round(self.lag_max_s, 3),
            "lag_mean_s": round(self.lag_sum_s / span, 4) if span > 0 else None,
            "completion_tokens": sum(t for _, t in self.served),
            "first_arrival_wall": self.first_arrival_wall,
            "last_done_wall": self.last_done_wall,
        }


class Server:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.engine = Engine(args.slots, args.speed)
        self.last_request = time.monotonic()

    async def chat(self, request: web.Request) -> web.Response:
        self.last_request = time.monotonic()
        body = await request.json()
        eng = self.engine
        if self.args.queue_limit is not None and eng.waiting_count() >= self.args.queue_limit:
            return web.json_response({"error": "too many requests waiting"}, status=429)
        messages = body.get("messages") or []
        conversation = json.dumps(messages, sort_keys=True)
        text = "\n".join(str(m.get("content") or "") for m in messages)
        kind = kind_of(text)
        max_tokens = int(body.get("max_tokens") or 6000)
        n = draw_length(conversation, kind, max_tokens)
        seq = Seq(len(text) / 4.0, n, answer_text(kind, n), asyncio.get_running_loop().create_future())
        eng.submit(seq)
        await seq.fut
        return web.json_response({
            "id": "sim", "object": "chat.completion", "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": seq.content},
                         "finish_reason": "length" if n >= max_tokens else "stop"}],
            "usage": {"prompt_tokens": int(seq.prompt_tokens), "completion_tokens": n,
                      "total_tokens": int(seq.prompt_tokens) + n},
        })  # fmt: skip

    def counts(self) -> tuple[int, int]:
        return len(self.engine.running), self.engine.waiting_count()

    async def metrics(self, request: web.Request) -> web.Response:
        self.last_request = time.monotonic()
        if self.args.no_metrics:
            raise web.HTTPNotFound()
        running, waiting = self.counts()
        text = (
            "# HELP vllm:num_requests_running Number of requests in model execution batches.\n"
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{engine="0",model_name="sim-model"}} {float(running)}\n'
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n"
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{engine="0",model_name="sim-model"}} {float(waiting)}\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def models(self, request: web.Request) -> web.Response:
        self.last_request = time.monotonic()
        return web.json_response({"object": "list", "data": [{"id": self.args.model, "object": "model",
                                                               "owned_by": "sim", "max_model_len": 32768}]})  # fmt: skip

    async def stats(self, request: web.Request) -> web.Response:
        self.last_request = time.monotonic()
        st = self.engine.stats()
        if request.query.get("served"):
            st["served_requests"] = self.engine.served
            st["timeline"] = self.engine.timeline
        return web.json_response(st)


async def main_async(args: argparse.Namespace) -> None:
    srv = Server(args)
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", srv.chat)
    app.router.add_get("/v1/models", srv.models)
    app.router.add_get("/metrics", srv.metrics)
    app.router.add_get("/stats", srv.stats)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=4096)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    engine = asyncio.create_task(srv.engine.loop())
    started = time.monotonic()
    try:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            if now - srv.last_request > args.idle_exit or now - started > args.max_wall:
                break
    finally:
        engine.cancel()
        await runner.cleanup()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--slots", type=int, default=256)
    ap.add_argument("--speed", type=float, default=25.0, help="simulated seconds per real second [25]")
    ap.add_argument("--model", default="sim-model")
    ap.add_argument("--no-metrics", action="store_true", help="no /metrics (the client must learn from latency)")
    ap.add_argument("--queue-limit", type=int, default=None, help="HTTP 429 when this many requests wait")
    ap.add_argument("--idle-exit", type=float, default=60.0, help="stop after this many seconds without a request")
    ap.add_argument("--max-wall", type=float, default=3600.0, help="stop after this many seconds in all")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
