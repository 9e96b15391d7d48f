"""GPQA (main: 448 questions; diamond: 198), 0-shot chat, as the protocol prompts and extracts (glaive-2024: the
fork's gpqa_eval.py; simple-evals: its own prompt and regex, diamond, 10 repeats).

Choices are shuffled with the harnesses' seeded permutation (the same code in both): ``rng = random.Random(0)``; with ``--limit n`` the subset
is drawn from the same rng first (``rng.sample(examples, n)``), then for each example in order
``perm = rng.sample(range(4), 4)`` and the shown choices are ``[base[i] for i in perm]`` with
``base = [Correct, Incorrect 1, Incorrect 2, Incorrect 3]``. Gold is the letter of the FIRST shown choice equal to
the correct text (one row repeats the correct text among the incorrect ones). With repeats (simple-evals, no subset)
the example list is repeated first and every repeat draws its own permutation, so each repeat is an item of its own
(``<record id>#<repeat>``). Prompt, extraction and grade as MMLU.
"""

from __future__ import annotations

import random

from scorecheck import data
from scorecheck.benchmarks import Benchmark, Graded, Item
from scorecheck.benchmarks.mmlu import read_csv_like_pandas
from scorecheck.protocols import EvalProtocol


def permuted(rows: list[dict], limit: int | None, repeats: int = 1) -> list[tuple[dict, list[int], int]]:
    """(row, permutation, repeat) in run order; a subset allows one repeat (as upstream asserts)."""
    rng = random.Random(0)
    if limit:
        rows = rng.sample(rows, min(limit, len(rows)))
        repeats = 1
    return [(row, rng.sample(range(4), 4), r) for r in range(repeats) for row in rows]


class GPQA(Benchmark):
    data_keys: tuple[str, ...]

    def __init__(self, variant: str, spec: EvalProtocol | None = None) -> None:
        self.variant = variant
        self.name = f"gpqa_{variant}"
        self.data_keys = (f"gpqa_{variant}",)
        self.description = f"GPQA {variant} 0-shot chat, seeded choice permutation"
        super().__init__(spec)

    @classmethod
    def of(cls, spec: EvalProtocol) -> GPQA:
        return cls(spec.eval.removeprefix("gpqa_"), spec)

    def default_samples(self, limit: int | None) -> int:
        return self.spec.samples  # repeats are items of their own (each with its own permutation)

    def load(self, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        res = data.resolve(self.spec.data_key)
        rows = read_csv_like_pandas(str(res.path))
        for i, row in enumerate(rows):
            row["_id"] = str(row.get("Record ID") or i)
        items = []
        repeats = self.spec.repeats
        for row, perm, r in permuted(rows, limit, repeats):
            base = [
                row["Correct Answer"],
                row["Incorrect Answer 1"],
                row["Incorrect Answer 2"],
                row["Incorrect Answer 3"],
            ]
            shown = [base[i] for i in perm]
            gold = "ABCD"[shown.index(row["Correct Answer"])]
            fields = dict(A=shown[0], B=shown[1], C=shown[2], D=shown[3], Question=row["Question"])
            items.append(
                Item(
                    id=row["_id"] if repeats == 1 else f"{row['_id']}#{r}",
                    prompt=self.spec.user_template.format(**fields),
                    gold=gold,
                    meta={"permutation": perm, "subdomain": row.get("Subdomain")},
                )
            )
        return items, {self.spec.data_key: res.sha256}

    def grade(self, item: Item, extracted: str | None) -> Graded:
        return Graded(1.0 if extracted == item.gold else 0.0, "exact-letter")
