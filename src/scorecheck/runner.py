"""A run: data -> prompt -> request (scheduled, stored, resumable) -> reasoning split -> extraction -> grading.

The request side and the grading side run at once (``scorecheck.engine``): slot workers, as many per replica as its
concurrency limit, send requests in length-aware order and store each answer; the answer goes onto the grading
queue, graded by its own tasks and process pool, so grading never holds a request slot. All evals share the slots,
so the server never idles between evals. The run ends when both sides are done. A request whose answer is already in
the store is never sent again; a sample already graded under the same grade key is not graded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from scorecheck.benchmarks import Benchmark, Graded, Item
from scorecheck.client import ChatClient, EndpointState, Outcome, decode_replaced, find_model, model_identity
from scorecheck.config import Resolved
from scorecheck.engine.abort import CircuitBreaker, EarlyAbort
from scorecheck.engine.concurrency import Limit, watch_metrics
from scorecheck.engine.eta import Eta
from scorecheck.engine.grading import GradingPool, GradingQueue
from scorecheck.engine.order import LengthModel, LengthOrder
from scorecheck.errors import EndpointError, RunAborted
from scorecheck.grading.judge import judge_messages, judge_says_yes
from scorecheck.grading.plan import GradingPlan
from scorecheck.store import Store, canonical, request_key

GRADING_VERSION = "2"
"""Bump when extraction or grading code changes what a stored response scores. 2: the symbolic grader normalises the
answer line before math-verify (grading/symbolic.py, issue #17)."""

GRADING_IN_MEMORY = 1000
"""Answers waiting for grading that keep their text in memory; beyond this backlog (a server, or a store, that answers
faster than the grading pool grades) an answer waits as its key and is read back from the store when graded, so a
backlog of 40,000 answers of 7 KB costs no 300 MB."""

JUDGE_EVAL = "judge"
"""The ``eval`` column of judge requests in the store (their item_id is ``<eval>/<item id>``)."""

CONTEXT_KEYS = ("max_model_len", "context_length", "max_context_length")
"""Where a /v1/models entry may give the served context length (vLLM and SGLang: ``max_model_len``)."""

JUDGE_CONCURRENCY = 64
"""Judge requests in flight when the run's concurrency adapts (``--concurrency N`` sets both)."""


@dataclass
class Unit:
    bench: Benchmark
    item: Item
    sample_index: int
    messages: list[dict[str, str]]
    key: str
    grade_key: str


@dataclass
class EvalProgress:
    total: int = 0
    done: int = 0
    cached: int = 0
    completion_tokens: int = 0
    task_id: Any = None


@dataclass
class RunState:
    started: float = field(default_factory=time.time)
    sent_outcomes: Counter[str] = field(default_factory=Counter)
    per_eval: dict[str, EvalProgress] = field(default_factory=dict)
    aborted: str | None = None
    judge_outcomes: Counter[str] = field(default_factory=Counter)


@dataclass
class Live:
    """What a run is doing right now (the progress display and results.json read it)."""

    order: LengthOrder[Unit]
    limits: list[Limit]
    grading: GradingQueue
    eta: Eta
    requests_total: int
    requests_done: int = 0
    in_flight_expected: float = 0.0
    """Expected completion tokens of the requests in flight."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    running: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while slots may start requests; cleared while the circuit breaker probes a silent endpoint."""

    def __post_init__(self) -> None:
        self.running.set()


class Runner:
    def __init__(self, rc: Resolved, endpoints: list[EndpointState], model: str, store: Store,
                 show_progress: bool = True, concurrency: int | None = None) -> None:  # fmt: skip
        """``concurrency``: requests in flight per replica, fixed [the config's ``concurrency``; None: adaptive]."""
        self.rc = rc
        self.concurrency = concurrency or rc.cfg.concurrency
        self.endpoints = endpoints
        self.model = model
        self.store = store
        self.show_progress = show_progress
        self.state = RunState()
        self.sampling = rc.sampling()
        self.identity: dict[str, Any] = {}
        self.models_answer: dict[str, Any] = {}
        self.data_sha256: dict[str, str] = {}
        self.items: dict[str, list[Item]] = {}
        self.pool = GradingPool()
        self.live: Live | None = None
        self.model_abort = EarlyAbort("answers", rc.cfg.abort_after, frozenset({"failed", "http_400"}),
                                      self.state.sent_outcomes)  # fmt: skip
        self.judge_abort = EarlyAbort("judge requests", rc.cfg.abort_after, frozenset({"failed"}),
                                      self.state.judge_outcomes)  # fmt: skip
        self.model_breaker = CircuitBreaker("answer from the model", rc.cfg.breaker_seconds,
                                            frozenset({"failed", "http_400"}))  # fmt: skip
        self.judge_breaker = CircuitBreaker("verdict from the judge", rc.cfg.breaker_seconds, frozenset({"failed"}))
        self._judge_down = asyncio.Event()
        """Set when the judge stops the run (early abort or breaker): grades still queued or waiting on the judge are
        cancelled and left to the rerun (the model's answers are stored) instead of each retrying a dead judge."""
        self.notes: list[str] = []
        """What the preflight found worth saying in results.json (prompts that may not fit the context)."""
        self._inflight_keys: dict[str, asyncio.Future[Outcome]] = {}
        self.committing = 0
        """Answers received and waiting for their commit (a group commit every few ms): their slots' next requests
        start once it returns."""
        self.grading: GradingPlan = rc.grading()
        self.judge_endpoint: EndpointState | None = None
        """Set by the session when a judge-capable eval is graded by the judge."""
        self.judge_identity: dict[str, Any] = {}
        self.judge_models_answer: dict[str, Any] = {}
        self._judge_client: ChatClient | None = None
        self._finished: dict[str, str] = {}

    @property
    def judge_concurrency(self) -> int:
        return self.concurrency or JUDGE_CONCURRENCY

    @property
    def needs_judge(self) -> bool:
        return self.grading.uses_judge and any(b.judge_capable for b in self.rc.benchmarks)

    # -- setup -----------------------------------------------------------------------------------------------
    def load_data(self) -> None:
        for b in self.rc.benchmarks:
            items, shas = b.load(self.rc.cfg.limit)
            self.items[b.name] = items
            self.data_sha256.update(shas)

    async def preflight(self, client: ChatClient) -> None:
        """/v1/models must list the model (on every endpoint, with one identity) and, where it reports a context
        length, leave room for max_tokens; then each endpoint must accept the run's real request parameters (a
        streamed request with the run's sampling, closed after its first chunk)."""
        identities = []
        for ep in self.endpoints:
            models = await client.list_models(ep)
            entry = find_model(models, self.model)
            if entry is None:
                names = ", ".join(str(m.get("id")) for m in models.get("data") or []) or "none"
                raise EndpointError(f"{ep.base_url} does not serve model {self.model!r} (it lists: {names})")
            identities.append(model_identity(entry))
            self.models_answer[ep.base_url] = models
            self._check_context(ep, entry)
        if any(canonical(i) != canonical(identities[0]) for i in identities[1:]):
            raise EndpointError("the endpoints serve different models under the same name; give one model's replicas")
        self.identity = identities[0]
        if not self.rc.cfg.preflight:
            return
        for ep in self.endpoints:
            out = await client.probe(self._probe_body(), ep)
            if out.status == "http_400":
                assert out.error is not None  # an http_400 Outcome carries the endpoint's answer
                hint = ""
                if "skip_special_tokens" in canonical(self.sampling):
                    hint = (" If the endpoint does not accept skip_special_tokens (OpenAI's API does not), rerun with "
                            "--extra-body '{}'.")  # fmt: skip
                raise EndpointError(f"{ep.base_url} rejects this run's request parameters ({out.error[:200]}).{hint}")
            if out.status != "ok":
                raise EndpointError(f"a test request to {ep.base_url} failed: {out.error}")

    def _probe_body(self) -> dict[str, Any]:
        """The preflight's (and the circuit breaker's) request: a short prompt with the run's real sampling."""
        return {"model": self.model, "messages": self.rc.messages("Reply with OK."), **self.sampling}

    def _check_context(self, ep: EndpointState, entry: dict[str, Any]) -> None:
        """max_tokens against the context length /v1/models reports (vLLM, SGLang: ``max_model_len``): refused when
        no prompt could fit, a note when some prompts may not (4 characters a token: an estimate)."""
        ctx = next((entry[k] for k in CONTEXT_KEYS if isinstance(entry.get(k), int)), None)
        max_tokens = self.sampling.get("max_tokens")
        if ctx is None or not isinstance(max_tokens, int):
            return
        if max_tokens >= ctx:
            raise EndpointError(
                f"max_tokens {max_tokens} does not fit {ep.base_url}'s context length {ctx} (/v1/models): every "
                "request would get HTTP 400; lower --max-tokens, or serve the model with a longer context (vLLM: "
                "--max-model-len)"
            )
        over = sum(1 for b in self.rc.benchmarks for it in self.items.get(b.name, [])
                   if len(_text(self.rc.messages(it.prompt, b))) / 4 + max_tokens > ctx)  # fmt: skip
        if over:
            self.notes.append(f"{over} prompt(s) may not fit {ep.base_url}'s context length {ctx} with max_tokens "
                              f"{max_tokens} (estimated at 4 characters a token): the endpoint answers those with "
                              "HTTP 400")  # fmt: skip

    async def preflight_judge(self, client: ChatClient) -> None:
        """The judge endpoint must list the judge model; one short request must succeed (when preflight is on)."""
        ep = self.judge_endpoint
        assert ep is not None
        model = self.grading.judge_model
        models = await client.list_models(ep)
        entry = find_model(models, model or "")
        if entry is None:
            names = ", ".join(str(m.get("id")) for m in models.get("data") or []) or "none"
            raise EndpointError(f"judge endpoint {ep.base_url} does not serve model {model!r} (it lists: {names})")
        self.judge_identity = model_identity(entry)
        self.judge_models_answer = {ep.base_url: models}
        if not self.rc.cfg.preflight:
            return
        out = await client.probe(self._judge_probe_body(), ep)
        if out.status != "ok":
            raise EndpointError(f"a test request to the judge endpoint failed: {out.error}")

    def _judge_probe_body(self) -> dict[str, Any]:
        return {"model": self.grading.judge_model, "messages": [{"role": "user", "content": "Reply with Yes."}],
                **self.grading.judge_sampling}  # fmt: skip

    def grade_key(self, bench: Benchmark, key: str) -> str:
        fmt = str(self.rc.reasoning_for(bench))
        base = f"{key}|{fmt}|{bench.name}|{GRADING_VERSION}|{self.rc.profile.name}:{bench.spec.fingerprint()}"
        if bench.judge_capable:
            base += "|" + self.grading.signature(self.judge_identity if self.grading.uses_judge else None)
        return hashlib.sha256(base.encode()).hexdigest()[:32]

    def units(self) -> list[Unit]:
        ident = canonical(self.identity)
        out = []
        for b in self.rc.benchmarks:
            for item in self.items[b.name]:
                messages = self.rc.messages(item.prompt, b)
                for s in range(self.rc.samples_for(b)):
                    key = request_key(self.model, ident, messages, self.sampling, s)
                    out.append(Unit(b, item, s, messages, key, self.grade_key(b, key)))
        return out

    @contextlib.asynccontextmanager
    async def _judge_session(self):  # noqa: ANN202
        """A client for the judge endpoint, preflighted, for the duration of a run or regrade."""
        if not self.needs_judge:
            yield None
            return
        if self.judge_endpoint is None:
            raise EndpointError("this run grades with the judge but no judge endpoint was set up")
        cfg = self.rc.cfg
        async with ChatClient([self.judge_endpoint], self.judge_concurrency, cfg.timeout, cfg.max_retries,
                              cfg.retry_wait, on_attempt=self.judge_breaker.attempt) as jc:  # fmt: skip
            await self.preflight_judge(jc)
            self._judge_client = jc
            stop = asyncio.Event()
            guard = asyncio.create_task(self._guard(self.judge_breaker, jc, self._judge_probe_body(), None, stop))
            try:
                yield jc
            finally:
                stop.set()
                await guard
                self._judge_client = None

    # -- the run ---------------------------------------------------------------------------------------------
    async def run(self) -> RunState:
        cfg = self.rc.cfg
        async with (
            ChatClient(
                self.endpoints,
                self.concurrency,
                cfg.timeout,
                cfg.max_retries,
                cfg.retry_wait,
                on_attempt=self.model_breaker.attempt,
            ) as client,
            self._judge_session(),
        ):
            await self.preflight(client)
            todo = self._pending()
            # The data, units and libraries live for the whole run: out of the collector's sight, a full collection
            # does not stop the event loop to walk them again (a stall of the request side on a loaded machine).
            gc.freeze()
            lengths = LengthModel(self.sampling.get("max_tokens") or self.rc.profile.max_tokens,
                                  self.store.answer_lengths())  # fmt: skip
            order = LengthOrder(((u.bench.name, _text(u.messages), u) for u in todo), lengths)
            graders = self.pool.workers * 2 + (self.judge_concurrency if self.needs_judge else 0)
            live = self.live = Live(order, [Limit(ep, fixed=self.concurrency) for ep in self.endpoints],
                                    GradingQueue(self._grade_and_store, graders), Eta(len(todo)), len(todo))  # fmt: skip
            for lim in live.limits:
                lim.on_change = live.wake.set
            progress = self._progress()
            stop = asyncio.Event()
            background = [
                asyncio.create_task(self._flush_loop(stop, progress)),
                asyncio.create_task(self._guard(self.model_breaker, client, self._probe_body(), live, stop)),
                *(asyncio.create_task(watch_metrics(client.session, lim, stop)) for lim in live.limits),
            ]
            closed = False
            try:
                if progress is not None:
                    progress.start()
                await self._dispatch(client, live)
                closed = await self._unless_judge_down(live.grading.close())
            finally:
                if not closed:
                    live.grading.cancel()
                stop.set()
                await asyncio.gather(*background, return_exceptions=True)
                self.store.flush()
                if progress is not None:
                    self._refresh(progress)
                    progress.stop()
                self.pool.shutdown()
        if self.state.aborted:
            raise RunAborted(self.state.aborted)
        return self.state

    def _pending(self) -> list[Unit]:
        """The units still to answer or grade (counting the others as done)."""
        finished = self.store.finished_requests()
        todo = []
        for b in self.rc.benchmarks:
            self.state.per_eval[b.name] = EvalProgress(total=len(self.items[b.name]) * self.rc.samples_for(b))
        graded = {b.name: self.store.graded(b.name) for b in self.rc.benchmarks}
        for u in self.units():
            prev = graded[u.bench.name].get((u.item.id, u.sample_index))
            if prev == u.grade_key and u.key in finished:
                ev = self.state.per_eval[u.bench.name]
                ev.done += 1
                ev.cached += 1
                continue
            todo.append(u)
        self._finished = finished
        return todo

    async def _dispatch(self, client: ChatClient, live: Live) -> None:
        """Start slot workers up to each replica's limit, again whenever a limit rises or a worker stops, until
        every unit has been taken."""
        workers: set[asyncio.Task[None]] = set()
        try:
            while live.order and not self.state.aborted:
                live.wake.clear()
                for lim in live.limits:
                    while lim.assigned < lim.value and live.order:
                        lim.assigned += 1
                        t = asyncio.create_task(self._slot(client, live, lim))
                        workers.add(t)
                        t.add_done_callback(workers.discard)
                if live.order:
                    await live.wake.wait()
            while not self.state.aborted and any(not t.done() for t in workers):  # a stop cancels those in flight
                live.wake.clear()
                await live.wake.wait()
        finally:  # a stop (SIGTERM, Ctrl-C) or an error: no slot may outlive the client it sends through
            left = list(workers)
            for t in left:
                t.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    async def _slot(self, client: ChatClient, live: Live, lim: Limit) -> None:
        """One request slot on one replica: takes the next unit, obtains its answer, hands it to grading, and goes
        on while the replica's limit still has room for it."""
        try:
            while live.order and not self.state.aborted and lim.assigned <= lim.value:
                if not live.running.is_set():  # the circuit breaker is probing the endpoint
                    await live.running.wait()
                    continue
                u, _eval, expected = live.order.pop()
                live.in_flight_expected += expected
                sent_at = time.monotonic()
                try:
                    out = await self._obtain(client, u, lim.ep)
                finally:
                    live.in_flight_expected -= expected
                live.requests_done += 1
                if out is None:
                    continue
                if out.attempts:
                    lim.on_completion(out.latency, out.completion_tokens, sent_at)
                    live.eta.completed(out.completion_tokens)
                    if out.status == "ok":
                        live.order.model.observe(u.bench.name, out.completion_tokens, out.finish_reason)
                out.response = None  # stored; grading needs only the message (less held while grading catches up)
                if live.grading.waiting >= GRADING_IN_MEMORY:
                    out = Outcome(out.status, finish_reason=out.finish_reason, completion_tokens=out.completion_tokens,
                                  attempts=out.attempts, spilled=True)  # fmt: skip
                live.grading.put(u, out)
        finally:
            lim.assigned -= 1
            live.wake.set()

    async def _grade_and_store(self, u: Unit, out: Outcome) -> None:
        if out.spilled:  # its text waited in the store (committed before it was queued), not in memory
            row = self.store.get_request(u.key)
            assert row is not None, u.key
            out = replace(_outcome_from_row(row), attempts=out.attempts)
        rec = await self._grade(u, out)
        # A sample whose judge request failed is stored under a grade key that never matches: a rerun grades it
        # again (the judge request is retried, the model request is not).
        gk = "judge-failed" if rec["flags"].get("judge_failed") else u.grade_key
        self.store.put_sample(u.bench.name, u.item.id, u.sample_index, gk, u.key, rec["score"], rec)
        if self.live is not None:
            self.live.eta.graded.add()
        ev = self.state.per_eval[u.bench.name]
        ev.done += 1
        if out.attempts:
            ev.completion_tokens += out.completion_tokens or 0

    def schedule_summary(self) -> dict[str, Any] | None:
        """How this session scheduled its requests, for results.json: each replica's concurrency (how it was found,
        where it settled, its highest), the grading pool, and the ETA's predictions against the actual time."""
        live = self.live
        if live is None:
            return None
        return {
            "order": "longest expected answer first (engine/order.py)",
            "concurrency": [{"endpoint": lim.ep.base_url, "mode": lim.mode, "final": lim.value,
                             "max": max(v for _, v in lim.history), "changes": len(lim.history) - 1}
                            for lim in live.limits],
            "grading_workers": self.pool.workers,
            "requests": live.requests_total,
            "eta": live.eta.summary(),
        }  # fmt: skip

    async def regrade(
        self, selection: dict[str, dict[tuple[str, int], Item]] | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Grade every stored sample of the run again under this runner's grading (``scorecheck regrade``).

        Reads the stored responses; sends no request to the model (there is no model client at all). Judge requests,
        when the grading uses the judge, are stored and reused like any request. The run's own samples are left as
        they were. Returns the new records per eval, in stored order; a sample whose model request failed is kept
        as it was (there is nothing to grade). ``selection`` (a regrade under another protocol, crossgrade.py):
        only these samples, each graded as the given item."""
        self._finished = self.store.finished_requests()
        todo: deque[tuple[int, Benchmark, Item, dict[str, Any]]] = deque()
        slots: dict[str, list[dict[str, Any]]] = {}
        for b in self.rc.benchmarks:
            items = {it.id: it for it in self.items[b.name]}
            old = list(self.store.iter_samples(b.name))
            if selection is not None:
                chosen = selection.get(b.name, {})
                old = [r for r in old if (r["item_id"], r["sample_index"]) in chosen]
                items = {}
            slots[b.name] = old
            for i, rec in enumerate(old):
                item = (
                    chosen[(rec["item_id"], rec["sample_index"])]
                    if selection is not None
                    else items.get(rec["item_id"])
                )
                if item is not None:
                    todo.append((i, b, item, rec))

        async def worker() -> None:
            while todo and not self.state.aborted:
                i, b, item, old = todo.popleft()
                row = self.store.get_request(old["request_key"]) if old.get("request_key") else None
                if row is None or row["status"] not in ("ok", "http_400"):
                    continue
                u = Unit(b, item, old["sample_index"], [], old["request_key"], "")
                slots[b.name][i] = await self._grade(u, _outcome_from_row(row))

        stop = asyncio.Event()
        flusher = asyncio.create_task(self._flush_loop(stop, None))
        try:
            async with self._judge_session():
                n = min(self.judge_concurrency, max(1, len(todo)))
                await self._unless_judge_down(asyncio.gather(*(worker() for _ in range(n))))
        finally:
            stop.set()
            await flusher
            self.store.flush()
            self.pool.shutdown()
        if self.state.aborted:
            raise RunAborted(self.state.aborted)
        return slots

    async def _flush_loop(self, stop: asyncio.Event, progress: Progress | None) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                pass
            self.store.flush()
            self._predict()
            if progress is not None:
                self._refresh(progress)

    def _predict(self) -> None:
        """Update the ETA of the whole run (requests and grading)."""
        live = self.live
        if live is None:
            return
        live.eta.update(live.order.expected_tokens() + live.in_flight_expected / 2, live.grading.waiting)

    async def _obtain(self, client: ChatClient, u: Unit, endpoint: EndpointState | None = None) -> Outcome | None:
        """The stored answer, the answer of an identical request in flight, or a new one (sent to ``endpoint``)."""
        stored = self._stored(u.key)  # answered earlier, or this session (then maybe still in the write buffer)
        if stored is not None:
            return stored
        body = {"model": self.model, "messages": u.messages, **self.sampling}
        return await self._send(client, u.key, body, u.bench.name, u.item.id, u.sample_index, self._watch,
                                endpoint)  # fmt: skip

    async def _send(self, client: ChatClient, key: str, body: dict[str, Any], eval_name: str, item_id: str,
                    sample_index: int, watch: Callable[[Outcome], None],
                    endpoint: EndpointState | None = None) -> Outcome:  # fmt: skip
        """Send one request (or wait for the identical one in flight), store its outcome and ``watch`` it."""
        shared = self._inflight_keys.get(key)
        if shared is not None:
            return await shared
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight_keys[key] = fut
        try:
            out = await client.complete(body, on_send=lambda: self.store.put_send(key, "sent"), endpoint=endpoint)
            self.store.put_request(
                {
                    "key": key, "eval": eval_name, "item_id": item_id, "sample_index": sample_index,
                    "status": out.status, "request": canonical(body), "response": out.response,
                    "content": out.content, "reasoning": out.reasoning, "finish_reason": out.finish_reason,
                    "prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                    "latency": out.latency, "attempts": out.attempts, "error": out.error, "endpoint": out.endpoint,
                }
            )  # fmt: skip
            self.committing += 1  # durable before it counts as finished: a kill re-sends only what was in flight
            try:
                await self.store.commit()
            finally:
                self.committing -= 1
        except BaseException as e:
            fut.cancel()
            self._inflight_keys.pop(key, None)
            raise e
        fut.set_result(out)
        self._inflight_keys.pop(key, None)
        if out.status in ("ok", "http_400"):
            self._finished[key] = out.status
        watch(out)
        return out

    def _stored(self, key: str) -> Outcome | None:
        """A finished request's outcome from the store (flushing this session's buffer when needed)."""
        if key not in self._finished:
            return None
        row = self.store.get_request(key)
        if row is None and self.store.pending():
            self.store.flush()
            row = self.store.get_request(key)
        if row is not None and row["status"] in ("ok", "http_400"):
            return _outcome_from_row(row)
        return None

    def _watch(self, out: Outcome) -> None:
        self._abort(self.model_abort.observe(out.status, out.error))

    def _watch_judge(self, out: Outcome) -> None:
        reason = self.judge_abort.observe(out.status, out.error)
        if reason is not None and not self.state.aborted:
            self._judge_down.set()
        self._abort(reason)

    async def _unless_judge_down(self, work: Awaitable[Any]) -> bool:
        """Await ``work`` (grading to its end); cancel it and return False if the judge goes down meanwhile."""
        task = asyncio.ensure_future(work)
        down = asyncio.ensure_future(self._judge_down.wait())
        try:
            await asyncio.wait({task, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            down.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            return False
        task.result()  # a grade's exception is raised here
        return True

    def _abort(self, reason: str | None) -> None:
        """Stop the run for ``reason`` (the first reason given stands): no new request, those in flight cancelled
        (a rerun sends them), everything finished kept."""
        if reason is None or self.state.aborted:
            return
        self.state.aborted = reason
        if self.live is not None:
            self.live.running.set()
            self.live.wake.set()

    async def _guard(self, breaker: CircuitBreaker, client: ChatClient, probe: dict[str, Any], live: Live | None,
                     stop: asyncio.Event) -> None:  # fmt: skip
        """The circuit breaker's loop: when it trips, pause the slots (``live``; the judge has none to pause),
        probe every endpoint of ``client`` until one answers (resume) or ``breaker.probe_for`` runs out (stop)."""
        while not stop.is_set() and not self.state.aborted:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=min(1.0, breaker.window_s / 4))
            if stop.is_set() or not breaker.tripped():
                continue
            if live is not None:
                live.running.clear()
            deadline = time.monotonic() + breaker.probe_for
            answered = False
            while not answered and time.monotonic() < deadline and not stop.is_set():
                for ep in client.endpoints:
                    out = await client.probe(probe, ep, retry=False, timeout=max(breaker.probe_every, 5.0))
                    answered = answered or out.status == "ok"
                if not answered and breaker.last_answer < time.monotonic() - breaker.window_s:
                    await asyncio.sleep(breaker.probe_every)
                else:  # a probe answered, or a request in flight did meanwhile
                    answered = True
            if stop.is_set():  # the run ended while probing: nothing left to stop
                return
            if answered:
                breaker.answered()
                if live is not None:
                    live.running.set()
                continue
            if breaker is self.judge_breaker and not self.state.aborted:
                self._judge_down.set()
            self._abort(breaker.reason())

    async def _grade(self, u: Unit, out: Outcome) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "eval": u.bench.name, "item_id": u.item.id, "sample_index": u.sample_index, "request_key": u.key,
            "prompt": u.item.prompt, "gold": u.item.gold, "meta": u.item.meta, "status": out.status,
            "finish_reason": out.finish_reason, "completion_tokens": out.completion_tokens, "latency": out.latency,
        }  # fmt: skip
        flags = {"failed": out.status == "failed", "http_400": out.status == "http_400",
                 "truncated": out.finish_reason == "length", "missing_tag": False, "unparsed": False,
                 "decode_replaced": decode_replaced(out)}  # fmt: skip
        if out.status == "failed":
            rec.update(response=None, answer_text=None, reasoning=None, extracted=None, score=None, grader=None,
                       error=out.error, flags=flags)  # fmt: skip
            return rec
        content = out.content if out.status == "ok" else self.rc.profile.http_400_text  # the protocol's HTTP-400 text
        fmt = self.rc.reasoning_for(u.bench)
        split = fmt.apply(content, out.message)
        extracted = u.bench.extract(split.answer)
        flags["missing_tag"] = split.missing_tag
        flags["unparsed"] = extracted is None
        if u.bench.judge_capable and self.grading.uses_judge:
            g, grades = await self._grade_with_judge(u, extracted)
            rec["grades"] = grades
            flags["judge_failed"] = grades["judge"]["score"] is None
        else:
            g = await self._grade_plain(u.bench, u.item, extracted)
        rec.update(response=content, reasoning=split.reasoning if split.reasoning is not None else out.reasoning,
                   answer_text=split.answer, extracted=extracted, score=g.score, grader=g.grader,
                   grader_detail=g.detail, grade_info=g.info, reasoning_format=str(fmt), flags=flags)  # fmt: skip
        return rec

    async def _grade_plain(self, bench: Benchmark, item: Item, extracted: str | None) -> Graded:
        """The benchmark's own grading: ``worker_grader`` in the grading pool for parsed answers, else ``grade``."""
        if extracted is None or bench.worker_grader is None:
            return await self.pool.grade_measured(bench.name, bench.grade, item, extracted)
        return await self.pool.grade(bench.worker_grader, item, extracted)

    async def _grade_with_judge(self, u: Unit, extracted: str | None) -> tuple[Graded, dict[str, Any]]:
        """``--grader judge|both`` on a judge-capable benchmark: the grades of each grader, and the scoring one."""
        plan = self.grading
        sym_task = self._grade_plain(u.bench, u.item, extracted) if plan.uses_symbolic else None
        judge_task = self._judge(u, extracted)
        if sym_task is not None:
            sym, judge = await asyncio.gather(sym_task, judge_task)
        else:
            sym, judge = None, await judge_task
        grades: dict[str, Any] = {"judge": judge}
        if sym is not None:
            grades["symbolic"] = {"score": sym.score, "grader": sym.grader, "detail": sym.detail}
        if plan.score_by == "judge":
            g = Graded(judge["score"], judge["grader"], judge["detail"])  # type: ignore[arg-type]
        else:
            assert sym is not None
            g = sym
        return g, grades

    async def _judge(self, u: Unit, extracted: str | None) -> dict[str, Any]:
        """Ask the judge whether gold and answer are equal; the request is stored and reused like any other."""
        name = f"judge:{self.grading.judge_model}"
        if extracted is None:
            if u.bench.judge_unparsed is None:
                return {"score": 0.0, "grader": "unparsed", "detail": "no answer: scored 0 without the judge",
                        "reply": None, "request_key": None}  # fmt: skip
            extracted = u.bench.judge_unparsed
        messages = judge_messages(u.item.gold, extracted, u.bench.spec.judge_template)
        model = self.grading.judge_model or ""
        key = request_key(model, canonical(self.judge_identity), messages, self.grading.judge_sampling, 0)
        out = self._stored(key)
        if out is None:
            assert self._judge_client is not None
            body = {"model": model, "messages": messages, **self.grading.judge_sampling}
            out = await self._send(self._judge_client, key, body, JUDGE_EVAL, f"{u.bench.name}/{u.item.id}",
                                   u.sample_index, self._watch_judge)  # fmt: skip
        if out.status == "failed":
            return {"score": None, "grader": name, "detail": f"judge request failed: {out.error}", "reply": None,
                    "request_key": key}  # fmt: skip
        reply = out.content if out.status == "ok" else ""  # HTTP 400: the fork's sampler returned ""
        detail = "judge HTTP 400: read as the empty reply" if out.status == "http_400" else ""
        return {"score": 1.0 if judge_says_yes(reply) else 0.0, "grader": name, "detail": detail,
                "reply": (reply or "")[:500], "request_key": key}  # fmt: skip

    # -- progress --------------------------------------------------------------------------------------------
    def _progress(self) -> Progress | None:
        if not self.show_progress:
            return None
        p = Progress(
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            refresh_per_second=4,
        )
        live = self.live
        if live is not None:
            self._run_tasks = (p.add_task("requests", total=live.requests_total, info=""),
                               p.add_task("grading", total=live.requests_total, info=""))  # fmt: skip
        for name, ev in self.state.per_eval.items():
            ev.task_id = p.add_task(name, total=ev.total, completed=ev.done, info="")
        return p

    def _refresh(self, progress: Progress) -> None:
        elapsed = max(time.time() - self.state.started, 1e-6)
        for ev in self.state.per_eval.values():
            progress.update(ev.task_id, completed=ev.done, info=f"{ev.completion_tokens / elapsed:.0f} tok/s")
        live = self.live
        if live is None:
            return
        in_flight = sum(e.in_flight for e in self.endpoints)
        limits = ", ".join(f"{lim.value} ({lim.mode})" for lim in live.limits)
        g = live.grading
        eta = live.eta.last
        eta_text = f"ETA {_clock(eta[0])}, ~{max(eta[1], 0):,.0f} tokens left" if eta else "ETA after the first answers"
        req_task, grade_task = self._run_tasks
        progress.update(req_task, completed=live.requests_done,
                        info=f"in flight {in_flight} (limit {limits}) · {eta_text}")  # fmt: skip
        progress.update(grade_task, completed=g.graded, info=f"queue {g.waiting} · {self.pool.workers} workers")


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _text(messages: list[dict[str, str]]) -> str:
    return "\n".join(str(m.get("content") or "") for m in messages)


def _outcome_from_row(row: dict[str, Any]) -> Outcome:
    message = None
    if row.get("response"):
        try:
            message = json.loads(row["response"])["choices"][0].get("message")
        except (ValueError, KeyError, IndexError, TypeError):
            message = None
    return Outcome(row["status"], content=row["content"], reasoning=row["reasoning"], message=message,
                   finish_reason=row["finish_reason"], prompt_tokens=row["prompt_tokens"],
                   completion_tokens=row["completion_tokens"], latency=row["latency"], attempts=0,
                   error=row["error"], endpoint=row["endpoint"])  # fmt: skip
