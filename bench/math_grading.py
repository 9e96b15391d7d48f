"""How long the symbolic grader takes on 5,000 MATH answers and 5,000 GSM8K answers, through the harness's own path
(Runner._grade_plain: the 2-process spawn pool, the answer's normalisation and math-verify with signal.alarm timeouts
in the workers).

Two passes of 5,000, each in a fresh pool (math-verify caches parses per process; a fresh pool keeps that honest, and
the pool's start, about 2-3 s of imports, is counted):
- ``gold``: each problem's gold answer given back as the answer, written as a model would (``$<gold>$``); every one
  should score 1, and those that do not are listed (they are answers the grader cannot match even to themselves);
- ``perturbed``: the gold with its last digit changed (or ``+1`` appended when it has none); should score 0, and
  those that do not are listed;
- ``gsm8k``: the first 5,000 answers of GPT-3's labelled GSM8K solutions (the text after the last ``A:``, as in
  bench/grader_study.py), graded by the GSM8K eval's grader; each should score as its label says.

Run: ``SCORECHECK_DATA_DIR=../shared/datasets python bench/math_grading.py [--limit N] [--evals math,gsm8k]
[--json out.json]``.

``--against OLD.py`` (another version of grading/symbolic.py, e.g. ``git show main:src/scorecheck/grading/symbolic.py
> /tmp/old.py``) also grades every pass with both versions in this process, interleaved in chunks of 250 answers
(which version goes first alternates; math-verify's and sympy's caches are cleared before each chunk), and prints the CPU
and wall time of each: on a machine loaded by others, the ratio of the two is what can be trusted.
The numbers in BENCHMARKS.md come from this script; it prints the machine's load so a busy machine is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from grader_study import gsm8k_cases  # noqa: E402
from scorecheck.benchmarks import Item  # noqa: E402
from scorecheck.config import Resolved, build  # noqa: E402


def perturb(gold: str) -> str:
    digits = list(re.finditer(r"\d", gold))
    if not digits:
        return gold + "+1"
    m = digits[-1]
    return gold[: m.start()] + str((int(m.group()) + 1) % 10) + gold[m.end() :]


async def grade_all(items: list[Item], answers: list[str], concurrency: int, eval_name: str) -> tuple[list, float]:
    """Wall seconds include starting the pool (spawn, imports) and shutting it down."""
    from scorecheck.runner import Runner

    rc = Resolved(build({}, {"evals": eval_name}))
    runner = Runner(rc, [], "bench", store=None, show_progress=False)  # type: ignore[arg-type]
    bench = rc.benchmarks[0]
    results: list = [None] * len(items)
    todo = list(range(len(items)))
    t0 = time.perf_counter()

    async def worker() -> None:
        while todo:
            i = todo.pop()
            results[i] = await runner._grade_plain(bench, items[i], answers[i])

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        if runner._pool is not None:
            runner._pool.shutdown()
    return results, time.perf_counter() - t0


def against(old_path: Path, eval_name: str, items: list[Item], answers: list[str]) -> dict:
    """Both versions of symbolic_equal on the same answers, interleaved; CPU and wall seconds of each."""
    import importlib.util

    import math_verify.parser as mp
    from sympy.core.cache import clear_cache

    from scorecheck.grading import symbolic as new

    spec = importlib.util.spec_from_file_location("symbolic_against", old_path)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    latex = eval_name == "math"
    for it, a in zip(items[:50], answers[:50], strict=False):  # warm-up, untimed: imports and lazy set-up
        new.symbolic_equal(it.gold, a, latex_gold=latex)
        old.symbolic_equal(it.gold, a, latex_gold=latex)
    totals = {"new": [0.0, 0.0], "old": [0.0, 0.0]}
    for k, start in enumerate(range(0, len(items), 250)):
        chunk = list(zip(items[start : start + 250], answers[start : start + 250], strict=True))
        for name in ("new", "old") if k % 2 == 0 else ("old", "new"):
            fn = (new if name == "new" else old).symbolic_equal
            for f in (mp.parse_latex_cached, mp.parse_expr_cached):
                f.cache_clear()
            clear_cache()  # sympy's own cache, which would let the second version reuse the first one's work
            c0, w0 = time.process_time(), time.perf_counter()
            for it, a in chunk:
                fn(it.gold, a, latex_gold=latex)
            totals[name][0] += time.process_time() - c0
            totals[name][1] += time.perf_counter() - w0
    return {name: {"cpu_s": round(c, 2), "wall_s": round(w, 2)} for name, (c, w) in totals.items()} | {
        "cpu_ratio_new_over_old": round(totals["new"][0] / totals["old"][0], 3)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--evals", default="math,gsm8k")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--against", type=Path, default=None, help="another grading/symbolic.py to time against")
    args = ap.parse_args()
    from scorecheck.benchmarks import get_benchmarks

    evals = args.evals.split(",")
    passes: list[tuple[str, str, list[Item], list[str], list[float]]] = []
    if "math" in evals:
        items, _ = get_benchmarks(["math"])[0].load("glaive-2024", args.limit)
        passes += [("gold", "math", items, [f"${it.gold}$" for it in items], [1.0] * len(items)),
                   ("perturbed", "math", items, [f"${perturb(it.gold)}$" for it in items], [0.0] * len(items))]  # fmt: skip
    if "gsm8k" in evals:
        cases = [c for c in gsm8k_cases() if c["answer"] is not None][: args.limit or 5000]
        passes.append(("gsm8k", "gsm8k", [Item(c["id"], "", c["gold"]) for c in cases], [c["answer"] for c in cases],
                       [float(c["label"]) for c in cases]))  # fmt: skip
    load_before = os.getloadavg()
    report: dict = {"cpus": os.cpu_count(), "loadavg_before": load_before}
    for name, eval_name, items, answers, wants in passes:
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res, secs = asyncio.run(grade_all(items, answers, args.concurrency, eval_name))
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        # CPU seconds of the (finished, reaped) worker processes: on a busy machine wall time says little, and
        # cpu / 2 is the wall time the 2 workers would take on 2 free cores.
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        wrong = [(it.id, it.gold, a, g.score, g.detail) for it, a, g, want in zip(items, answers, res, wants, strict=True)
                 if g.score != want]  # fmt: skip
        details: dict[str, int] = {}
        for g in res:
            details[g.detail or "ok"] = details.get(g.detail or "ok", 0) + 1
        report[name] = {"n": len(items), "seconds": round(secs, 2), "per_s": round(len(items) / secs, 1),
                        "worker_cpu_s": round(cpu, 1),
                        "unexpected": len(wrong), "details": details, "examples": wrong}  # fmt: skip
        print(f"{name:>9}: {len(items)} answers in {secs:.1f} s wall ({len(items) / secs:.0f}/s), {cpu:.1f} CPU-s in "
              f"the workers (= {cpu / 2:.1f} s on 2 free cores); "
              f"{len(wrong)} not scored as expected; details {details}", flush=True)  # fmt: skip
        if args.against:
            ab = against(args.against, eval_name, items, answers)
            report[name]["against"] = ab
            print(f"{name:>9}: in-process, interleaved: this version {ab['new']['cpu_s']} CPU-s "
                  f"({ab['new']['wall_s']} s wall), {args.against} {ab['old']['cpu_s']} CPU-s ({ab['old']['wall_s']} s "
                  f"wall): ratio {ab['cpu_ratio_new_over_old']}", flush=True)  # fmt: skip
    report["loadavg_after"] = os.getloadavg()
    print(f"load average before {load_before}, after {report['loadavg_after']} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
