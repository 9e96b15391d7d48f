"""GSM8K (1,319 test problems), 0-shot chat, as glaive-ai/simple-evals @ 478400f (gsm_eval.py) prompts and extracts.

Extraction: the LAST match of ``(?i)Answer\\s*:\\s*([^\\n]+)`` with ``%`` removed; no match scores 0 (unparsed).
Gold: the text after ``####``, stripped, ``%`` removed.
Grade: the fork asked gpt-4-turbo-preview (temperature 0.5) whether gold and answer are equal; scorecheck's default
is the deterministic symbolic grader (math-verify), run in a worker process where its timeouts work. ``--grader judge``
asks the protocol's judge instead, ``--grader both`` runs both (grading/plan.py); unparsed answers score 0 without
the judge in every mode, as in the fork.
The fork cannot subset GSM8K; ``--limit n`` uses ``random.Random(0).sample(examples, n)`` as for the other evals.
"""

from __future__ import annotations

import json

from scorecheck import data
from scorecheck.benchmarks import Benchmark, Graded, Item, fork_subset
from scorecheck.grading.symbolic import symbolic_equal


def grade_symbolic(item: Item, extracted: str) -> Graded:
    return symbolic_equal(item.gold, extracted)


class GSM8K(Benchmark):
    name = "gsm8k"
    data_keys = ("gsm8k",)
    description = "GSM8K 0-shot chat (1,319 problems), symbolic grader"
    worker_grader = staticmethod(grade_symbolic)
    judge_capable = True

    def load(self, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        res = data.resolve(self.spec.data_key)
        rows = [json.loads(line) for line in res.read_bytes().decode("utf-8").splitlines() if line.strip()]
        for i, row in enumerate(rows):
            row["_id"] = str(i)
        items = [
            Item(
                id=row["_id"],
                prompt=self.spec.user_template.format(question=row["question"]),
                gold=row["answer"].split("####")[1].strip().replace("%", ""),
            )
            for row in fork_subset(rows, limit)
        ]
        return items, {self.spec.data_key: res.sha256}

    def grade(self, item: Item, extracted: str | None) -> Graded:
        # Only reached for unparsed answers; parsed ones go to worker_grader.
        return Graded(0.0, "unparsed")
