"""A run's records as the exporters read them: results, samples, timings, and the messages sent (from the store)."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scorecheck.errors import UsageError
from scorecheck.results.io import read_results, read_samples, read_timings
from scorecheck.results.models import Results, Sample, Timing


@dataclass
class RunRecords:
    path: Path
    results: Results
    samples: list[Sample]
    timings: dict[tuple[str, str, int], Timing] = field(default_factory=dict)
    requests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """request key -> the messages sent (from store.sqlite)."""
    prompt_tokens: dict[str, int] = field(default_factory=dict)
    """request key -> the prompt tokens the server counted (from store.sqlite)."""

    def messages(self, s: Sample) -> list[dict[str, Any]]:
        if s.request_key and s.request_key in self.requests:
            return self.requests[s.request_key]
        sp = self.results.config.system_prompt.text
        return [*([{"role": "system", "content": sp}] if sp else []), {"role": "user", "content": str(s.prompt)}]


def load(run_dir: Path) -> RunRecords:
    run_dir = Path(run_dir)
    if not (run_dir / "results.json").is_file():
        raise UsageError(f"{run_dir}: no results.json (not a finished scorecheck run directory)")
    results = read_results(run_dir / "results.json")
    samples = read_samples(run_dir / "samples.jsonl") if (run_dir / "samples.jsonl").is_file() else []
    timings = {}
    if (run_dir / "timings.jsonl").is_file():
        timings = {(t.eval, t.item_id, t.sample_index): t for t in read_timings(run_dir / "timings.jsonl")}
    store = run_dir / "store.sqlite"
    if not store.is_file() and (run_dir.parent / "store.sqlite").is_file():  # a regrade's directory
        store = run_dir.parent / "store.sqlite"
    run = RunRecords(run_dir, results, samples, timings)
    _read_store(run, store)
    return run


def _read_store(run: RunRecords, store: Path) -> None:
    """The messages sent and the prompt tokens of each sample's request, read-only from the run's store."""
    keys = {s.request_key for s in run.samples if s.request_key}
    if not store.is_file() or not keys:
        return
    db = sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)
    try:
        for key, body, pt in db.execute("SELECT key, request, prompt_tokens FROM requests WHERE request IS NOT NULL"):
            if key not in keys:
                continue
            if pt is not None:
                run.prompt_tokens[key] = pt
            try:
                run.requests[key] = json.loads(body)["messages"]
            except (ValueError, KeyError, TypeError):
                continue  # the fallback (system prompt + prompt) is used for this one
    finally:
        db.close()


def stderr(scores: list[float]) -> float | None:
    """The standard error of a mean: sample standard deviation / sqrt(n), as lm-eval's ``mean_stderr``."""
    n = len(scores)
    if n < 2:
        return None
    m = sum(scores) / n
    return math.sqrt(sum((x - m) ** 2 for x in scores) / (n - 1) / n)


def scores_of(run: RunRecords, eval_name: str) -> list[float]:
    return [s.score for s in run.samples if s.eval == eval_name and s.score is not None]
