"""What two protocols do differently, field by field (``scorecheck protocols diff A B [--eval E]``).

A published number is comparable with another only when these fields agree: this is the list a user reads to see
why two numbers for "the same" benchmark are not.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from scorecheck.protocols.spec import EvalProtocol, Profile, sha256_text

PROSE = ("user prompt", "judge template")
"""Fields shown as a unified diff when they differ."""
ALWAYS = ("regexes", "match rule")
"""Fields printed even when equal (what a reader checks first)."""


def _json(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def eval_fields(profile: Profile, spec: EvalProtocol) -> dict[str, str]:
    """Every fact that decides a score, as text, in the order a reader goes through a run."""
    ex = spec.extraction.describe()
    judge = "none"
    if spec.judge_template is not None:
        judge = (f"{profile.judge_model} temperature {profile.judge_temperature} max_tokens {profile.judge_max_tokens}; "
                 f"unparsed shown as {spec.judge_unparsed!r}" if spec.judge_unparsed is not None
                 else f"{profile.judge_model} temperature {profile.judge_temperature} max_tokens "
                 f"{profile.judge_max_tokens}; unparsed scores 0 without the judge")  # fmt: skip
    return {
        "source": spec.source,
        "data": spec.data_key,
        "subset": spec.subset,
        "byte-verified": "yes" if spec.byte_verified else "no: " + "; ".join(spec.notes),
        "system prompts": "\n".join(
            f"{name}: sha256 {sha256_text(text)[:16]}, {len(text)} chars" + (" (this eval's copy)"
                                                                             if name in spec.system_prompts else "")
            for name, text in (dict(profile.system_prompts) | dict(spec.system_prompts)).items()
        ) or "none defined (no system message unless --system-prompt gives one)",
        "user prompt": spec.user_template,
        "user prompt sha256": sha256_text(spec.user_template),
        "regexes": "\n".join(ex["patterns"]) or "none (the whole response is graded)",
        "match rule": f"{ex['match']} match; no match: {ex['no_match']}",
        "normalisation": _json({"response": ex["normalize_response"], "answer": ex["normalize_answer"],
                                "signature": ex["cut_signature"]}),  # fmt: skip
        "reasoning": spec.reasoning_rule(),
        "grader": spec.grader + (f", {spec.exec_timeout_s} s timeout" if spec.exec_timeout_s else ""),
        "judge": judge,
        "judge template": spec.judge_template or "",
        "sampling": _json({"temperature": profile.temperature, "max_tokens": profile.max_tokens,
                           "extra_body": dict(profile.extra_body)}),  # fmt: skip
        "HTTP 400": "graded as the empty response" if profile.http_400_is_empty_answer
        else f"graded as the text {profile.http_400_text!r}",
        "repeats": f"{spec.repeats} (1 with --limit)",
        "samples per item": str(spec.samples),
        "pass@k": ", ".join(str(k) for k in spec.pass_ks) or "-",
        "aggregate": spec.aggregate,
    }  # fmt: skip


def diff_eval(a: Profile, b: Profile, eval_name: str) -> list[str]:
    """Lines saying what differs for one eval (or that only one profile defines it)."""
    sa, sb = a.evals.get(eval_name), b.evals.get(eval_name)
    head = [f"== {eval_name}: {a.name} vs {b.name} =="]
    if sa is None or sb is None:
        has, lacks = (a, b) if sa is not None else (b, a)
        return [*head, f"only {has.name} defines {eval_name}; {lacks.name} does not (its evals: "
                f"{', '.join(lacks.evals) or 'none'})"]  # fmt: skip
    fa, fb = eval_fields(a, sa), eval_fields(b, sb)
    out = list(head)
    same = []
    for field, va in fa.items():
        vb = fb[field]
        if va == vb:
            same.append(field)
            if field in ALWAYS:
                out.append(f"{field} (same):")
                out += ["  " + line for line in va.splitlines()]
            continue
        if field in PROSE:
            out.append(f"{field}:")
            out += [
                "  " + line.rstrip("\n")
                for line in difflib.unified_diff(
                    va.splitlines(keepends=True), vb.splitlines(keepends=True), a.name, b.name, lineterm="\n"
                )
            ]
        else:
            out.append(f"{field}:")
            out += [f"  {a.name}: " + line for line in va.splitlines() or [""]]
            out += [f"  {b.name}: " + line for line in vb.splitlines() or [""]]
    out.append("same: " + (", ".join(same) or "nothing"))
    return out


def diff(a: Profile, b: Profile, eval_name: str | None = None) -> list[str]:
    names = [eval_name] if eval_name else list(dict.fromkeys([*a.evals, *b.evals]))
    lines: list[str] = []
    for n in names:
        lines += diff_eval(a, b, n)
        lines.append("")
    return lines[:-1]


def listing(profiles: dict[str, Profile]) -> list[str]:
    """``scorecheck protocols``: each profile, what it reproduces, and the evals it defines."""
    lines = []
    for p in profiles.values():
        lines.append(f"{p.name}: {p.description} ({p.reference})")
        for name, spec in p.evals.items():
            alias = [k for k, v in p.aliases.items() if v == name]
            mark = "" if spec.byte_verified else " [not byte-verified]"
            lines.append(f"  {name:<13} {spec.source}" + (f" (alias: {', '.join(alias)})" if alias else "") + mark)
    return lines
