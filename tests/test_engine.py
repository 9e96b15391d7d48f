"""The run engine: length-aware order, concurrency that finds the server's slots, grading off the request path.

The server is bench/sim_server.py (a simulated continuous-batching server, loopback, fast simulated time)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from scorecheck.client import EndpointState
from scorecheck.config import Resolved, RunConfig
from scorecheck.engine.abort import EarlyAbort
from scorecheck.engine.concurrency import Limit, headroom, parse_metrics
from scorecheck.engine.grading import pool_size
from scorecheck.engine.order import LengthModel, LengthOrder
from scorecheck.runner import Runner
from scorecheck.store import Store


class Sim:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "sim_server.py"), "--port", "0",
                                      "--idle-exit", "60", "--max-wall", "300", *args],
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("PORT "), line
        self.base_url = f"http://127.0.0.1:{int(line.split()[1])}/v1"

    def stats(self) -> dict:
        with urllib.request.urlopen(self.base_url[: -len("/v1")] + "/stats", timeout=30) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _run(sim: Sim, out: Path, *extra: str, evals: str = "mmlu", limit: int = 400) -> dict:
    r = run_cli("run", "--base-url", sim.base_url, "--model", "sim-model", "--evals", evals, "--limit", str(limit),
                "--max-tokens", "900", "--retry-wait", "0.05", "--out", str(out), "-q", *extra)  # fmt: skip
    assert r.code == 0, r.err[-2000:]
    return json.loads((out / "results.json").read_text())


# -- order ---------------------------------------------------------------------------------------------------------
def test_order_puts_the_longest_expected_first_and_keeps_identical_prompts_together():
    model = LengthModel(6000, stored={"long": (40, 40 * 900.0, 0), "short": (40, 40 * 120.0, 0)})
    entries = [("short", f"q{i}" * (1 + i % 7), f"s{i}") for i in range(20)]
    entries += [("long", f"p{i}" * (1 + i % 7), f"l{i}") for i in range(20)]
    entries += [("long", "same prompt", "dup-a"), ("short", "x", "x"), ("long", "same prompt", "dup-b")]
    order = LengthOrder(entries, model)
    popped = [order.pop() for _ in range(len(order))]
    names = [e for _, e, _ in popped]
    assert names == ["long"] * 22 + ["short"] * 21  # the long eval first, whole
    expected = [x for _, _, x in popped]
    assert expected == sorted(expected, reverse=True)  # longest expected first throughout
    payloads = [p for p, _, _ in popped]
    assert abs(payloads.index("dup-a") - payloads.index("dup-b")) == 1  # identical prompts adjacent


def test_order_follows_answers_as_they_come_in_and_starts_runaway_prone_evals_early():
    model = LengthModel(6000)
    order = LengthOrder([("a", "q", i) for i in range(50)] + [("b", "q", i) for i in range(50)], model)
    for _ in range(10):
        model.observe("b", 2000, "stop")
    assert order.pop()[1] == "b"
    for _ in range(20):
        model.observe("a", 300, "length" if _ % 2 else "stop")  # half of a's answers ran to max_tokens
    assert order.pop()[1] == "a"


# -- concurrency ---------------------------------------------------------------------------------------------------
VLLM_METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 250.0
vllm:num_requests_running{engine="1",model_name="m"} 6.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting_by_reason{reason="capacity"} 99.0
vllm:generation_tokens_total{model_name="m"} 1.2e+06
"""
SGLANG_METRICS = """sglang:num_running_reqs{model_name="m",dp="0"} 48 1700000000000
sglang:num_queue_reqs{model_name="m",dp="0"} 0
"""


def test_metrics_parsing_of_vllm_and_sglang():
    assert parse_metrics(VLLM_METRICS) == ("vllm", 256.0, 3.0)
    assert parse_metrics(SGLANG_METRICS) == ("sglang", 48.0, 0.0)
    assert parse_metrics("# nothing here\nprocess_cpu_seconds_total 3\n") is None


