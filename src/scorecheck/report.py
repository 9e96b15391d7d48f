"""A run's outputs: ``results.json`` (scores, intervals, diagnostics, what the run was), ``samples.jsonl`` (every
sample) and ``summary.md`` (the table), plus the same table in the terminal."""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from scorecheck.benchmarks import Benchmark
from scorecheck.results import Results, in_item_order, split_timing, write_json
from scorecheck.results.build import git_commit, versions  # noqa: F401 (where they lived before results/)
from scorecheck.results.io import atomic_writer, dump_line, write_atomic
from scorecheck.stats import interval
from scorecheck.store import Store

FLAGS = ("unparsed", "truncated", "missing_tag", "failed", "http_400")


def eval_result(bench: Benchmark, records: list[dict[str, Any]]) -> dict[str, Any]:
    scored = [r for r in records if r.get("score") is not None]
    scores = [float(r["score"]) for r in scored]
    n = len(scores)
    mean = sum(scores) / n if n else None
    key = bench.interval_cluster
    ci, ci_method = interval(scores, [(r.get("meta") or {}).get(key) if key else r["item_id"] for r in scored])
    counts = {f: sum(1 for r in records if (r.get("flags") or {}).get(f)) for f in FLAGS}
    graders = Counter(r.get("grader") for r in scored)
    out: dict[str, Any] = {
        "score": mean,
        "n": n,
        "n_items": len(records),
        "correct": sum(scores),
        "ci95": list(ci) if ci else None,
        "ci_method": ci_method,
        "counts": counts,
        "graders": dict(graders),
        "failed_items": [r["item_id"] for r in records if (r.get("flags") or {}).get("failed")],
        "http_400_items": [r["item_id"] for r in records if (r.get("flags") or {}).get("http_400")],
    }
    out["incomplete"] = bool(out["failed_items"])
    out["warnings"] = [w for w in [http_400_warning(len(out["http_400_items"]), len(records))] if w]
    extra = bench.aggregate(scored)  # transport failures are never scored, in any eval
    if "micro" in extra:
        extra["micro"] = mean
    out.update(extra)
    if any(r.get("grades") for r in records):  # --grader judge|both (grading/plan.py)
        from scorecheck.grading.plan import agreement

        out["judge_failed_items"] = [r["item_id"] for r in records if (r.get("flags") or {}).get("judge_failed")]
        ag = agreement(records)
        if ag is not None:
            out["grader_agreement"] = ag
    return out


HTTP_400_FLAG_SHARE = 0.01
"""A cell whose HTTP 400 answers exceed this share of its samples is flagged and the run exits non-zero."""


def http_400_warning(n_400: int, n: int) -> str | None:
    """The warning for a cell with more HTTP 400s than :data:`HTTP_400_FLAG_SHARE` of its ``n`` samples."""
    if not n or n_400 <= HTTP_400_FLAG_SHARE * n:
        return None
    return (f"HTTP 400 for {n_400} of {n} samples ({n_400 / n:.1%}, more than {HTTP_400_FLAG_SHARE:.0%}): graded by "
            "the protocol's HTTP-400 rule; check the endpoint's context length and parameters")  # fmt: skip


HEAVY_FIELDS = ("prompt", "response", "reasoning", "answer_text")
"""A sample's texts, which no aggregate reads: ``collect(light=True)`` leaves them out (a run's answers can add up to
hundreds of MB)."""


