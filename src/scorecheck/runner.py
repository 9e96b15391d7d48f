"""A run: data -> prompt -> request (async, stored, resumable) -> reasoning split -> extraction -> grading.

All evals of a run go through one pool of workers, so the server never idles between evals. A request whose answer
is already in the store is never sent again; a sample already graded under the same grade key is not graded again.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from scorecheck.benchmarks import Benchmark, Item
from scorecheck.client import ChatClient, EndpointState, Outcome, find_model, model_identity
from scorecheck.config import Resolved
from scorecheck.errors import EndpointError, RunAborted
from scorecheck.store import Store, canonical, request_key

GRADING_VERSION = "1"
"""Bump when extraction or grading code changes what a stored response scores."""


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
    first_outcomes: list[str] = field(default_factory=list)
    per_eval: dict[str, EvalProgress] = field(default_factory=dict)
    aborted: str | None = None


class Runner:
    def __init__(self, rc: Resolved, endpoints: list[EndpointState], model: str, store: Store,
                 show_progress: bool = True) -> None:  # fmt: skip
        self.rc = rc
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
        self._pool: ProcessPoolExecutor | None = None
        self._inflight_keys: dict[str, asyncio.Future[Outcome]] = {}

    # -- setup -----------------------------------------------------------------------------------------------
    def load_data(self) -> None:
        for b in self.rc.benchmarks:
            items, shas = b.load(self.rc.profile.name, self.rc.cfg.limit)
            self.items[b.name] = items
            self.data_sha256.update(shas)

    async def preflight(self, client: ChatClient) -> None:
        """/v1/models must list the model (on every endpoint, with one identity); one request must succeed."""
        identities = []
        for ep in self.endpoints:
            models = await client.list_models(ep)
            entry = find_model(models, self.model)
            if entry is None:
                names = ", ".join(str(m.get("id")) for m in models.get("data") or []) or "none"
                raise EndpointError(f"{ep.base_url} does not serve model {self.model!r} (it lists: {names})")
            identities.append(model_identity(entry))
            self.models_answer[ep.base_url] = models
        if any(canonical(i) != canonical(identities[0]) for i in identities[1:]):
            raise EndpointError("the endpoints serve different models under the same name; give one model's replicas")
        self.identity = identities[0]
        if not self.rc.cfg.preflight:
            return
        body = {"model": self.model, "messages": self.rc.messages("Reply with OK."), **self.sampling, "max_tokens": 1}
        out = await client.complete(body)
        if out.status == "http_400":
            hint = ""
            if "skip_special_tokens" in canonical(self.sampling):
                hint = (" If the endpoint does not accept skip_special_tokens (OpenAI's API does not), rerun with "
                        "--extra-body '{}'.")  # fmt: skip
            raise EndpointError(f"the endpoint rejects this run's request parameters ({out.error[:200]}).{hint}")
        if out.status != "ok":
            raise EndpointError(f"a test request to the endpoint failed: {out.error}")

    def units(self) -> list[Unit]:
        ident = canonical(self.identity)
        out = []
        for b in self.rc.benchmarks:
            fmt = str(self.rc.reasoning_for(b))
            for item in self.items[b.name]:
                messages = self.rc.messages(item.prompt, b)
                for s in range(self.rc.cfg.samples):
                    key = request_key(self.model, ident, messages, self.sampling, s)
                    gk = hashlib.sha256(f"{key}|{fmt}|{b.name}|{GRADING_VERSION}".encode()).hexdigest()[:32]
                    out.append(Unit(b, item, s, messages, key, gk))
        return out

    # -- the run ---------------------------------------------------------------------------------------------
    async def run(self) -> RunState:
        cfg = self.rc.cfg
        async with ChatClient(self.endpoints, cfg.concurrency, cfg.timeout, cfg.max_retries, cfg.retry_wait) as client:
            await self.preflight(client)
            units = self.units()
            finished = self.store.finished_requests()
            todo: deque[Unit] = deque()
            for b in self.rc.benchmarks:
                self.state.per_eval[b.name] = EvalProgress(total=len(self.items[b.name]) * cfg.samples)
            graded = {b.name: self.store.graded(b.name) for b in self.rc.benchmarks}
            for u in units:
                prev = graded[u.bench.name].get((u.item.id, u.sample_index))
                if prev == u.grade_key and u.key in finished:
                    ev = self.state.per_eval[u.bench.name]
                    ev.done += 1
                    ev.cached += 1
                    continue
                todo.append(u)
            self._finished = finished
            progress = self._progress()
            stop = asyncio.Event()
            flusher = asyncio.create_task(self._flush_loop(stop, progress))
            try:
                if progress is not None:
                    progress.start()
                workers = [asyncio.create_task(self._worker(client, todo, progress))
                           for _ in range(min(cfg.concurrency, max(1, len(todo))))]  # fmt: skip
                await asyncio.gather(*workers)
            finally:
                stop.set()
                await flusher
                self.store.flush()
                if progress is not None:
                    self._refresh(progress)
                    progress.stop()
                if self._pool is not None:
                    self._pool.shutdown(cancel_futures=True)
        if self.state.aborted:
            raise RunAborted(self.state.aborted)
        return self.state

    async def _flush_loop(self, stop: asyncio.Event, progress: Progress | None) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                pass
            self.store.flush()
            if progress is not None:
                self._refresh(progress)

    async def _worker(self, client: ChatClient, todo: deque[Unit], progress: Progress | None) -> None:
        while todo and not self.state.aborted:
            u = todo.popleft()
            out = await self._obtain(client, u)
            if out is None:
                continue
            rec = await self._grade(u, out)
            self.store.put_sample(u.bench.name, u.item.id, u.sample_index, u.grade_key, u.key, rec["score"], rec)
            ev = self.state.per_eval[u.bench.name]
            ev.done += 1
            if out.attempts:
                ev.completion_tokens += out.completion_tokens or 0
            if progress is not None:
                progress.advance(ev.task_id)

    async def _obtain(self, client: ChatClient, u: Unit) -> Outcome | None:
        """The stored answer, the answer of an identical request in flight, or a new one."""
        if u.key in self._finished:
            row = self.store.get_request(u.key)
            if row is None and self.store.pending():  # answered this session, still in the write buffer
                self.store.flush()
                row = self.store.get_request(u.key)
            if row is not None and row["status"] in ("ok", "http_400"):
                return _outcome_from_row(row)
        shared = self._inflight_keys.get(u.key)
        if shared is not None:
            return await shared
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight_keys[u.key] = fut
        body = {"model": self.model, "messages": u.messages, **self.sampling}
        try:
            out = await client.complete(body, on_send=lambda: self.store.put_send(u.key, "sent"))
        except BaseException as e:
            fut.cancel()
            self._inflight_keys.pop(u.key, None)
            raise e
        fut.set_result(out)
        self._inflight_keys.pop(u.key, None)
        self.store.put_request(
            {
                "key": u.key, "eval": u.bench.name, "item_id": u.item.id, "sample_index": u.sample_index,
                "status": out.status, "request": canonical(body), "response": out.response, "content": out.content,
                "reasoning": out.reasoning, "finish_reason": out.finish_reason, "prompt_tokens": out.prompt_tokens,
                "completion_tokens": out.completion_tokens, "latency": out.latency, "attempts": out.attempts,
                "error": out.error, "endpoint": out.endpoint,
            }
        )  # fmt: skip
        if out.status in ("ok", "http_400"):
            self._finished[u.key] = out.status
        self._watch(out)
        return out

    def _watch(self, out: Outcome) -> None:
        """Stop early when errors or HTTP 400s dominate the first answers of this session."""
        st = self.state
        st.sent_outcomes[out.status] += 1
        n = self.rc.cfg.abort_after
        if len(st.first_outcomes) < n:
            st.first_outcomes.append(out.status)
            if len(st.first_outcomes) == n:
                bad = sum(1 for s in st.first_outcomes if s != "ok")
                if bad * 2 > n:
                    c = Counter(st.first_outcomes)
                    st.aborted = (
                        f"stopped early: {bad} of the first {n} answers were errors "
                        f"({c.get('failed', 0)} failed, {c.get('http_400', 0)} HTTP 400; last error: {out.error}); "
                        "everything finished is kept, rerun the same command to continue"
                    )

    async def _grade(self, u: Unit, out: Outcome) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "eval": u.bench.name, "item_id": u.item.id, "sample_index": u.sample_index, "request_key": u.key,
            "prompt": u.item.prompt, "gold": u.item.gold, "meta": u.item.meta, "status": out.status,
            "finish_reason": out.finish_reason, "completion_tokens": out.completion_tokens, "latency": out.latency,
        }  # fmt: skip
        flags = {"failed": out.status == "failed", "http_400": out.status == "http_400",
                 "truncated": out.finish_reason == "length", "missing_tag": False, "unparsed": False}  # fmt: skip
        if out.status == "failed":
            rec.update(response=None, answer_text=None, reasoning=None, extracted=None, score=None, grader=None,
                       error=out.error, flags=flags)  # fmt: skip
            return rec
        content = out.content if out.status == "ok" else ""  # HTTP 400: graded as the empty answer
        fmt = self.rc.reasoning_for(u.bench)
        split = fmt.apply(content, out.message)
        extracted = u.bench.extract(split.answer)
        flags["missing_tag"] = split.missing_tag
        flags["unparsed"] = extracted is None
        if extracted is not None and u.bench.worker_grader is not None:
            g = await asyncio.get_running_loop().run_in_executor(self._worker_pool(), u.bench.worker_grader,
                                                                 u.item, extracted)  # fmt: skip
        else:
            g = u.bench.grade(u.item, extracted)
        rec.update(response=content, reasoning=split.reasoning if split.reasoning is not None else out.reasoning,
                   answer_text=split.answer, extracted=extracted, score=g.score, grader=g.grader,
                   grader_detail=g.detail, grade_info=g.info, reasoning_format=str(fmt), flags=flags)  # fmt: skip
        return rec

    def _worker_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    # -- progress --------------------------------------------------------------------------------------------
    def _progress(self) -> Progress | None:
        if not self.show_progress:
            return None
        p = Progress(
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("in flight {task.fields[in_flight]:>4}"),
            TextColumn("{task.fields[tps]:>7} tok/s"),
            TimeRemainingColumn(),
            refresh_per_second=4,
        )
        for name, ev in self.state.per_eval.items():
            ev.task_id = p.add_task(name, total=ev.total, completed=ev.done, in_flight=0, tps="-")
        return p

    def _refresh(self, progress: Progress) -> None:
        elapsed = max(time.time() - self.state.started, 1e-6)
        in_flight = sum(e.in_flight for e in self.endpoints)
        for ev in self.state.per_eval.values():
            progress.update(ev.task_id, in_flight=in_flight if ev.done < ev.total else 0,
                            tps=f"{ev.completion_tokens / elapsed:.0f}")  # fmt: skip


def _outcome_from_row(row: dict[str, Any]) -> Outcome:
    import json

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
