"""Which grader scores MATH and GSM8K in a run (``--grader``), and how two graders' agreement is reported.

- ``symbolic`` (default): math-verify, deterministic, free (grading/symbolic.py).
- ``judge``: the protocol's LLM equality judge on any OpenAI-compatible endpoint (grading/judge.py), with the
  protocol's sampling (glaive-2024: temperature 0.5, max_tokens 1024, no system message). This is how the seed's
  numbers were graded; it is not deterministic.
- ``both``: runs both on every sample, scores by one of them and reports their agreement with the disagreements
  listed. The score comes from ``--score-by``; without it, from the profile's ``grader`` (``symbolic`` for
  glaive-2024, although the fork itself used the judge: scorecheck's headline numbers stay deterministic, and
  ``--score-by judge`` reproduces the fork's grading). Every sample records both grades under ``grades``.

Other benchmarks (MMLU, GPQA, ...) are graded as always; the choice applies to judge-capable ones
(``Benchmark.judge_capable``). The choice, the math-verify version and the judge (model, ``/v1/models`` identity,
sampling) go into the grade key of those samples, so changing any of them regrades stored answers (without
resending a single model request).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

from scorecheck.store import canonical

MODES = ("symbolic", "judge", "both")
DEFAULT_JUDGE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class GradingPlan:
    mode: str = "symbolic"
    score_by: str = "symbolic"
    judge_url: str | None = None
    judge_model: str | None = None
    judge_api_key_env: str = "OPENAI_API_KEY"
    judge_sampling: dict[str, Any] = field(default_factory=dict)

    @property
    def uses_judge(self) -> bool:
        return self.mode in ("judge", "both")

    @property
    def uses_symbolic(self) -> bool:
        return self.mode in ("symbolic", "both")

    def signature(self, judge_identity: Any = None) -> str:
        """What a judge-capable benchmark's grade depends on besides the response."""
        parts = [f"grader={self.mode}", f"score_by={self.score_by}"]
        if self.uses_symbolic:
            parts.append(f"math-verify={version('math-verify')}")
        if self.uses_judge:
            parts.append(f"judge={self.judge_model}|{canonical(judge_identity)}|{canonical(self.judge_sampling)}")
        return ";".join(parts)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"grader": self.mode, "score_by": self.score_by}
        if self.uses_judge:
            d.update(judge_url=self.judge_url, judge_model=self.judge_model, judge_api_key_env=self.judge_api_key_env,
                     judge_sampling=self.judge_sampling)  # fmt: skip
        return d


def agreement(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Agreement of the symbolic grader and the judge over the samples both graded, for ``--grader both``.

    Only parsed answers count (an unparsed answer scores 0 by symbolic without grading, and GSM8K's never reaches the
    judge); samples whose judge request failed are counted apart."""
    both = [r for r in records if r.get("grades") and len(r["grades"]) == 2]
    if not both:
        return None
    compared = []
    judge_failed = 0
    for r in both:
        s, j = r["grades"].get("symbolic"), r["grades"].get("judge")
        if r.get("extracted") is None or s is None or j is None:
            continue
        if j.get("score") is None:
            judge_failed += 1
            continue
        compared.append((r, float(s["score"]), float(j["score"])))
    n = len(compared)
    agree = sum(1 for _, s, j in compared if s == j)
    sym_only = [r for r, s, j in compared if s > j]
    judge_only = [r for r, s, j in compared if j > s]

    def _row(r: dict[str, Any]) -> dict[str, Any]:
        g = r["grades"]
        return {"item_id": r["item_id"], "sample_index": r["sample_index"], "gold": r.get("gold"),
                "extracted": r.get("extracted"), "symbolic": g["symbolic"]["score"], "judge": g["judge"]["score"],
                "symbolic_detail": g["symbolic"].get("detail") or "", "judge_reply": g["judge"].get("reply")}  # fmt: skip

    disagreements = [_row(r) for r in sym_only + judge_only]
    return {
        "compared": n,
        "agree": agree,
        "agreement": agree / n if n else None,
        "symbolic_yes_judge_no": len(sym_only),
        "judge_yes_symbolic_no": len(judge_only),
        "symbolic_correct": sum(s for _, s, _ in compared),
        "judge_correct": sum(j for _, _, j in compared),
        "judge_failed": judge_failed,
        "unparsed_judge_yes": sum(
            1 for r in both if r.get("extracted") is None and (r["grades"].get("judge") or {}).get("score") == 1.0
        ),
        "disagreements": disagreements,
    }