def collect(store: Store, bench: Benchmark, wanted: set[tuple[str, int]] | None,
            light: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """The stored samples of one eval (those in ``wanted``); ``light``: without :data:`HEAVY_FIELDS`."""
    out = []
    for r in store.iter_samples(bench.name):
        if wanted is None or (r["item_id"], r["sample_index"]) in wanted:
            if light:
                for f in HEAVY_FIELDS:
                    r.pop(f, None)
            out.append(r)
    return out


def write_outputs(run_dir: Path, results: Results, samples: Iterable[Mapping[str, Any]],
                  items: Mapping[str, Sequence[str]] | None = None, ordered: bool = False) -> None:  # fmt: skip
    """results.json, samples.jsonl (item order: eval, item as loaded, sample; no timing), timings.jsonl and
    summary.md, each written atomically. ``ordered``: ``samples`` come in item order already, read one at a time
    (a run's, from the store: its samples are never all in memory at once)."""
    rows = samples if ordered else in_item_order(samples, results.config.evals, items)
    write_json(run_dir / "results.json", results)
    with atomic_writer(run_dir / "samples.jsonl") as fs, atomic_writer(run_dir / "timings.jsonl") as ft:
        for r in rows:
            sample, timing = split_timing(r)
            fs.write(dump_line(sample) + "\n")
            ft.write(dump_line(timing) + "\n")
    write_atomic(run_dir / "summary.md", summary_markdown(results))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def _ci(ci: list[float] | None, digits: int) -> str:
    return f"{ci[0]:.{digits}f}–{ci[1]:.{digits}f}" if ci else "-"


def _rows(results: dict[str, Any], sub: str = "{name} ({label})", digits: int = 4) -> list[list[str]]:
    """Table rows; ``sub`` labels an eval's sub-rows (the terminal indents them to save width)."""
    rows = []
    for name, r in results["evals"].items():
        rows.append([name, _fmt(r["score"]), _ci(r.get("ci95"), digits), str(r["n"]),
                     *(str(r["counts"][f]) for f in FLAGS)])  # fmt: skip
        for label, value, *n in r.get("summary_rows") or []:  # an eval's own sub-rows (IFEval: each checker's mean)
            rows.append([sub.format(name=name, label=label), "" if value is None else _fmt(value), "",
                         *(n or [""]), *[""] * 5])  # fmt: skip
        if r.get("macro") is not None:
            rows.append([sub.format(name=name, label="macro"), _fmt(r["macro"]), _ci(r.get("macro_ci95"), digits),
                         f"{r['macro_subjects']} subj", "", "", "", "", ""])  # fmt: skip
    return rows


HEADER = ["eval", "score", "95% CI", "n", "unparsed", "truncated", "missing tag", "failed", "HTTP 400"]


def _plain(results: Results | dict[str, Any]) -> dict[str, Any]:
    return results.model_dump(mode="json") if isinstance(results, Results) else results


def summary_markdown(results: Results | dict[str, Any]) -> str:
    results = _plain(results)
    cfg = results["config"]
    lines = [
        f"# scorecheck run: {results['model']}",
        "",
        f"protocol `{results['protocol']['name']}` · system prompt `{cfg['system_prompt']['name']}` · reasoning "
        f"`{cfg['reasoning'] or 'protocol default'}` · sampling `{json.dumps(cfg['sampling'])}`"
        + (f" · limit {cfg['limit']} per eval" if cfg.get("limit") else ""),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(HEADER))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(results)]
    methods = [f"{name} {r['ci_method']}" for name, r in results["evals"].items() if r.get("ci_method")]
    if methods:
        lines += ["", "95% intervals: " + "; ".join(methods) + "."]
    notes = [*(results.get("notes") or []), *cell_warnings(results)]
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def cell_warnings(results: dict[str, Any]) -> list[str]:
    """One line per doubtful cell: incomplete (failed requests left out) and each eval's ``warnings``."""
    out = []
    for name, r in results["evals"].items():
        if r.get("incomplete"):
            out.append(f"{name}: incomplete, {len(r.get('failed_items') or [])} sample(s) with no answer after the "
                       "retries are left out of the score (a rerun retries them)")  # fmt: skip
        out += [f"{name}: {w}" for w in r.get("warnings") or []]
    return out


TERMINAL_HEADER = ["eval", "score", "95% CI", "n", "unparsed", "trunc", "no tag", "failed", "400"]


def print_table(results: Results | dict[str, Any], console: Console | None = None) -> None:
    results = _plain(results)
    console = console or Console()
    t = Table(title=f"{results['model']} · {results['protocol']['name']} · system prompt "
                    f"{results['config']['system_prompt']['name']}", box=box.SIMPLE_HEAD, pad_edge=False)  # fmt: skip
    # Diagnostic columns that are zero for every eval are left out of the terminal (said in the caption), so the
    # table stays readable at 80 columns; summary.md and results.json keep them all.
    evals = results["evals"].values()
    keep = [i for i, f in enumerate(FLAGS) if f in ("unparsed", "truncated") or any(e["counts"][f] for e in evals)]
    cols = [0, 1, 2, 3, *(4 + i for i in keep)]
    for c in cols:
        t.add_column(TERMINAL_HEADER[c], justify="left" if c == 0 else "right", no_wrap=c in (0, 1, 2, 3))
    for r in _rows(results, sub="  {label}", digits=3):
        t.add_row(*(r[c] for c in cols))
    hidden = [TERMINAL_HEADER[4 + i] for i in range(len(FLAGS)) if i not in keep]
    if hidden:
        t.caption = f"none: {', '.join(hidden)}"
    console.print(t)
    for n in results.get("notes") or []:
        console.print(f"[yellow]note:[/] {n}")
    for name, e in results["evals"].items():  # where model-written code ran (scorecheck.sandbox)
        if e.get("isolation_mode"):
            how = "contained" if e.get("contained") else "[red]NOT contained[/] (--confirm-run-unsafe-code)"
            console.print(f"sandbox: {name} programs ran in '{e['isolation_mode']}' mode, {how}")


def sha256_text(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def argv() -> list[str]:
    return list(sys.argv)
