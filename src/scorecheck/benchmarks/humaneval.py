"""HumanEval (164 problems), as the protocol runs it (glaive-2024: the fork's humaneval_eval.py, described here;
simple-evals: its own instruction, signature stripping, 5 samples per task and pass@1/2/5), with openai/human-eval's
``check_correctness`` semantics, executed in scorecheck's sandbox (``scorecheck.sandbox``).

Prompt: one user message, the protocol's instruction + ``problem["prompt"]`` (after the run's system prompt).
Extraction: the first ```` ```python\\n(.*?)``` ```` block (DOTALL), else the whole response (never unparsed);
simple-evals then keeps ``answer[answer.find(":\\n    ") + 2:]`` (its signature stripping).
Program: ``prompt + completion + "\\n" + test + "\\n" + "check(<entry_point>)"``, run with human-eval's semantics
(module name not ``__main__``, stdin unreadable, output swallowed, its reliability_guard calls disabled, 3 s
timeout); it passes only when ``check(...)`` completed. Each sample's outcome (passed, failed with the exception's
type, timed out, killed by a limit) and the sandbox's isolation are kept with the sample.
Scores: pass@1 with one sample per task (the fork's number); with ``--epochs n``, pass@k for k in 1, 2, 5,
10, 20, 50, 100 and n (those up to n) with human-eval's unbiased estimator, averaged over tasks (simple-evals: the
protocol's k, 1, 2 and 5, with its 5 samples).
The fork always drew ``random.Random(0).sample(problems, 164)`` (the same set, shuffled); ``--limit n`` draws as it.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from scorecheck import data, sandbox
from scorecheck.benchmarks import Benchmark, Graded, Item, fork_subset
from scorecheck.protocols import DEFAULT_PROFILE
from scorecheck.stats import mean_ci

KS = (1, 2, 5, 10, 20, 50, 100)
DEFAULT_TIMEOUT = 3.0
"""openai/human-eval evaluate_functional_correctness's default, which both harnesses used."""


def read_problems(path: str) -> list[dict[str, Any]]:
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def find_code(completion: str) -> str:
    """The fork's ``find_code``: the first ```python block, else the whole response."""
    return DEFAULT_PROFILE.evals["humaneval"].extraction.apply(completion) or ""


def program(problem_prompt: str, completion: str, test: str, entry_point: str) -> str:
    """human-eval's check program."""
    return problem_prompt + completion + "\n" + test + "\n" + f"check({entry_point})"


def pass_at_k(n: int, c: int, k: int) -> float:
    """human-eval's unbiased estimator ``1 - C(n-c, k) / C(n, k)``, computed as it does (a running product)."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def run_sample(problem_prompt: str, completion: str, test: str, entry_point: str,
               timeout: float = DEFAULT_TIMEOUT) -> Graded:  # fmt: skip
    iso = sandbox.isolation()
    out = sandbox.run_program(program(problem_prompt, completion, test, entry_point), sandbox.Limits(timeout=timeout))
    info = {"outcome": out.status, "exception": out.exception, "message": out.message, "detail": out.detail,
            "seconds": round(out.seconds, 3), "isolation": iso.description, "isolation_mode": iso.mode}  # fmt: skip
    detail = out.status + (f": {out.exception}" if out.exception else "") + (f" ({out.detail})" if out.detail else "")
    return Graded(1.0 if out.passed else 0.0, "humaneval-sandbox", detail, info)


def grade_in_sandbox(item: Item, extracted: str) -> Graded:
    """The worker grader: item.meta carries the problem's prompt, test and entry point."""
    m = item.meta
    return run_sample(m["problem_prompt"], extracted, m["test"], m["entry_point"], m.get("timeout", DEFAULT_TIMEOUT))


class HumanEval(Benchmark):
    name = "humaneval"
    data_keys = ("humaneval",)
    description = "HumanEval (164 problems), pass@1 (pass@k with --epochs), sandboxed execution"
    worker_grader = staticmethod(grade_in_sandbox)
    runs_code = True
    """Runs model-written code: a run checks before sending anything that the sandbox can run it."""

    def load(self, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        res = data.resolve(self.spec.data_key)
        problems = read_problems(str(res.path))
        timeout = self.spec.exec_timeout_s or DEFAULT_TIMEOUT
        items = [
            Item(
                id=p["task_id"],
                prompt=self.spec.user_template.format(prompt=p["prompt"]),
                gold=p["canonical_solution"],
                meta={
                    "problem_prompt": p["prompt"],
                    "test": p["test"],
                    "entry_point": p["entry_point"],
                    "timeout": timeout,
                },  # fmt: skip
            )
            for p in fork_subset(problems, limit)
        ]
        return items, {self.spec.data_key: res.sha256}

    def grade(self, item: Item, extracted: str | None) -> Graded:
        # extract never returns None; kept for the interface.
        return grade_in_sandbox(item, extracted or "")

    def aggregate(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return pass_at_k_summary(records, self.spec.pass_ks)


def pass_at_k_summary(records: Sequence[dict[str, Any]], only_ks: Sequence[int] = ()) -> dict[str, Any]:
    """pass@k over tasks (the headline ``score`` is pass@1), outcome counts and the isolation the programs had."""
    per_task: dict[str, list[float]] = defaultdict(list)
    outcomes: Counter[str] = Counter()
    exceptions: Counter[str] = Counter()
    isolations: Counter[str] = Counter()
    modes: Counter[str] = Counter()
    for r in records:
        if r.get("score") is None:
            continue
        per_task[r["item_id"]].append(float(r["score"]))
        info = r.get("grade_info") or {}
        outcomes[info.get("outcome", "unknown")] += 1
        if info.get("exception"):
            exceptions[info["exception"]] += 1
        if info.get("isolation"):
            isolations[info["isolation"]] += 1
        if info.get("isolation_mode"):
            modes[info["isolation_mode"]] += 1
    if not per_task:
        return {}
    ns = [len(v) for v in per_task.values()]
    n_min = min(ns)
    ks = sorted({k for k in (*(only_ks or KS), *(() if only_ks else (n_min,))) if k <= n_min})
    pass_k = {}
    for k in ks:
        vals = [pass_at_k(len(v), int(sum(v)), k) for v in per_task.values()]
        pass_k[f"pass@{k}"] = sum(vals) / len(vals)
    per_task_p1 = [sum(v) / len(v) for v in per_task.values()]
    ci = mean_ci(per_task_p1)
    return {
        "score": pass_k["pass@1"],
        "ci95": list(ci) if ci else None,
        "ci_method": "over tasks (each task's samples averaged first)",
        "pass_at_k": pass_k,
        "samples_per_task": n_min if n_min == max(ns) else {"min": n_min, "max": max(ns)},
        "outcomes": dict(outcomes),
        "exceptions": dict(exceptions.most_common(20)),
        "isolation": sorted(isolations) if len(isolations) != 1 else next(iter(isolations)),
        "isolation_mode": sorted(modes) if len(modes) != 1 else next(iter(modes)),
        "contained": all(m in sandbox.CONTAINED for m in modes) and all("NOT" not in i for i in isolations),
    }
