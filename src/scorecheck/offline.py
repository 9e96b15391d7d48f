"""``scorecheck grade``: grade responses produced anywhere, and write the same outputs as a run.

IFEval responses come as Google's tools write them: JSONL records with ``prompt`` and ``response``. They are matched
to the input file's prompts by exact prompt text (Google's evaluator does the same; a repeated prompt keeps its last
response, as there):

- an input prompt with no response is an error naming the keys, unless ``missing_as_empty`` (then it is graded as
  the empty response and counted); ``exclude_keys`` leaves inputs out altogether;
- a response whose prompt is in no input (e.g. key 2785 of the GPT-4 file, whose prompt Google later edited) is not
  graded: it is counted and named in results.json and on stderr, never dropped silently;
- a ``response`` that is null is graded as the empty response and counted as failed.

Both checkers grade every response; ``protocol`` picks the headline checker and the default input file (glaive-2024:
the fork's copy; otherwise Google's current ``input_data.jsonl``).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from scorecheck import data
from scorecheck.benchmarks import ifeval
from scorecheck.errors import UsageError
from scorecheck.protocols import eval_protocol, get_profile
from scorecheck.reasoning import parse_format
from scorecheck.report import eval_result, write_outputs
from scorecheck.results import Results, build_results

GRADABLE = ("ifeval",)


def read_responses(path: Path) -> list[dict[str, Any]]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UsageError(f"responses file {path}: {e.strerror}") from None
    out = []
    for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise UsageError(f"{path} line {n}: not JSON ({e})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("prompt"), str) or "response" not in rec:
            raise UsageError(f"{path} line {n}: expected an object with a string 'prompt' and a 'response'")
        if rec["response"] is not None and not isinstance(rec["response"], str):
            raise UsageError(f"{path} line {n}: 'response' must be a string or null")
        out.append(rec)
    if not out:
        raise UsageError(f"{path}: no responses")
    return out


def resolve_inputs(spec: str | None, default_key: str) -> tuple[bytes, str, str, dict[str, str]]:
    """(bytes, label, sha256, data_sha256 entry) of the IFEval input file: a data key, a path, or the protocol's."""
    spec = spec or default_key
    if spec in data.FILES:
        res = data.resolve(spec)
        return res.read_bytes(), f"{spec} ({res.path})", res.sha256, {spec: res.sha256}
    p = Path(spec)
    if not p.is_file():
        raise UsageError(f"--input-data {spec}: neither a data key ({', '.join(ifeval.IFEval.data_keys)}) nor a file")
    raw = p.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    return raw, str(p), digest, {f"file:{p.name}": digest}


