"""The comparison of several run directories: cells (score, interval, n, diagnostics), paired tests, claims.

A run is read through the record models (scorecheck.results): an unknown schema major version, a corrupt line or an
invalid record is a one-line error naming the file and line, and nothing is skipped. Fields the models do not name
(HumanEval pass@k, IFEval's sub-scores, fields added later) are kept and appear as they are.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from scorecheck.compare.paired import DEFAULT_RESAMPLES, paired_test
from scorecheck.errors import UsageError
from scorecheck.results import Results, Sample, read_results, read_samples

# A cell is flagged (shown with a marker and its reasons, never silently averaged) when any of these holds.
THRESHOLDS = {"unparsed": 0.05, "truncated": 0.01, "missing_tag": 0.05}
FLAG_NAMES = ("unparsed", "truncated", "missing_tag", "failed", "http_400")
# Sub-scores shown as their own rows when a run's results carry them.
SUB_METRICS = {
    "macro": "macro",
    "prompt_strict": "prompt-strict",
    "instruction_strict": "instruction-strict",
    "prompt_loose": "prompt-loose",
    "instruction_loose": "instruction-loose",
}
EVAL_ORDER = ["mmlu", "gpqa_main", "gpqa_diamond", "humaneval", "math", "math_500", "gsm8k", "ifeval"]


@dataclass
class Run:
    path: Path
    label: str
    record: Results
    sample_records: list[Sample]
    results: dict[str, Any] = field(init=False)
    """``record`` as plain JSON data (every field the model names is present)."""
    samples: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.results = self.record.model_dump(mode="json")
        self.samples = [s.model_dump(mode="json") for s in self.sample_records]

    @property
    def config(self) -> dict[str, Any]:
        return self.results["config"]

    def describe(self) -> str:
        cfg = self.record.config
        parts = [self.record.model or "?", f"protocol {self.record.protocol.name}",
                 f"system prompt {cfg.system_prompt.name}"]  # fmt: skip
        if cfg.reasoning:
            parts.append(f"reasoning {cfg.reasoning}")
        if cfg.limit:
            parts.append(f"limit {cfg.limit}")
        if self.config.get("max_tokens"):
            parts.append(f"max_tokens {self.config['max_tokens']}")
        return " · ".join(parts)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def load_run(path: Path, label: str | None = None) -> Run:
    path = Path(path)
    res_path = path / "results.json"
    if not res_path.is_file():
        raise UsageError(f"{path}: no results.json (not a finished scorecheck run directory)")
    results = read_results(res_path)
    sp = path / "samples.jsonl"
    samples = read_samples(sp) if sp.is_file() else []
    if sp.is_file():
        check_coverage(path, results, samples)
    return Run(path, label or path.name or str(path), results, samples)


def check_coverage(path: Path, results: Results, samples: list[Sample]) -> None:
    """Refuse a run whose samples.jsonl does not hold exactly the samples its results.json describes (records
    torn by a kill or a full disk while written, or files from two invocations): a paired test over part of the
    items would look like a result."""
    have = Counter(s.eval for s in samples)
    torn = [f"{name}: {have.get(name, 0)} samples for {ev.n_items}" for name, ev in results.evals.items()
            if have.get(name, 0) != ev.n_items]  # fmt: skip
    if torn:
        raise UsageError(f"{path}: samples.jsonl does not cover results.json ({'; '.join(torn)}); run the same "
                         "`scorecheck run` (or `regrade`) again to rewrite both")  # fmt: skip


def _unique_labels(paths: list[Path], labels: list[str] | None) -> list[str]:
    if labels and len(labels) != len(paths):
        raise UsageError(f"--label given {len(labels)} times for {len(paths)} run directories")
    if labels:
        out = list(labels)
    else:
        out = [p.name or str(p) for p in paths]
        if len(set(out)) < len(out):  # same basename: use the path relative to their common parent
            out = [str(p) for p in paths]
    if len(set(out)) < len(out):
        raise UsageError("two runs have the same label; give --label for each")
    return out


def sample_scores(
    samples: list[dict[str, Any]], eval_name: str, metric: str, results: dict[str, Any]
) -> dict[str, float]:
    """Per item: the score a paired test compares (the mean over an item's samples; failed requests left out).

    IFEval's headline is the mean of four numbers; per prompt it is z = (prompt-strict + prompt-loose +
    P * (instructions followed strict + loose) / I) / 4, whose mean over prompts is the headline."""
    by_item: dict[str, list[float]] = {}
    recs = [s for s in samples if s.get("eval") == eval_name]
    if eval_name == "ifeval" and metric == "score":
        checker = _get(results, "evals", eval_name, "checker")
        per = []
        for r in recs:
            ch = _get(r, "grade_info", "checkers", checker) if checker else None
            if r.get("score") is None or not isinstance(ch, dict):
                continue
            per.append((str(r.get("item_id")), ch))
        n_prompts = len(per)
        n_instr = sum(len(ch.get("strict") or []) for _, ch in per)
        if n_prompts and n_instr:
            for item, ch in per:
                st, lo = list(ch.get("strict") or []), list(ch.get("loose") or [])
                z = (float(all(st)) + float(all(lo)) + n_prompts * (sum(st) + sum(lo)) / n_instr) / 4
                by_item.setdefault(item, []).append(z)
            return {k: sum(v) / len(v) for k, v in by_item.items()}
    for r in recs:
        if r.get("score") is None:
            continue
        by_item.setdefault(str(r.get("item_id")), []).append(float(r["score"]))
    return {k: sum(v) / len(v) for k, v in by_item.items()}


def sample_disagrees(rec: dict[str, Any]) -> bool:
    """Graders (symbolic vs judge) or checkers (IFEval reference vs glaive) reached different verdicts."""
    grades = rec.get("grades")
    if isinstance(grades, dict):
        vals = {g.get("score") for g in grades.values() if isinstance(g, dict) and g.get("score") is not None}
        if len(vals) > 1:
            return True
    checkers = _get(rec, "grade_info", "checkers")
    if isinstance(checkers, dict) and len(checkers) > 1:
        verdicts = set()
        for ch in checkers.values():
            if isinstance(ch, dict):
                verdicts.add((all(ch.get("strict") or []), all(ch.get("loose") or [])))
        if len(verdicts) > 1:
            return True
    return False


@dataclass
class Cell:
    eval: str
    metric: str
    run: str
    score: float | None
    ci95: list[float] | None
    n: int | None
    n_items: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    graders: dict[str, int] = field(default_factory=dict)
    disagreement: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    note: str = ""


def _disagreement(ev: dict[str, Any], samples: list[dict[str, Any]], eval_name: str) -> dict[str, Any] | None:
    ga = ev.get("grader_agreement")
    if isinstance(ga, dict):
        compared = ga.get("compared") or 0
        agree = ga.get("agree") or 0
        return {"kind": "grader (symbolic vs judge)", "compared": compared, "differ": compared - agree,
                "judge_failed": ga.get("judge_failed") or 0}  # fmt: skip
    cd = ev.get("checker_difference")
    if isinstance(cd, dict):
        return {"kind": "checker (reference vs glaive-2024)", "compared": ev.get("n"),
                "differ": cd.get("prompts_graded_differently") or 0}  # fmt: skip
    recs = [s for s in samples if s.get("eval") == eval_name]
    differ = sum(1 for r in recs if sample_disagrees(r))
    if differ:
        return {"kind": "graders", "compared": len(recs), "differ": differ}
    return None


def build_cells(run: Run, eval_name: str) -> list[Cell]:
    if eval_name not in run.record.evals:
        return []
    ev = run.results["evals"][eval_name]
    counts = {f: int(ev["counts"].get(f) or 0) for f in FLAG_NAMES}
    n_items = ev["n_items"]
    denom = n_items or 0
    rates = {f: (counts[f] / denom if denom else 0.0) for f in FLAG_NAMES}
    problems: list[str] = []
    for f, t in THRESHOLDS.items():
        if denom and rates[f] >= t and counts[f]:
            problems.append(f"{f.replace('_', ' ')} {rates[f]:.0%}")
    for f in ("failed", "http_400"):
        if counts[f]:
            problems.append(f"{counts[f]} {'failed' if f == 'failed' else 'HTTP 400'}")
    if ev.get("judge_failed_items"):
        problems.append(f"{len(ev['judge_failed_items'])} judge failed")
    dis = _disagreement(ev, run.samples, eval_name)
    if dis and dis.get("differ"):
        problems.append(f"{dis['kind'].split(' ')[0]}s disagree on {dis['differ']}")
    if ev.get("contained") is False:
        mode = f"'{ev['isolation_mode']}' mode: " if ev.get("isolation_mode") else ""
        problems.append(f"programs ran without full isolation ({mode}{ev.get('isolation')})")
    graders = dict(ev["graders"])
    ci = ev["ci95"]
    main = Cell(eval_name, "score", run.label, ev["score"], list(ci) if ci else None, ev["n"], n_items,
                counts, rates, graders, dis, problems)  # fmt: skip
    if "micro" in ev:
        main.note = "micro"
    cells = [main]
    for key, label in SUB_METRICS.items():
        v = ev.get(key)
        if isinstance(v, (int, float)):
            sub_ci = ev.get(f"{key}_ci95")
            own = ev["metrics"].get(key)  # IFEval: each of the four with its own n (prompts or instructions)
            n = ev.get("macro_subjects") if key == "macro" else own["n"] if own else ev["n"]
            cells.append(Cell(eval_name, label, run.label, float(v), list(sub_ci) if sub_ci else None, n,
                              problems=list(problems), note="subjects" if key == "macro" else ""))  # fmt: skip
    pass_k = ev.get("pass_at_k")
    if isinstance(pass_k, dict):  # HumanEval with several samples per task: pass@k beyond the headline pass@1
        for k, v in pass_k.items():
            if k != "pass@1" and isinstance(v, (int, float)):
                cells.append(Cell(eval_name, str(k), run.label, float(v), None, ev.get("n"), problems=list(problems)))
    return cells


@dataclass
class Comparison:
    runs: list[Run]
    evals: list[str]
    cells: dict[tuple[str, str, str], Cell]
    """(eval, metric, run label) -> cell."""
    rows: list[tuple[str, str]]
    """(eval, metric) in table order."""
    paired: list[dict[str, Any]]
    claims: list[dict[str, Any]]
    references: list[dict[str, Any]]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": [
                {
                    "label": r.label,
                    "path": str(r.path),
                    "describe": r.describe(),
                    "model": r.record.model,
                    "protocol": r.record.protocol.name,
                    "config": r.config,
                }
                for r in self.runs
            ],  # fmt: skip
            "rows": [
                {
                    "eval": e,
                    "metric": m,
                    "cells": {r.label: _cell_dict(self.cells.get((e, m, r.label))) for r in self.runs},
                }
                for e, m in self.rows
            ],  # fmt: skip
            "paired": self.paired,
            "claims": self.claims,
            "references": [{k: v for k, v in ref.items() if k != "claims"} for ref in self.references],
            "notes": self.notes,
        }


def _cell_dict(c: Cell | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {"score": c.score, "ci95": c.ci95, "n": c.n, "n_items": c.n_items, "counts": c.counts, "rates": c.rates,
            "graders": c.graders, "disagreement": c.disagreement, "problems": c.problems, "note": c.note}  # fmt: skip


def _eval_key(name: str) -> tuple[int, str]:
    return (EVAL_ORDER.index(name) if name in EVAL_ORDER else len(EVAL_ORDER), name)


def compare(paths: list[Path], labels: list[str] | None = None, references: list[dict[str, Any]] | None = None,
            resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Comparison:  # fmt: skip
    if not paths:
        raise UsageError("give at least one run directory")
    names = _unique_labels([Path(p) for p in paths], labels)
    runs = [load_run(Path(p), name) for p, name in zip(paths, names, strict=True)]
    evals = sorted({e for r in runs for e in r.record.evals}, key=_eval_key)
    cells: dict[tuple[str, str, str], Cell] = {}
    rows: list[tuple[str, str]] = []
    for e in evals:
        for r in runs:
            for c in build_cells(r, e):
                cells[(e, c.metric, r.label)] = c
                if (e, c.metric) not in rows:
                    rows.append((e, c.metric))
    subs = list(SUB_METRICS.values())
    rows.sort(key=lambda em: (_eval_key(em[0]), 0 if em[1] == "score" else 1 + subs.index(em[1]) if em[1] in subs
                              else 99, em[1]))  # fmt: skip
    paired: list[dict[str, Any]] = []
    for e in evals:
        per_run = {r.label: sample_scores(r.samples, e, "score", r.results) for r in runs}
        for ra, rb in combinations(runs, 2):
            if not per_run[ra.label] or not per_run[rb.label]:
                continue
            p = paired_test(e, "score", ra.label, rb.label, per_run[ra.label], per_run[rb.label], resamples, seed)
            if e == "ifeval":
                p.note = "per-prompt mean of the four IFEval numbers"
            paired.append(p.as_dict())
    notes = []
    for r in runs:
        for n in r.record.notes:
            notes.append(f"{r.label}: {n}")
    claims: list[dict[str, Any]] = []
    if references:
        from scorecheck.compare.references import match_claims

        claims = match_claims(references, runs, cells)
    return Comparison(runs, evals, cells, rows, paired, claims, references or [], notes)
