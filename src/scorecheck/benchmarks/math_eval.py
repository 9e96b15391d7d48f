"""MATH (5,000 test problems) and MATH-500, 0-shot chat, as glaive-ai/simple-evals @ 478400f (math_eval.py) prompts
and extracts.

Prompt: ``QUERY_TEMPLATE_MATH`` (the "." after ``{Question}`` and the trailing space are the protocol's).
Extraction: the FIRST match of ``(?i)Answer\\s*:\\s*([^\\n]+)``, not stripped. No match is counted as unparsed; the
fork then still asked the judge, with the string ``"None"`` in place of the answer (``"%s" % None``), and scorecheck's
judge does the same (``judge_unparsed``); the symbolic grader scores it 0.
Gold: the ``Answer`` column of math_test.csv as written (the content of the solution's ``\\boxed{}``).
Grade: the fork asked gpt-4-turbo-preview (temperature 0.5); scorecheck's default is the symbolic grader (math-verify,
gold parsed as ``\\boxed{gold}``, in a worker process), ``--grader judge|both`` runs the protocol's judge
(grading/plan.py). ``--limit n``: ``random.Random(0).sample(examples, n)``, as the fork draws it.

MATH-500 (``--evals math_500``, alias ``math500``) is the prm800k test split of 500 of these problems. The fork never
ran it; scorecheck uses the same prompt, extraction and graders. Its data is prm800k's ``math_splits/test.jsonl``
format (``problem``, ``answer``, ``subject``, ``level``, ``unique_id``), not a simple-evals CSV, and its ``answer`` differs
from math_test.csv's ``Answer`` for 3 problems, where prm800k dropped the units: ``90`` vs ``90^\\circ``, ``864`` vs
``864 \\mbox{ inches}^2``, ``15`` vs ``15\\mbox{ cm}^2``. A MATH-500 score is therefore not a plain subset of a MATH run's.
"""

from __future__ import annotations

import csv
import io
import json
import re

from scorecheck import data
from scorecheck.benchmarks import Benchmark, Graded, Item, fork_subset
from scorecheck.grading.symbolic import symbolic_equal
from scorecheck.protocols import glaive_2024 as P

ANSWER_RE = re.compile(P.ANSWER_PATTERN)


def grade_symbolic_math(item: Item, extracted: str) -> Graded:
    return symbolic_equal(item.gold, extracted, latex_gold=True)


class MATH(Benchmark):
    name = "math"
    data_keys = ("math",)
    description = "MATH 0-shot chat (5,000 problems), symbolic grader (judge with --grader judge|both)"
    prompt_template = P.QUERY_TEMPLATE_MATH
    worker_grader = staticmethod(grade_symbolic_math)
    judge_capable = True
    judge_unparsed = "None"

    def load(self, profile: str, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        res = data.resolve("math")
        rows = list(csv.DictReader(io.StringIO(res.read_bytes().decode("utf-8"), newline="")))
        items = [
            Item(id=row[""], prompt=P.QUERY_TEMPLATE_MATH.format(Question=row["Question"]), gold=row["Answer"])
            for row in fork_subset(rows, limit)
        ]
        return items, {"math": res.sha256}

    def extract(self, text: str) -> str | None:
        m = ANSWER_RE.search(text)
        return m.group(1) if m else None

    def grade(self, item: Item, extracted: str | None) -> Graded:
        # Only reached for unparsed answers; parsed ones go to worker_grader.
        return Graded(0.0, "unparsed")


class MATH500(MATH):
    name = "math_500"
    data_keys = ("math500",)
    description = "MATH-500 (prm800k test split, 500 problems), same prompt and graders as math"

    def load(self, profile: str, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        res = data.resolve("math500")
        rows = [json.loads(line) for line in res.read_bytes().decode("utf-8").splitlines() if line.strip()]
        items = [
            Item(
                id=row["unique_id"],
                prompt=P.QUERY_TEMPLATE_MATH.format(Question=row["problem"]),
                gold=row["answer"],
                meta={"subject": row["subject"], "level": row["level"]},
            )
            for row in fork_subset(rows, limit)
        ]
        return items, {"math500": res.sha256}