def grade_responses(eval_name: str, responses: Path, out_dir: Path, protocol: str = "reference",
                    input_data: str | None = None, exclude_keys: list[str] | None = None,
                    missing_as_empty: bool = False, reasoning: str = "none") -> Results:  # fmt: skip
    if eval_name not in GRADABLE:
        raise UsageError(f"scorecheck grade supports --eval {', '.join(GRADABLE)}; got {eval_name!r}")
    started = time.time()
    profile = get_profile(protocol)
    fmt = parse_format(reasoning)
    bench = ifeval.IFEval(eval_protocol(profile, eval_name))
    raw, label, _sha, data_sha = resolve_inputs(input_data, bench.spec.data_key)
    rows = ifeval.read_inputs(raw, label)
    excluded = {str(k).strip() for k in exclude_keys or []}
    unknown_excl = excluded - {str(r["key"]) for r in rows}
    if unknown_excl:
        raise UsageError(f"--exclude-key {', '.join(sorted(unknown_excl))}: no such key in {label}")
    rows = [r for r in rows if str(r["key"]) not in excluded]

    resp_records = read_responses(responses)
    by_prompt: dict[str, str | None] = {}
    duplicates = 0
    for rec in resp_records:
        if rec["prompt"] in by_prompt:
            duplicates += 1
        by_prompt[rec["prompt"]] = rec["response"]  # the last one wins, as in Google's evaluator
    input_prompts = {r["prompt"] for r in rows}
    unmatched = [p for p in by_prompt if p not in input_prompts]
    missing = [r for r in rows if r["prompt"] not in by_prompt]
    if missing and not missing_as_empty:
        keys = ", ".join(str(r["key"]) for r in missing[:20]) + (" …" if len(missing) > 20 else "")
        raise UsageError(
            f"{len(missing)} input prompt(s) of {label} have no response in {responses} (keys {keys}); the prompts "
            "must match word for word. Leave them out with --exclude-key KEY, grade them as empty responses with "
            "--missing-as-empty, or pick the input file the responses were made from with --input-data"
        )

    ifeval.checks.ensure_nltk()
    records: list[dict[str, Any]] = []
    for row in rows:
        item = ifeval.make_item(row)
        present = row["prompt"] in by_prompt
        content = by_prompt.get(row["prompt"])
        failed = content is None
        split = fmt.apply(content or "")
        g = bench.grade(item, split.answer)
        records.append({
            "eval": bench.name, "item_id": item.id, "sample_index": 0, "request_key": None, "prompt": item.prompt,
            "gold": item.gold, "meta": item.meta, "status": "ok" if present and not failed else "missing",
            "finish_reason": None, "completion_tokens": None, "latency": None, "response": content,
            "reasoning": split.reasoning, "answer_text": split.answer, "extracted": split.answer, "score": g.score,
            "grader": g.grader, "grader_detail": g.detail, "grade_info": g.info, "reasoning_format": str(fmt),
            "flags": {"unparsed": False, "truncated": False, "missing_tag": split.missing_tag,
                      "failed": False, "http_400": False, "no_response": not present, "null_response": present and failed},
        })  # fmt: skip
    result = eval_result(bench, records)
    result["no_response_graded_as_empty"] = len(missing)
    result["null_responses_graded_as_empty"] = sum(1 for r in records if r["flags"]["null_response"])

    notes = [
        f"{bench.name} {c}: "
        + ", ".join(f"{k.replace('_', '-')} {v:.6f}" for k, v in s.items() if isinstance(v, float))
        for c, s in result["checkers"].items()
    ]
    if unmatched:
        notes.append(f"{len(unmatched)} response(s) match no prompt of the input file and are not graded: "
                     + "; ".join(repr(p[:60] + ("…" if len(p) > 60 else "")) for p in unmatched[:5])
                     + (" …" if len(unmatched) > 5 else ""))  # fmt: skip
    if missing:
        notes.append(f"{len(missing)} input prompt(s) had no response and were graded as empty responses")
    if duplicates:
        notes.append(f"{duplicates} repeated prompt(s) in the responses file: the last response of each is graded")
    if excluded:
        notes.append(f"input keys left out: {', '.join(sorted(excluded, key=lambda k: (len(k), k)))}")
    results = build_results(
        model=f"responses from {responses.name}", protocol={"name": profile.name, "reference": profile.reference},
        config={
            "system_prompt": {"name": "n/a (graded responses)", "sha256": None, "text": None},
            "reasoning": str(fmt),
            "sampling": {},
            "limit": None,
            "evals": [bench.name],
        },
        evals={bench.name: result}, notes=notes, started=started, ended=time.time(),
        source={
            "command": "grade",
            "responses": str(responses),
            "responses_sha256": hashlib.sha256(responses.read_bytes()).hexdigest(),
            "responses_records": len(resp_records),
            "input_data": label,
            "excluded_keys": sorted(excluded),
            "graded": len(records),
            "unmatched_responses": {"count": len(unmatched), "prompts": unmatched},
            "missing_responses": [str(r["key"]) for r in missing],
            "duplicate_prompts": duplicates,
        },
        prompt_sha256={}, data_sha256=data_sha,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    write_outputs(out_dir, results, records, {bench.name: [str(r["key"]) for r in rows]})
    return results
