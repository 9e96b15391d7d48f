"""Grading off the request path: a queue of finished answers and a pool of worker processes.

Request workers only send and store; each finished answer goes onto :class:`GradingQueue`, whose own tasks grade it
(extraction and light grading inline, symbolic math and HumanEval programs in :class:`GradingPool`'s processes,
judge verdicts over the network). A slow grade therefore never lowers the number of requests in flight, and grading
overlaps the run; the run ends when both queues are empty.

The pool has one worker per core (the event loop needs little CPU: about 0.5 ms an answer, BENCHMARKS.md), and no more
than :data:`MEMORY_BUDGET_MB` allows at :data:`WORKER_RSS_MB` each. HumanEval's programs run inside these
workers (``sandbox.run_program``), so the pool's size also bounds the sandboxed programs this run starts at once;
``sandbox.py`` may cap them further machine-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from scorecheck.benchmarks import Graded
from scorecheck.procs import ChildPool, pool_worker_init, stop_pool

WORKER_GRADE_TIMEOUT_S = 120.0
"""A worker-process grade that takes longer (math-verify's own signal.alarm timeouts did not fire, e.g. stuck in C
code) scores 0 with the reason, and the worker pool is replaced."""

WORKER_RSS_MB = 260
"""Resident memory of one grading worker after grading the full suite's answers (math-verify and sympy, IFEval's
nltk and langdetect, HumanEval's sandbox client loaded; measured 235-240 MB, BENCHMARKS.md), rounded up."""

MEMORY_BUDGET_MB = 2048
"""The most the grading pool may hold resident: 7 workers at :data:`WORKER_RSS_MB`, whatever the core count (a
64-core box grades with 7; grading is a few percent of a run's work, BENCHMARKS.md)."""


def pool_size(cpus: int | None = None, budget_mb: int = MEMORY_BUDGET_MB) -> int:
    """Worker processes for a machine with ``cpus`` cores (default: the cores this process may use)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, budget_mb // WORKER_RSS_MB))


WORKER_NICE = 10
"""Grading workers run at a lower priority than the event loop that keeps the server busy: on a loaded machine the
loop gets the CPU first, and grading catches up when it is free."""


INLINE_BELOW_S = 0.0005
"""A benchmark's in-process grade (``Benchmark.grade``) goes to the pool until its first :data:`MEASURE_N` grades
are measured there; when they take under this much on average (answer patterns: MMLU, GPQA) the rest run in the
grading thread (no round trip to a process), else they stay in the pool (IFEval's checkers, about 2 ms, and the
70 MB langdetect and nltk need, which so stay out of the main process). A benchmark object that does not pickle
grades in the thread (the protocols' own mappings pickle: ``protocols.spec.FrozenMap``)."""
MEASURE_N = 20


def _init_worker(parent: int, nltk_paths: list[str]) -> None:
    pool_worker_init(parent)  # dies with scorecheck, ignores Ctrl-C (the parent stops the pool)
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    if nltk_paths:  # where the main process found nltk's data (IFEval's ensure_nltk); only workers that need it
        import nltk

        nltk.data.path.extend(p for p in nltk_paths if p not in nltk.data.path)


def _timed(fn: Callable[..., Graded], *args: Any) -> tuple[Graded, float]:
    t0 = time.perf_counter()
    g = fn(*args)
    return g, time.perf_counter() - t0


class GradingPool:
    """Worker processes (spawned, started on first use) for grading functions that may be slow or hang."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or pool_size()
        self._pool: ProcessPoolExecutor | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grading")
        """In-process grading (IFEval's checkers, answer patterns) runs here, one at a time (their libraries load
        data lazily and are not known to be thread-safe): the event loop keeps its share of the CPU (the GIL
        switches every 5 ms) instead of stopping for every grade, or for seconds while langdetect loads."""

        self._cost: dict[str, list[float]] = {}

    async def grade_measured(self, kind: str, fn: Callable[..., Graded], *args: Any) -> Graded:
        """An in-process grade of benchmark ``kind``: in the pool while measured or slow, else in the thread."""
        if kind not in self._cost:
            try:  # a benchmark whose state does not pickle cannot go to a worker
                pickle.dumps(fn)
                self._cost[kind] = []
            except (pickle.PicklingError, TypeError, AttributeError):
                self._cost[kind] = [0.0] * MEASURE_N
        cost = self._cost[kind]
        if len(cost) >= MEASURE_N and sum(cost) / len(cost) < INLINE_BELOW_S:
            return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
        got = await self.grade(_timed, fn, *args)
        if isinstance(got, Graded):  # the pool's timeout or crash verdict
            return got
        g, seconds = got
        if len(cost) < MEASURE_N:
            cost.append(seconds)
        return g

    async def grade(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in a worker; a hang past the timeout or a worker that died twice scores 0 with the reason."""
        for attempt in (1, 2):
            pool = self._get()
            fut = asyncio.get_running_loop().run_in_executor(pool, fn, *args)
            try:
                return await asyncio.wait_for(fut, WORKER_GRADE_TIMEOUT_S)
            except TimeoutError:
                self._replace(pool)
                return Graded(0.0, "worker-timeout", f"grading took over {WORKER_GRADE_TIMEOUT_S:.0f} s")
            except BrokenProcessPool:
                self._replace(pool)
                if attempt == 2:
                    return Graded(0.0, "worker-crash", "the grading worker process died twice")
        raise AssertionError("unreachable")

    def _get(self) -> ProcessPoolExecutor:
        if self._pool is None:
            nltk = sys.modules.get("nltk")
            self._pool = ChildPool(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker,
                                   initargs=(os.getpid(), [str(p) for p in nltk.data.path] if nltk else []))  # fmt: skip
        return self._pool

    def _replace(self, pool: ProcessPoolExecutor) -> None:
        """Kill a pool whose worker hangs or died; the next grade starts a fresh one."""
        if self._pool is pool:
            self._pool = None
        for p in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                p.kill()
        pool.shutdown(wait=False)

    def shutdown(self) -> None:
        """Stop the workers without waiting on a busy one (a grade stuck in C code once hung Ctrl-C)."""
        if self._pool is not None:
            stop_pool(self._pool)
            self._pool = None


class GradingQueue:
    """Finished answers waiting to be graded, and the tasks that grade them (``grade_one`` per entry)."""

    def __init__(self, grade_one: Callable[..., Awaitable[None]], tasks: int) -> None:
        self._grade_one = grade_one
        self._queue: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(max(1, tasks))]
        self.queued = 0
        self.graded = 0
        self.busy = 0

    def put(self, *entry: Any) -> None:
        self.queued += 1
        self._queue.put_nowait(entry)

    @property
    def waiting(self) -> int:
        """Answers queued or being graded."""
        return self.queued - self.graded

    async def _loop(self) -> None:
        while True:
            entry = await self._queue.get()
            if entry is None:
                return
            self.busy += 1
            try:
                await self._grade_one(*entry)
            finally:
                self.busy -= 1
                self.graded += 1

    async def close(self) -> None:
        """Grade everything queued, then stop the tasks (an exception in a grade is raised here)."""
        for _ in self._tasks:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._tasks)

    def cancel(self) -> None:
        for t in self._tasks:
            t.cancel()
