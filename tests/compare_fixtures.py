"""Synthetic run directories (results.json + samples.jsonl shaped like a real run's) for the compare tests: quick,
exact, and able to carry hostile model output."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from scorecheck.report import eval_result
from scorecheck.results import build_results, split_timing, write_json, write_jsonl

HOSTILE = [
    "<script>window.__pwned = (window.__pwned || 0) + 1</script>Answer: A",
    '<img src=x onerror="window.__pwned = (window.__pwned || 0) + 1">Answer: B',
    "</script><script>window.__pwned = 1</script>",
    '<!-- <svg onload="window.__pwned=1"> \u2028 & &amp; "quoted" \'single\' Answer: C',
]


class _Bench:
    name = ""
    interval_cluster: str | None = None

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {}


class _MMLU(_Bench):
    interval_cluster = "subject"

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        from scorecheck.benchmarks.mmlu import subject_averages

        return subject_averages(records)


def make_run(path: Path, system_prompt: str, accuracy: dict[str, float], n: int = 40, seed: int = 0,
             hostile: bool = False, truncated_every: int = 0) -> Path:  # fmt: skip
    """A run with evals ``accuracy`` keys, n items each; correctness drawn per item with a fixed seed."""
    rng = random.Random(seed)
    path.mkdir(parents=True, exist_ok=True)
    samples = []
    evals = {}
    for e, acc in accuracy.items():
        recs = []
        for i in range(n):
            right = rng.random() < acc
            gold = "ABCD"[i % 4]
            resp = f"<thinking>think about item {i}</thinking><output>Answer: {gold if right else 'Z'}</output>"
            if hostile and i < len(HOSTILE):
                resp = HOSTILE[i]
                right = False
            trunc = bool(truncated_every) and i % truncated_every == 0
            unparsed = not right and i % 3 == 0
            recs.append({
                "eval": e, "item_id": f"{e}-{i}", "sample_index": 0, "status": "ok", "prompt": f"Question {i} of {e}? <b>bold</b>",
                "response": resp, "reasoning": f"think about item {i}",
                "answer_text": f"Answer: {gold if right else 'Z'}" if not (hostile and i < len(HOSTILE)) else resp,
                "extracted": None if unparsed else (gold if right else "Z"), "gold": gold,
                "score": 1.0 if right else 0.0, "grader": "letter", "meta": {"subject": f"s{i % 3}",
                                                                            "category": "c"},
                "flags": {"unparsed": unparsed, "truncated": trunc, "missing_tag": False, "failed": False,
                          "http_400": False},
                "finish_reason": "length" if trunc else "stop",
            })  # fmt: skip
        bench = _MMLU() if e == "mmlu" else _Bench()
        bench.name = e
        evals[e] = eval_result(bench, recs)  # the real aggregator: same keys as a run's results.json
        samples += recs
    results = build_results(
        model="synthetic-model", protocol={"name": "glaive-2024"},
        config={"system_prompt": {"name": system_prompt}, "reasoning": "reflection", "limit": n,
                "evals": list(accuracy)},
        evals=evals, notes=[], started=0.0, ended=1.0,
    )  # fmt: skip
    write_json(path / "results.json", results)
    write_jsonl(path / "samples.jsonl", (split_timing(s)[0] for s in samples))
    return path
