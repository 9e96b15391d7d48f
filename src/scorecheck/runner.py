"""A run: data -> prompt -> request (async, stored, resumable) -> reasoning split -> extraction -> grading.

All evals of a run go through one pool of workers, so the server never idles between evals. A request whose answer
is already in the store is never sent again; a sample already graded under the same grade key is not graded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from scorecheck.benchmarks import Benchmark, Graded, Item
from scorecheck.client import ChatClient, EndpointState, Outcome, decode_replaced, find_model, model_identity
from scorecheck.config import Resolved
from scorecheck.errors import EndpointError, RunAborted
from scorecheck.grading.judge import judge_messages, judge_says_yes
from scorecheck.grading.plan import GradingPlan
from scorecheck.procs import ChildPool, pool_worker_init, stop_pool
from scorecheck.store import Store, canonical, request_key

GRADING_VERSION = "2"
"""Bump when extraction or grading code changes what a stored response scores. 2: the symbolic grader normalises the
answer line before math-verify (grading/symbolic.py, issue #17)."""

WORKER_GRADE_TIMEOUT_S = 120.0
"""A worker-process grade that takes longer (math-verify's own signal.alarm timeouts did not fire, e.g. stuck in C
code) scores 0 with the reason, and the worker pool is replaced."""

JUDGE_EVAL = "judge"
"""The ``eval`` column of judge requests in the store (their item_id is ``<eval>/<item id>``)."""


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
    judge_outcomes: Counter[str] = field(default_factory=Counter)
    judge_first: list[str] = field(default_factory=list)


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
        self.grading: GradingPlan = rc.grading()
        self.judge_endpoint: EndpointState | None = None
        """Set by the session when a judge-capable eval is graded by the judge."""
        self.judge_identity: dict[str, Any] = {}
        self.judge_models_answer: dict[str, Any] = {}
        self._judge_client: ChatClient | None = None
        self._finished: dict[str, str] = {}

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
        body = {"model": model, "messages": [{"role": "user", "content": "Reply with Yes."}],
                **self.grading.judge_sampling, "max_tokens": 1}  # fmt: skip
        out = await client.complete(body)
        if out.status != "ok":
            raise EndpointError(f"a test request to the judge endpoint failed: {out.error}")

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
        async with ChatClient([self.judge_endpoint], cfg.concurrency, cfg.timeout, cfg.max_retries,
                              cfg.retry_wait) as jc:  # fmt: skip
            await self.preflight_judge(jc)
            self._judge_client = jc
            try:
                yield jc
            finally:
                self._judge_client = None

    # -- the run ---------------------------------------------------------------------------------------------
    async def run(self) -> RunState:
        cfg = self.rc.cfg
        async with (
            ChatClient(self.endpoints, cfg.concurrency, cfg.timeout, cfg.max_retries, cfg.retry_wait) as client,
            self._judge_session(),
        ):
            await self.preflight(client)
            units = self.units()
            finished = self.store.finished_requests()
            todo: deque[Unit] = deque()
            for b in self.rc.benchmarks:
                self.state.per_eval[b.name] = EvalProgress(total=len(self.items[b.name]) * self.rc.samples_for(b))
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
                    stop_pool(self._pool)
        if self.state.aborted:
            raise RunAborted(self.state.aborted)
        return self.state

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
                n = min(self.rc.cfg.concurrency, max(1, len(todo)))
                await asyncio.gather(*(worker() for _ in range(n)))
        finally:
            stop.set()
            await flusher
            self.store.flush()
            if self._pool is not None:
                stop_pool(self._pool)
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
            if progress is not None:
                self._refresh(progress)

    async def _worker(self, client: ChatClient, todo: deque[Unit], progress: Progress | None) -> None:
        while todo and not self.state.aborted:
            u = todo.popleft()
            out = await self._obtain(client, u)
            if out is None:
                continue
            rec = await self._grade(u, out)
            # A sample whose judge request failed is stored under a grade key that never matches: a rerun grades it
            # again (the judge request is retried, the model request is not).
            gk = "judge-failed" if rec["flags"].get("judge_failed") else u.grade_key
            self.store.put_sample(u.bench.name, u.item.id, u.sample_index, gk, u.key, rec["score"], rec)
            ev = self.state.per_eval[u.bench.name]
            ev.done += 1
            if out.attempts:
                ev.completion_tokens += out.completion_tokens or 0
            if progress is not None:
                progress.advance(ev.task_id)

    async def _obtain(self, client: ChatClient, u: Unit) -> Outcome | None:
        """The stored answer, the answer of an identical request in flight, or a new one."""
        stored = self._stored(u.key)  # answered earlier, or this session (then maybe still in the write buffer)
        if stored is not None:
            return stored
        body = {"model": self.model, "messages": u.messages, **self.sampling}
        return await self._send(client, u.key, body, u.bench.name, u.item.id, u.sample_index, self._watch)

    async def _send(self, client: ChatClient, key: str, body: dict[str, Any], eval_name: str, item_id: str,
                    sample_index: int, watch: Callable[[Outcome], None]) -> Outcome:  # fmt: skip
        """Send one request (or wait for the identical one in flight), store its outcome and ``watch`` it."""
        shared = self._inflight_keys.get(key)
        if shared is not None:
            return await shared
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight_keys[key] = fut
        try:
            out = await client.complete(body, on_send=lambda: self.store.put_send(key, "sent"))
            self.store.put_request(
                {
                    "key": key, "eval": eval_name, "item_id": item_id, "sample_index": sample_index,
                    "status": out.status, "request": canonical(body), "response": out.response,
                    "content": out.content, "reasoning": out.reasoning, "finish_reason": out.finish_reason,
                    "prompt_tokens": out.prompt_tokens, "completion_tokens": out.completion_tokens,
                    "latency": out.latency, "attempts": out.attempts, "error": out.error, "endpoint": out.endpoint,
                }
            )  # fmt: skip
            await self.store.commit()  # durable before it counts as finished: a kill re-sends only what was in flight
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

    def _watch_judge(self, out: Outcome) -> None:
        """Stop early when most of the first judge answers of this session failed (a wrong key, a dead endpoint)."""
        st = self.state
        st.judge_outcomes[out.status] += 1
        n = self.rc.cfg.abort_after
        if len(st.judge_first) < n:
            st.judge_first.append(out.status)
            if len(st.judge_first) == n and sum(1 for s in st.judge_first if s == "failed") * 2 > n:
                st.aborted = (
                    f"stopped early: most of the first {n} judge requests failed (last error: {out.error}); "
                    "everything finished is kept, rerun the same command to continue"
                )

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
        """The benchmark's own grading: ``worker_grader`` in a worker process for parsed answers, else ``grade``."""
        if extracted is None or bench.worker_grader is None:
            return bench.grade(item, extracted)
        for attempt in (1, 2):
            pool = self._worker_pool()
            fut = asyncio.get_running_loop().run_in_executor(pool, bench.worker_grader, item, extracted)
            try:
                return await asyncio.wait_for(fut, WORKER_GRADE_TIMEOUT_S)
            except TimeoutError:
                self._replace_pool(pool)
                return Graded(0.0, "worker-timeout", f"grading took over {WORKER_GRADE_TIMEOUT_S:.0f} s")
            except BrokenProcessPool:
                self._replace_pool(pool)
                if attempt == 2:
                    return Graded(0.0, "worker-crash", "the grading worker process died twice")
        raise AssertionError("unreachable")

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

    def _worker_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ChildPool(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=pool_worker_init, initargs=(os.getpid(),))  # fmt: skip
        return self._pool

    def _replace_pool(self, pool: ProcessPoolExecutor) -> None:
        """Kill a pool whose worker hangs or died; the next grade starts a fresh one."""
        if self._pool is pool:
            self._pool = None
        for p in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                p.kill()
        pool.shutdown(wait=False)

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
