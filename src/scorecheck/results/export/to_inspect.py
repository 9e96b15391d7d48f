"""Inspect eval logs (JSON format, version 2), one per eval of the run: what ``inspect_ai.log.read_eval_log`` reads
and ``inspect view`` serves. Written from the records, field names as Inspect's ``EvalLog`` has them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scorecheck.results.export.run import RunRecords, scores_of, stderr
from scorecheck.results.io import write_json
from scorecheck.results.models import EvalResult, Sample

INSPECT_LOG_VERSION = 2
SCORER = "scorecheck"
GENERATE_KEYS = ("temperature", "max_tokens", "top_p", "seed")
"""Sampling keys that are Inspect GenerateConfig fields of the same name (the others go into its extra_body)."""
STOP_REASONS = {"stop": "stop", "length": "max_tokens", "tool_calls": "tool_calls", "content_filter": "content_filter"}
METRIC_KEYS = ("macro", "micro", "prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose")


def _iso(t: float | None) -> str:
    return datetime.fromtimestamp(t or 0, UTC).isoformat()


def _text(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)


def _metrics(ev: EvalResult, se: float | None) -> dict[str, dict[str, Any]]:
    extra = ev.model_dump()
    out: dict[str, dict[str, Any]] = {}

    def put(name: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = {"name": name, "value": float(value), "params": {}}

    put("accuracy", ev.score)
    put("stderr", se)
    if ev.ci95:
        put("ci95_low", ev.ci95[0])
        put("ci95_high", ev.ci95[1])
    for k in METRIC_KEYS:
        put(k, extra.get(k))
    for k, v in (extra.get("pass_at_k") or {}).items():
        put(k, v)
    return out


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"input_tokens": prompt, "output_tokens": completion, "total_tokens": prompt + completion}


def _sample(run: RunRecords, s: Sample, model: str) -> dict[str, Any]:
    sent = run.messages(s)
    reply = {"role": "assistant", "content": s.response or "", "source": "generate", "model": model}
    out: dict[str, Any] = {
        "id": s.item_id,
        "epoch": s.sample_index + 1,
        "input": [dict(m) for m in sent],
        "target": s.gold if isinstance(s.gold, str) else _text(s.gold),
        "messages": [*(dict(m) for m in sent), reply],
        "output": {
            "model": model,
            "choices": [{"message": reply, "stop_reason": STOP_REASONS.get(s.finish_reason or "", "unknown")}],
            **(
                {
                    "usage": {
                        "input_tokens": 0,
                        "output_tokens": s.completion_tokens,
                        "total_tokens": s.completion_tokens,
                    }
                }
                if s.completion_tokens is not None
                else {}
            ),
        },
        "metadata": {
            "status": s.status,
            "flags": s.flags,
            "grader": s.grader,
            "reasoning": s.reasoning,
            "answer_text": s.answer_text,
            "meta": s.meta,
            "request_key": s.request_key,
        },
    }
    if s.score is not None:
        out["scores"] = {SCORER: {"value": s.score, "answer": s.extracted, "explanation": _text(s.grader_detail or ""),
                                  "metadata": {"grader": s.grader, "grades": s.grades}}}  # fmt: skip
    else:
        out["error"] = {"message": s.error or f"no score ({s.status})", "traceback": "", "traceback_ansi": ""}
    t = run.timings.get(s.order_key())
    if t is not None and t.latency is not None:
        out["total_time"] = out["working_time"] = t.latency
    return out


def eval_log(run: RunRecords, eval_name: str) -> dict[str, Any]:
    res = run.results
    ev = res.evals[eval_name]
    cfg = res.config.model_dump()
    model = f"openai-api/{res.model}"
    sampling = dict(res.config.sampling)
    generate = {k: sampling.pop(k) for k in GENERATE_KEYS if k in sampling}
    if sampling:
        generate["extra_body"] = sampling
    samples = [s for s in run.samples if s.eval == eval_name]
    run_id = hashlib.sha256(f"{run.path.resolve()}|{res.started}".encode()).hexdigest()[:22]
    spec = {
        "eval_id": hashlib.sha256(f"{run_id}|{eval_name}".encode()).hexdigest()[:22],
        "run_id": run_id,
        "created": _iso(res.started),
        "task": f"scorecheck/{eval_name}",
        "task_id": f"scorecheck-{eval_name}",
        "task_version": 0,
        "task_args": {},
        "solver": "scorecheck",
        "dataset": {
            "name": eval_name,
            "samples": ev.n_items,
            "sample_ids": list(dict.fromkeys(s.item_id for s in samples)),
            "shuffled": False,
        },
        "model": model,
        "model_generate_config": generate,
        "model_base_url": res.endpoints[0] if res.endpoints else None,
        "config": {"limit": res.config.limit, "epochs": max((s.sample_index + 1 for s in samples), default=1)},
        "packages": {"scorecheck": res.scorecheck.version},
        "metadata": {
            "scorecheck": res.scorecheck.model_dump(),
            "schema_version": res.schema_version,
            "protocol": res.protocol.model_dump(),
            "config": cfg,
            "model_identity": res.model_identity,
            "prompt_sha256": res.prompt_sha256,
            "data_sha256": res.data_sha256,
            "notes": res.notes,
        },
        "scorers": [{"name": SCORER, "options": {}, "metrics": [], "metadata": {}}],
    }
    if res.scorecheck.git_commit:
        spec["revision"] = {"type": "git", "origin": "", "commit": res.scorecheck.git_commit}
    scored = sum(1 for s in samples if s.score is not None)
    # this eval's tokens (results.json's are the run's): the samples' completions, their requests' prompts
    completion = sum(s.completion_tokens or 0 for s in samples)
    prompt = sum(run.prompt_tokens.get(s.request_key or "", 0) for s in samples)
    # IFEval's headline is a mean of four proportions, not a mean over samples: no sample standard error for it
    se = None if "metrics" in ev.model_fields_set and ev.correct is None else stderr(scores_of(run, eval_name))
    return {
        "version": INSPECT_LOG_VERSION,
        "status": "success",
        "eval": spec,
        "plan": {"name": "plan", "steps": [{"solver": "generate", "params": {}}], "config": generate},
        "results": {
            "total_samples": len(samples),
            "completed_samples": scored,
            "scores": [
                {
                    "name": SCORER,
                    "scorer": SCORER,
                    "scored_samples": scored,
                    "unscored_samples": len(samples) - scored,
                    "params": {},
                    "metrics": _metrics(ev, se),
                    "metadata": {"eval_result": ev.model_dump(mode="json")},
                }
            ],
        },
        "stats": {
            "started_at": _iso(res.started),
            "completed_at": _iso(res.ended),
            "model_usage": {model: _usage(prompt, completion)},
        },
        "samples": [_sample(run, s, model) for s in samples],
    }


def write_logs(run: RunRecords, out: Path) -> list[Path]:
    stamp = datetime.fromtimestamp(run.results.started or 0, UTC).strftime("%Y-%m-%dT%H-%M-%S+00-00")
    paths = []
    for name in run.results.evals:
        log = eval_log(run, name)
        path = out / f"{stamp}_scorecheck-{name.replace('_', '-')}_{log['eval']['eval_id']}.json"
        write_json(path, log)
        paths.append(path)
    return paths