def test_limit_follows_the_metrics_and_backs_off_on_429():
    ep = EndpointState("http://x/v1", None)
    lim = Limit(ep)
    ep.in_flight = lim.value
    lim.on_metrics(running=lim.value, waiting=0)
    assert lim.value == 64  # nothing waits and we use the whole limit: doubles
    ep.in_flight = 64
    lim.on_metrics(running=40, waiting=24)  # 40 slots: 24 wait; once may be arrivals waiting for the next step
    assert lim.value == 64
    lim.on_metrics(running=40, waiting=24)
    assert lim.value == 40 + headroom(40)
    before = lim.value
    ep.throttled += 1
    lim.on_metrics(running=30, waiting=0)
    assert lim.value == int(before * 0.7)


def test_latency_fit_tells_a_fixed_overhead_from_a_queue():
    """A remote API's latency has a fixed part (network, prefill): not a queue. A queue then shows as more wait."""
    ep = EndpointState("http://x/v1", None)
    lim = Limit(ep)

    def window(wait: float, in_flight: int) -> None:
        ep.in_flight = in_flight - 1
        for i in range(max(48, lim.value // 2)):
            tokens = 100 + 37 * (i % 20)
            lim.on_completion(0.8 + wait + tokens * 0.02, tokens, sent_at=lim.changed_at + 1)

    window(0.0, 32)
    assert lim.value == 64  # 0.8 s of fixed latency, yet not full: grows
    window(0.0, 64)
    assert lim.value == 128
    window(7.0, 128)  # now every request also waits 7 s: service 0.02 s x 396 tokens = 7.9 s, so ~68 slots busy
    assert lim.value == 96  # a quarter off at most per window
    window(7.0 * 96 / 128, 96)
    assert 66 <= lim.value <= 74, lim.value  # 68 + the headroom


@pytest.mark.parametrize("metrics", [True, False], ids=["metrics", "latency"])
def test_adaptive_concurrency_converges_to_the_servers_slots(tmp_path, metrics):
    slots = 48
    sim = Sim("--slots", str(slots), "--speed", "40", *([] if metrics else ["--no-metrics"]))
    try:
        res = _run(sim, tmp_path / "run", limit=900)
        stats = sim.stats()
    finally:
        sim.stop()
    (conc,) = res["schedule"]["concurrency"]
    assert conc["mode"] == ("metrics:vllm" if metrics else "latency")
    assert 0.9 * slots <= conc["final"] <= 1.1 * slots, conc
    assert stats["served"] >= 900


def test_backs_off_on_429(tmp_path):
    sim = Sim("--slots", "16", "--speed", "40", "--no-metrics", "--queue-limit", "4")
    try:
        res = _run(sim, tmp_path / "run", limit=150)
    finally:
        sim.stop()
    (conc,) = res["schedule"]["concurrency"]
    assert conc["final"] < 32 and conc["changes"] >= 1, conc  # started at 32, cut on the 429s
    assert res["requests_this_session"] == {"ok": 150}  # every 429 retried: nothing lost


# -- grading off the request path ----------------------------------------------------------------------------------
def test_grading_never_lowers_requests_in_flight_below_the_target(tmp_path, data_dir):
    """HumanEval answers graded in the sandbox and GSM8K in the math pool: while requests wait to be sent, the
    number in flight stays at the fixed target, and answers are being graded at the same time. A slot whose answer
    waits for its commit (a few ms: durable before it counts as finished) is counted as the request it still is."""
    target = 6
    sim = Sim("--slots", "64", "--speed", "20")
    rc = Resolved(RunConfig(endpoints=[{"base_url": sim.base_url}], model="sim-model", evals=["humaneval", "gsm8k"],
                            limit=30, max_tokens=300, concurrency=target))  # fmt: skip
    store = Store(tmp_path)
    samples: list[tuple[int, int]] = []
    try:
        runner = Runner(rc, [EndpointState(sim.base_url, None)], "sim-model", store, show_progress=False)
        runner.load_data()

        async def main() -> None:
            task = asyncio.create_task(runner.run())
            started = False
            while not task.done():
                live = runner.live
                if live is not None and live.order:
                    n = sum(e.in_flight for e in runner.endpoints) + runner.committing
                    started = started or n >= target
                    if started:
                        samples.append((n, live.grading.waiting))
                await asyncio.sleep(0.002)
            await task

        asyncio.run(main())
    finally:
        store.close()
        sim.stop()
    assert len(samples) > 50
    assert min(n for n, _ in samples) == target
    assert sum(1 for _, g in samples if g > 0) > 10  # grading overlapped the requests
    assert len(list(store_samples(tmp_path))) == 60


def store_samples(run_dir: Path):
    s = Store(run_dir)
    try:
        yield from (r for b in ("humaneval", "gsm8k") for r in s.iter_samples(b))
    finally:
        s.close()


def test_grading_pool_size_and_abort_policy():
    assert pool_size(2) == 2 and pool_size(1) == 1 and pool_size(4) == 4
    assert pool_size(64) == 7  # a big machine: the memory budget caps it (2 GB at 260 MB a worker)
    p = EarlyAbort("judge requests", 4, frozenset({"failed"}))
    assert [p.observe(s, "boom") for s in ("ok", "failed", "failed")] == [None, None, None]
    msg = p.observe("failed", "boom")
    assert msg is not None and "3 of the first 4 judge requests" in msg and "3 failed" in msg
    assert p.observe("failed", "x") is None and p.outcomes["failed"] == 4


def test_circuit_breaker_trips_on_sustained_failure_only(monkeypatch):
    from scorecheck.engine import abort

    now = [1000.0]
    monkeypatch.setattr(abort.time, "monotonic", lambda: now[0])
    br = abort.CircuitBreaker("answer from the model", 60.0, frozenset({"failed", "http_400"}), min_failures=8)
    for _ in range(20):  # many failures, but an answer a moment ago
        br.attempt("failed", "HTTP 502")
    assert not br.tripped()
    now[0] += 61
    assert br.tripped()  # no answer for 61 s, 20 failed attempts
    br.attempt("ok", None)
    assert not br.tripped() and br.failures == 0
    now[0] += 120
    assert not br.tripped()  # a long quiet spell without failures (long answers) is not a death
    for _ in range(7):
        br.attempt("http_400", "HTTP 400: context")
    assert not br.tripped()  # fewer than min_failures
    br.attempt("failed", "reset")
    assert br.tripped() and "last error: reset" in br.reason() and br.probe_for == 30.0


def test_a_grading_backlog_waits_in_the_store_and_grades_the_same(tmp_path, stub, data_dir, monkeypatch):
    """Beyond GRADING_IN_MEMORY queued answers, an answer waits as its key and is read back from the store when
    graded: the records are the same as with every answer held in memory."""
    import scorecheck.runner as runner_mod

    stub.control(answer="<thinking>long reasoning</thinking><output>Answer: C</output>")

    def graded(run_dir: Path, in_memory: int) -> list[dict]:
        monkeypatch.setattr(runner_mod, "GRADING_IN_MEMORY", in_memory)
        rc = Resolved(RunConfig(endpoints=[{"base_url": stub.base_url}], model="stub-model", evals=["mmlu", "gsm8k"],
                                limit=20, concurrency=8, system_prompt="reflection", reasoning="reflection"))  # fmt: skip
        store = Store(run_dir)
        try:
            r = Runner(rc, [EndpointState(stub.base_url, None)], "stub-model", store, show_progress=False)
            r.load_data()
            asyncio.run(r.run())
            return sorted((s for e in ("mmlu", "gsm8k") for s in store.iter_samples(e)),
                          key=lambda s: (s["eval"], s["item_id"]))  # fmt: skip
        finally:
            store.close()

    held, spilled = graded(tmp_path / "held", 10**9), graded(tmp_path / "spilled", 0)
    keep = ("eval", "item_id", "response", "reasoning", "answer_text", "extracted", "score", "flags", "grader")
    assert len(held) == 40 and [{k: s[k] for k in keep} for s in held] == [{k: s[k] for k in keep} for s in spilled]
    assert {s["extracted"] for s in held if s["eval"] == "mmlu"} == {"C"}
