"""IFEval (541 prompts, 834 verifiable instructions of 25 types), graded by two checkers on every run.

Data: the protocol's input file: under ``glaive-2024`` the fork's (``ifeval_glaive``, the older Google version whose
key 2785 asks for "one placeholder" while its kwargs require 3); under ``reference`` Google's current
``input_data.jsonl``.
Prompt: the prompt as is. Under glaive-2024 the run's ``reflection`` / ``default`` system prompts are replaced by the
fork's IFEval copies (ifeval/gen_results.py: the Reflection prompt with one fewer blank line, and "You are a helpful
assistant. Provide clear and concise answers to the user's questions."): the protocol's ``system_prompts``.
Extraction: under glaive-2024 (by default, or with ``--reasoning reflection``) the fork's IFEval split
(``reflection-ifeval``) and only when the run uses the Reflection system prompt; the fork's ``--no-reflection`` runs
(the Llama default column) graded the raw response. Other reasoning formats apply as given.
Grade: every response is checked by Google's current evaluator (``reference``) and by the fork's copy
(``glaive-2024``), strict and loose (scorecheck.grading.ifeval). The headline is the mean of prompt-strict,
instruction-strict, prompt-loose and instruction-loose under the protocol's checker (its ``grader``) (under glaive-2024 that mean is
the seed's README choice, not something the fork computes); results.json holds both checkers' four numbers and means,
how many prompts they grade differently, and per-instruction-type scores. A sample's own ``score`` is its
prompt-strict result under the profile's checker.
Failed requests (no answer after the retries) are left out of the score, counted and listed, as in every eval (the
fork dropped them from generation, and its evaluator then failed; an earlier scorecheck rule graded them as empty
responses: ../shared/PROTOCOL.md now says to leave them out); a rerun retries them. HTTP 400 answers follow the
protocol's HTTP-400 rule (under glaive-2024 the empty response), as for every eval.
Subsets: the fork cannot subset IFEval; ``--limit n`` uses ``random.Random(0).sample(examples, n)``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from scorecheck import data
from scorecheck.benchmarks import Benchmark, Graded, Item, fork_subset
from scorecheck.errors import DataError
from scorecheck.grading import ifeval as checks

if TYPE_CHECKING:
    from scorecheck.protocols import EvalProtocol

GRADER_PREFIX = "ifeval-"


def checker_of(spec: EvalProtocol) -> str:
    """The checker whose numbers are the headline under the protocol (its grader ``ifeval-<checker>``)."""
    checker = spec.grader.removeprefix(GRADER_PREFIX)
    if checker not in checks.CHECKERS:
        raise ValueError(
            f"IFEval grader {spec.grader!r}: expected one of " + ", ".join(GRADER_PREFIX + c for c in checks.CHECKERS)
        )
    return checker


def read_inputs(raw: bytes, origin: str) -> list[dict[str, Any]]:
    """Google's input format: one JSON object a line with key, prompt, instruction_id_list, kwargs."""
    rows = []
    for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ids, kwargs, _ = row["instruction_id_list"], row["kwargs"], (row["key"], row["prompt"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{origin} line {n}: not an IFEval input record ({e!r})") from None
        if len(ids) != len(kwargs):
            raise DataError(f"{origin} line {n}: {len(ids)} instructions but {len(kwargs)} kwargs")
        unknown = [i for i in ids if i not in checks.REFERENCE_CHECKS]
        if unknown:
            raise DataError(f"{origin} line {n}: unknown instruction type(s) {', '.join(unknown)}")
        rows.append(row)
    return rows


def make_item(row: dict[str, Any]) -> Item:
    return Item(
        id=str(row["key"]),
        prompt=row["prompt"],
        gold="",
        meta={"key": row["key"], "instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]},
    )


def grade_text(item: Item, text: str, checker: str) -> Graded:
    results = checks.check_prompt(item.meta["instruction_id_list"], item.meta["kwargs"], text)
    head = results[checker]
    n = len(head.strict)
    return Graded(
        1.0 if head.strict_all else 0.0,
        f"ifeval-{checker}",
        detail=f"strict {sum(head.strict)}/{n}, loose {sum(head.loose)}/{n}",
        info={"checkers": {c: r.as_dict() for c, r in results.items()}},
    )


class IFEval(Benchmark):
    name = "ifeval"
    data_keys = ("ifeval", "ifeval_glaive")
    description = "IFEval (541 prompts, 25 instruction types), strict and loose, reference and glaive-2024 checkers"
    prompt_template = "{prompt}"

    @property
    def checker(self) -> str:
        return checker_of(self.spec)

    def load(self, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        res = data.resolve(self.spec.data_key)
        rows = read_inputs(res.read_bytes(), str(res.path))
        checks.ensure_nltk()  # missing tokenizer data fails now, not after the requests
        return [make_item(r) for r in fork_subset(rows, limit)], {res.file.key: res.sha256}

    def extract(self, text: str) -> str | None:
        return text  # IFEval grades the whole (reasoning-stripped) response

    def grade(self, item: Item, extracted: str | None) -> Graded:
        return grade_text(item, extracted or "", self.checker)

    def aggregate(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return summarize(records, self.checker)


def _results_of(rec: dict[str, Any]) -> dict[str, checks.PromptResult] | None:
    """A record's per-checker results; None for a failed request (no answer)."""
    info = rec.get("grade_info") or {}
    if rec.get("score") is None or "checkers" not in info:
        return None
    return {c: checks.PromptResult(list(v["strict"]), list(v["loose"])) for c, v in info["checkers"].items()}


def _ci95(results: Sequence[checks.PromptResult]) -> list[float] | None:
    """Normal interval of the mean of the four numbers, written as a mean over prompts of
    z_i = (ps_i + pl_i + P * (is_i + il_i) / I) / 4 (P prompts, I instructions, is_i/il_i the prompt's followed
    instruction counts); the instruction total is treated as fixed."""
    n = len(results)
    n_instr = sum(len(r.strict) for r in results)
    if n < 2 or not n_instr:
        return None
    z = [(r.strict_all + r.loose_all + n * (sum(r.strict) + sum(r.loose)) / n_instr) / 4 for r in results]
    m = sum(z) / n
    sd = math.sqrt(sum((v - m) ** 2 for v in z) / (n - 1))
    h = 1.96 * sd / math.sqrt(n)
    return [max(0.0, m - h), min(1.0, m + h)]


def summarize(records: Sequence[dict[str, Any]], checker: str) -> dict[str, Any]:
    """Both checkers' four numbers and means, their disagreement and the per-instruction-type breakdown."""
    per: dict[str, list[checks.PromptResult]] = {c: [] for c in checks.CHECKERS}
    ids_per_prompt: list[list[str]] = []
    item_ids: list[str] = []
    for rec in records:
        ids = list((rec.get("meta") or {}).get("instruction_id_list") or [])
        got = _results_of(rec)
        if got is None:  # a failed request has no answer: never scored (report.eval_result passes graded ones)
            continue
        for c in checks.CHECKERS:
            per[c].append(got[c])
        ids_per_prompt.append(ids)
        item_ids.append(str(rec.get("item_id")))

    by_checker: dict[str, dict[str, Any]] = {}
    for c in checks.CHECKERS:
        s: dict[str, Any] = dict(checks.scores(per[c]))
        s["prompts_followed"] = {"strict": sum(r.strict_all for r in per[c]), "loose": sum(r.loose_all for r in per[c])}
        s["instructions_followed"] = {"strict": sum(sum(r.strict) for r in per[c]),
                                      "loose": sum(sum(r.loose) for r in per[c])}  # fmt: skip
        by_checker[c] = s

    ref, gl = per[checks.REFERENCE], per[checks.GLAIVE_2024]
    differ = [i for i, (a, b) in enumerate(zip(ref, gl, strict=True)) if a != b]
    difference = {
        "prompts_graded_differently": len(differ),
        "prompt_level": {"strict": sum(a.strict_all != b.strict_all for a, b in zip(ref, gl, strict=True)),
                         "loose": sum(a.loose_all != b.loose_all for a, b in zip(ref, gl, strict=True))},
        "instruction_level": {
            "strict": sum(x != y for a, b in zip(ref, gl, strict=True) for x, y in zip(a.strict, b.strict, strict=True)),
            "loose": sum(x != y for a, b in zip(ref, gl, strict=True) for x, y in zip(a.loose, b.loose, strict=True)),
        },
        "items": [item_ids[i] for i in differ],
    }  # fmt: skip

    per_type: dict[str, dict[str, Any]] = {}
    per_category: dict[str, dict[str, Any]] = {}
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for c in checks.CHECKERS:
        for ids, r in zip(ids_per_prompt, per[c], strict=True):
            for iid, st, lo in zip(ids, r.strict, r.loose, strict=True):
                for group in (iid, "category:" + iid.split(":")[0]):
                    for mode, ok in (("strict", st), ("loose", lo)):
                        cell = counts[(group, c, mode)]
                        cell[0] += int(ok)
                        cell[1] += 1
    for (group, c, mode), (k, n) in sorted(counts.items()):
        target = per_category if group.startswith("category:") else per_type
        name = group.removeprefix("category:")
        entry = target.setdefault(name, {"n": n})
        entry.setdefault(c, {})[mode] = k / n

    head = by_checker[checker]
    n_prompts, n_instr = len(ids_per_prompt), sum(len(ids) for ids in ids_per_prompt)
    metrics = {}
    for mode in ("strict", "loose"):
        metrics[f"prompt_{mode}"] = {"value": head[f"prompt_{mode}"], "correct": head["prompts_followed"][mode],
                                     "n": n_prompts, "unit": "prompts"}  # fmt: skip
        metrics[f"instruction_{mode}"] = {"value": head[f"instruction_{mode}"],
                                          "correct": head["instructions_followed"][mode], "n": n_instr,
                                          "unit": "instructions"}  # fmt: skip
    return {
        "score": head["mean"],
        "ci95": _ci95(per[checker]),
        "ci_method": "normal over prompts (the mean of four as a mean of per-prompt contributions)",
        "n": n_prompts,
        "correct": None,  # the headline is the mean of four proportions, each with its own count under metrics
        "metrics": metrics,
        "checker": checker,
        "prompt_strict": head["prompt_strict"],
        "instruction_strict": head["instruction_strict"],
        "prompt_loose": head["prompt_loose"],
        "instruction_loose": head["instruction_loose"],
        "checkers": by_checker,
        "checker_difference": difference,
        "per_instruction": per_type,
        "per_category": per_category,
        "summary_rows": [
            *[[c, by_checker[c]["mean"]] for c in checks.CHECKERS],
            ["checkers differ", None, f"{len(differ)} prompts"],
        ],
    }
