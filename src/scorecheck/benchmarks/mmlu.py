"""MMLU, 0-shot chat, as the protocol prompts and extracts (glaive-2024: mmlu_eval.py of the fork; simple-evals:
its own prompt, ``normalize_response`` and multilingual answer regexes).

Data: simple-evals mmlu.csv (14,042 questions, 57 subjects), read with pandas defaults as both harnesses do, so the
10 choices whose text is literally ``None`` become NaN and are shown as ``nan`` in the prompt.
Prompt: the protocol's template. Extraction: the protocol's (glaive-2024: the FIRST match of
``(?i)Answer\\s*:\\s*([A-D])``, so "Answer: Based on ..." extracts "B"). Grade: extracted letter == gold letter,
case-sensitive ("answer: b" scores 0). Scores: micro average (the fork's number), macro average over subjects
(Meta's), and per category. Subset: ``random.Random(0).sample(examples, n)`` under both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from scorecheck import data
from scorecheck.benchmarks import Benchmark, Graded, Item, fork_subset

# mmlu_eval.py (the same table in glaive-ai/simple-evals @ 478400f and openai/simple-evals @ ee3b031)
SUBJECT_TO_CATEGORY = {
    "abstract_algebra": "stem", "anatomy": "other", "astronomy": "stem", "business_ethics": "other",
    "clinical_knowledge": "other", "college_biology": "stem", "college_chemistry": "stem",
    "college_computer_science": "stem", "college_mathematics": "stem", "college_medicine": "other",
    "college_physics": "stem", "computer_security": "stem", "conceptual_physics": "stem",
    "econometrics": "social_sciences", "electrical_engineering": "stem", "elementary_mathematics": "stem",
    "formal_logic": "humanities", "global_facts": "other", "high_school_biology": "stem",
    "high_school_chemistry": "stem", "high_school_computer_science": "stem",
    "high_school_european_history": "humanities", "high_school_geography": "social_sciences",
    "high_school_government_and_politics": "social_sciences", "high_school_macroeconomics": "social_sciences",
    "high_school_mathematics": "stem", "high_school_microeconomics": "social_sciences",
    "high_school_physics": "stem", "high_school_psychology": "social_sciences", "high_school_statistics": "stem",
    "high_school_us_history": "humanities", "high_school_world_history": "humanities", "human_aging": "other",
    "human_sexuality": "social_sciences", "international_law": "humanities", "jurisprudence": "humanities",
    "logical_fallacies": "humanities", "machine_learning": "stem", "management": "other", "marketing": "other",
    "medical_genetics": "other", "miscellaneous": "other", "moral_disputes": "humanities",
    "moral_scenarios": "humanities", "nutrition": "other", "philosophy": "humanities", "prehistory": "humanities",
    "professional_accounting": "other", "professional_law": "humanities", "professional_medicine": "other",
    "professional_psychology": "social_sciences", "public_relations": "social_sciences",
    "security_studies": "social_sciences", "sociology": "social_sciences", "us_foreign_policy": "social_sciences",
    "virology": "other", "world_religions": "humanities",
}  # fmt: skip


def read_csv_like_pandas(path: str) -> list[dict[str, Any]]:
    """The fork's ``pandas.read_csv(url)`` then ``row.to_dict()``: default NA handling included."""
    import pandas

    return pandas.read_csv(path).to_dict("records")


class MMLU(Benchmark):
    name = "mmlu"
    data_keys = ("mmlu",)
    description = "MMLU 0-shot chat (14,042 questions), micro and macro average"
    interval_cluster = "subject"

    def load(self, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        res = data.resolve(self.spec.data_key)
        rows = read_csv_like_pandas(str(res.path))
        for i, row in enumerate(rows):
            row["_id"] = str(i)
        items = [
            Item(
                id=row["_id"],
                prompt=self.spec.user_template.format(**row),
                gold=row["Answer"],
                meta={"subject": row["Subject"], "category": SUBJECT_TO_CATEGORY.get(row["Subject"], "other")},
            )
            for row in fork_subset(rows, limit)
        ]
        return items, {self.spec.data_key: res.sha256}

    def grade(self, item: Item, extracted: str | None) -> Graded:
        return Graded(1.0 if extracted == item.gold else 0.0, "exact-letter")

    def aggregate(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return subject_averages(records)


def subject_averages(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_subject: dict[str, list[float]] = defaultdict(list)
    by_category: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r.get("score") is None:
            continue
        by_subject[r["meta"]["subject"]].append(r["score"])
        by_category[r["meta"]["category"]].append(r["score"])
    subj_means = {s: sum(v) / len(v) for s, v in sorted(by_subject.items())}
    out: dict[str, Any] = {
        "micro": None,  # filled by the aggregator: the plain mean, the fork's score
        "macro": (sum(subj_means.values()) / len(subj_means)) if subj_means else None,
        "macro_subjects": len(subj_means),
        "per_category": {c: sum(v) / len(v) for c, v in sorted(by_category.items())},
        "per_subject": subj_means,
    }
    # Standard error of the macro mean: sum of per-subject binomial variances over S^2, each variance taken at
    # (k + 1) / (n + 2) so that a subject answered all right or all wrong still counts as uncertain.
    if subj_means:
        var = 0.0
        for v in by_subject.values():
            pt = (sum(v) + 1) / (len(v) + 2)
            var += pt * (1 - pt) / len(v)
        var /= len(subj_means) ** 2
        half = 1.96 * var**0.5
        out["macro_ci95"] = [max(0.0, out["macro"] - half), min(1.0, out["macro"] + half)]
    return out
