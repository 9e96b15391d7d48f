"""MATH (5,000 test problems) and MATH-500, 0-shot chat, as the protocol prompts and extracts (glaive-2024: the
fork's math_eval.py, described here; simple-evals: its own prompt, the same regex and judge, 10 repeats of the same
prompt, sent as 10 samples per problem, without a subset).

Prompt: the protocol's template (glaive-2024: the "." after ``{Question}`` and the trailing space are the fork's).
Extraction: the FIRST match of ``(?i)Answer\\s*:\\s*([^\\n]+)``, not stripped. No match is counted as unparsed; the
fork then still asked the judge, with the string ``"None"`` in place of the answer (``"%s" % None``), and scorecheck's
judge does the same (``judge_unparsed``); the symbolic grader scores it 0.
Gold: the ``Answer`` column of math_test.csv as written (the content of the solution's ``\\boxed{}``).
Grade: the fork asked gpt-4-turbo-preview (temperature 0.5); scorecheck's default is the symbolic grader (math-verify,
gold parsed as ``\\boxed{gold}``, in a worker process), ``--grader judge|both`` runs the protocol's judge
(grading/plan.py). ``--limit n``: ``random.Random(0).sample(examples, n)``, as the fork draws it.

MATH-500 (``--evals math_500``, alias ``math500``) is the prm800k test split of 500 of these problems. The fork never
ran it; scorecheck uses the same prompt, extraction and graders (marked not byte-verified; simple-evals reads its own
``math_500_test.csv``, not in the shared data, so its MATH-500 is not byte-verified either). Its data is prm800k's ``math_splits/test.jsonl``
format (``problem``, ``answer``, ``subject``, ``level``, ``unique_id``), not a simple-evals CSV, and its ``answer`` differs
from math_test.csv's ``Answer`` for 3 problems, where prm800k dropped the units: ``90`` vs ``90^\\circ``, ``864`` vs
``864 \\mbox{ inches}^2``, ``15`` vs ``15\\mbox{ cm}^2``. A MATH-500 score is therefore not a plain subset of a MATH run's.
"""

from __future__ import annotations

import csv
import io
import json

from scorecheck import data
from scorecheck.benchmarks import Benchmark, Graded, Item, fork_subset
from scorecheck.grading.symbolic import symbolic_equal


def grade_symbolic_math(item: Item, extracted: str) -> Graded:
    return symbolic_equal(item.gold, extracted, latex_gold=True)


class MATH(Benchmark):
    name = "math"
    data_keys = ("math",)
    description = "MATH 0-shot chat (5,000 problems), symbolic grader (judge with --grader judge|both)"
    worker_grader = staticmethod(grade_symbolic_math)
    judge_capable = True

    def load(self, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        res = data.resolve(self.spec.data_key)
        rows = list(csv.DictReader(io.StringIO(res.read_bytes().decode("utf-8"), newline="")))
        items = [
            Item(id=row[""], prompt=self.spec.user_template.format(Question=row["Question"]), gold=row["Answer"])
            for row in fork_subset(rows, limit)
        ]
        return items, {self.spec.data_key: res.sha256}

    def grade(self, item: Item, extracted: str | None) -> Graded:
        # Only reached for unparsed answers; parsed ones go to worker_grader.
        return Graded(0.0, "unparsed")


class MATH500(MATH):
    name = "math_500"
    data_keys = ("math500",)
    description = "MATH-500 (prm800k test split, 500 problems), same prompt and graders as math"

    def load(self, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        res = data.resolve(self.spec.data_key)
        rows = [json.loads(line) for line in res.read_bytes().decode("utf-8").splitlines() if line.strip()]
        items = [
            Item(
                id=row["unique_id"],
                prompt=self.spec.user_template.format(Question=row["problem"]),
                gold=row["answer"],
                meta={"subject": row["subject"], "level": row["level"]},
            )
            for row in fork_subset(rows, limit)
        ]
        return items, {self.spec.data_key: res.sha256}
