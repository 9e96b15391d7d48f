"""GPQA (main: 448 questions; diamond: 198), 0-shot chat, as glaive-ai/simple-evals @ 478400f scores it.

Choices are shuffled with the fork's seeded permutation: ``rng = random.Random(0)``; with ``--limit n`` the subset
is drawn from the same rng first (``rng.sample(examples, n)``), then for each example in order
``perm = rng.sample(range(4), 4)`` and the shown choices are ``[base[i] for i in perm]`` with
``base = [Correct, Incorrect 1, Incorrect 2, Incorrect 3]``. Gold is the letter of the FIRST shown choice equal to
the correct text (one row repeats the correct text among the incorrect ones). Prompt, extraction and grade as MMLU.
"""

from __future__ import annotations

import random

from scorecheck import data
from scorecheck.benchmarks import Benchmark, Graded, Item
from scorecheck.benchmarks.mmlu import ANSWER_RE, read_csv_like_pandas
from scorecheck.protocols import glaive_2024 as P


def permuted(rows: list[dict], limit: int | None) -> list[tuple[dict, list[int]]]:
    rng = random.Random(0)
    if limit:
        rows = rng.sample(rows, min(limit, len(rows)))
    return [(row, rng.sample(range(4), 4)) for row in rows]


class GPQA(Benchmark):
    data_keys: tuple[str, ...]
    prompt_template = P.QUERY_TEMPLATE_MULTICHOICE

    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.name = f"gpqa_{variant}"
        self.data_keys = (f"gpqa_{variant}",)
        self.description = f"GPQA {variant} 0-shot chat, seeded choice permutation"

    def load(self, profile: str, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        res = data.resolve(self.data_keys[0])
        rows = read_csv_like_pandas(str(res.path))
        for i, row in enumerate(rows):
            row["_id"] = str(row.get("Record ID") or i)
        items = []
        for row, perm in permuted(rows, limit):
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
                    id=row["_id"],
                    prompt=P.QUERY_TEMPLATE_MULTICHOICE.format(**fields),
                    gold=gold,
                    meta={"permutation": perm, "subdomain": row.get("Subdomain")},
                )
            )
        return items, {self.data_keys[0]: res.sha256}

    def extract(self, text: str) -> str | None:
        m = ANSWER_RE.search(text)
        return m.group(1) if m else None

    def grade(self, item: Item, extracted: str | None) -> Graded:
        return Graded(1.0 if extracted == item.gold else 0.0, "exact-letter")
