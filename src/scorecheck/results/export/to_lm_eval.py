"""lm-evaluation-harness's output layout: ``<model>/results_<time>.json`` (the aggregate of every task) and
``<model>/samples_<task>_<time>.jsonl`` (one line per document), as ``lm_eval.utils.get_results_filenames``,
``get_sample_results_filenames`` and ``get_file_task_name`` find them. The task name is the scorecheck eval name:
these are scorecheck's protocols (e.g. 0-shot chain of thought), not lm-eval's task of a similar name."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scorecheck.results.export.run import RunRecords, scores_of, stderr
from scorecheck.results.io import write_json, write_jsonl_dicts
from scorecheck.results.models import EvalResult, Sample

FILTER = "none"
METRIC = {"mmlu": "acc", "gpqa": "acc", "humaneval": "pass@1", "math": "exact_match", "gsm8k": "exact_match"}
"""The headline's metric name per eval family (lm-eval's names for the same kind of number)."""
IFEVAL_METRICS = {"prompt_strict": "prompt_level_strict_acc", "instruction_strict": "inst_level_strict_acc",
                  "prompt_loose": "prompt_level_loose_acc", "instruction_loose": "inst_level_loose_acc"}  # fmt: skip


def sanitize_model_name(name: str) -> str:
    """As lm-eval's ``sanitize_model_name`` (the directory its results go into)."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def metric_name(eval_name: str) -> str:
    return METRIC.get(eval_name.split("_")[0], "acc")


def _sha(v: Any) -> str:
    return hashlib.sha256(
        (v if isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)).encode()
    ).hexdigest()


def task_results(name: str, ev: EvalResult, se: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {"alias": name}
    if name.split("_")[0] == "ifeval":
        for ours, theirs in IFEVAL_METRICS.items():
            m = ev.metrics.get(ours)
            if m is not None and m.value is not None:
                p = m.value
                out[f"{theirs},{FILTER}"] = p
                out[f"{theirs}_stderr,{FILTER}"] = math.sqrt(p * (1 - p) / (m.n - 1)) if m.n > 1 else "N/A"
        out[f"mean_of_four,{FILTER}"] = ev.score  # scorecheck's IFEval headline
        return out
    metric = metric_name(name)
    out[f"{metric},{FILTER}"] = ev.score
    out[f"{metric}_stderr,{FILTER}"] = "N/A" if se is None else se
    return out


def _doc_lines(run: RunRecords, name: str) -> list[dict[str, Any]]:
    """One line per document (item); an item's samples are its repeats, its metric their mean."""
    by_item: dict[str, list[Sample]] = defaultdict(list)
    for s in run.samples:
        if s.eval == name:
            by_item[s.item_id].append(s)
    metrics = list(IFEVAL_METRICS.values()) if name.split("_")[0] == "ifeval" else [metric_name(name)]
    lines = []
    for doc_id, (item, samples) in enumerate(by_item.items()):
        first = samples[0]
        messages = run.messages(first)
        line: dict[str, Any] = {
            "doc_id": doc_id,
            "doc": {"item_id": item, "prompt": first.prompt, "meta": first.meta},
            "target": first.gold if isinstance(first.gold, str) else json.dumps(first.gold, default=str),
            "arguments": {"gen_args_0": {"arg_0": json.dumps(messages, ensure_ascii=False),
                                         "arg_1": dict(run.results.config.sampling)}},
            "resps": [[s.response for s in samples]],
            "filtered_resps": [s.extracted for s in samples],
            "filter": FILTER,
            "metrics": metrics,
            "doc_hash": _sha({"item_id": item, "prompt": first.prompt}),
            "prompt_hash": _sha(messages),
            "target_hash": _sha(first.gold),
        }  # fmt: skip
        scores = [s.score for s in samples if s.score is not None]
        if metrics == [metric_name(name)]:
            line[metrics[0]] = sum(scores) / len(scores) if scores else None
        else:  # IFEval: the per-prompt verdicts of the headline checker
            ch = ((first.grade_info or {}).get("checkers") or {}).get(
                run.results.evals[name].model_dump().get("checker")
            )
            if isinstance(ch, dict):
                line["prompt_level_strict_acc"] = all(ch.get("strict") or [])
                line["inst_level_strict_acc"] = list(ch.get("strict") or [])
                line["prompt_level_loose_acc"] = all(ch.get("loose") or [])
                line["inst_level_loose_acc"] = list(ch.get("loose") or [])
        lines.append(line)
    return lines


def write_lm_eval(run: RunRecords, out: Path) -> list[Path]:
    res = run.results
    started = datetime.fromtimestamp(res.started or 0, UTC)
    stamp = started.replace(tzinfo=None).isoformat().replace(":", "-")  # lm-eval's file datetime
    model_dir = out / sanitize_model_name(res.model)
    model_dir.mkdir(parents=True, exist_ok=True)
    evals = res.evals
    sampling = dict(res.config.sampling)
    tasks = {name: task_results(name, ev, stderr(scores_of(run, name))) for name, ev in evals.items()}
    aggregate = {
        "results": tasks,
        "group_subtasks": {name: [] for name in evals},
        "configs": {
            name: {
                "task": name,
                "output_type": "generate_until",
                "num_fewshot": 0,
                "generation_kwargs": sampling,
                "metadata": {"scorecheck_protocol": res.protocol.name, "version": res.schema_version},
            }
            for name in evals
        },
        "versions": {name: res.schema_version for name in evals},
        "n-shot": {name: 0 for name in evals},
        "higher_is_better": {
            name: {k.split(",")[0]: True for k in t if k != "alias" and "_stderr" not in k} for name, t in tasks.items()
        },
        "n-samples": {name: {"original": ev.n_items, "effective": ev.n_items} for name, ev in evals.items()},
        "config": {
            "model": "scorecheck",
            "model_args": f"model={res.model}",
            "batch_size": None,
            "limit": res.config.limit,
            "gen_kwargs": sampling,
            "bootstrap_iters": 0,
        },
        "git_hash": (res.scorecheck.git_commit or "")[:7] or None,
        "date": res.started,
        "model_name": res.model,
        "model_name_sanitized": sanitize_model_name(res.model),
        "start_time": res.started,
        "end_time": res.ended,
        "total_evaluation_time_seconds": str(res.wall_s),
        "scorecheck": {"schema_version": res.schema_version, "results": res.model_dump(mode="json")},
    }
    paths = [model_dir / f"results_{stamp}.json"]
    write_json(paths[0], aggregate)
    for name in evals:
        p = model_dir / f"samples_{name}_{stamp}.jsonl"
        write_jsonl_dicts(p, _doc_lines(run, name))
        paths.append(p)
    return paths
