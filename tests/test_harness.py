"""The harness's own speed work: the retry backoff, reuse of identical requests, and the harness benchmark script."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from conftest import ROOT
from scorecheck.benchmarks import Item, get_benchmarks
from scorecheck.client import ChatClient, EndpointState
from scorecheck.config import Resolved, RunConfig
from scorecheck.runner import Runner, Unit
from scorecheck.store import Store


def test_backoff_doubles_with_jitter_and_is_capped():
    c = ChatClient([EndpointState("http://127.0.0.1:9/v1", None)], 1, 1.0, 10, 0.5)
    for attempt in range(1, 8):
        base = 0.5 * 2 ** (attempt - 1)
        for _ in range(50):
            w = c.backoff(attempt)
            assert min(base, 60) <= w <= min(base + 0.5, 60)
    assert c.backoff(2000) == 60.0  # no overflow however many retries
    assert ChatClient([EndpointState("http://x", None)], 1, 1.0, 3, 0.0).backoff(3) == 0.0


class _NoNetwork:
    async def complete(self, *a, **k):
        raise AssertionError("an identical request that has been answered was sent again")


def test_answer_still_in_the_write_buffer_is_reused_not_resent(tmp_path):
    """MMLU repeats some questions word for word: their requests are identical. One answered less than a flush
    interval ago is in the store's write buffer, not yet in SQLite; it must be reused, not sent again."""
    rc = Resolved(RunConfig(endpoints=[{"base_url": "http://127.0.0.1:9/v1"}], model="m", evals=["mmlu"]))
    store = Store(tmp_path)
    try:
        runner = Runner(rc, [EndpointState("http://127.0.0.1:9/v1", None)], "m", store, show_progress=False)
        key = "k" * 64
        store.put_request({"key": key, "eval": "mmlu", "item_id": "1", "sample_index": 0, "status": "ok",
                           "content": "Answer: B", "finish_reason": "stop", "attempts": 1})  # fmt: skip
        runner._finished = {key: "ok"}
        unit = Unit(get_benchmarks(["mmlu"])[0], Item("2", "q", "B"), 0, rc.messages("q"), key, "g")
        out = asyncio.run(runner._obtain(_NoNetwork(), unit))  # type: ignore[arg-type]
        assert out is not None and out.status == "ok" and out.content == "Answer: B" and out.attempts == 0
    finally:
        store.close()


def test_harness_benchmark_runs_and_checks_itself():
    """A small run of bench/harness_throughput.py: it drives the real CLI twice and checks what it measured."""
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "harness_throughput.py"), "--limit", "150",
                        "--concurrency", "32", "--timeout", "120"], capture_output=True, text=True, timeout=300)  # fmt: skip
    # 0: targets met, 1: a target missed (a 300-sample run is too short to sustain the rate); 2: the run was wrong.
    assert p.returncode in (0, 1), p.stdout + p.stderr
    assert "requests/s sustained" in p.stdout and "300 samples" in p.stdout
