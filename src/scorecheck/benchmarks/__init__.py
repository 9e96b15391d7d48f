"""Benchmarks: one short declarative module each (data, prompt, extractor, grader).

A benchmark turns data rows into :class:`Item` s (the user prompt and the gold answer), pulls the answer out of the
graded text (``extract``; ``None`` means unparsed) and scores it (``grade``). Grading that may be slow or may hang
(symbolic math) names a module-level function the runner executes in a worker process.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from scorecheck.errors import UsageError

if TYPE_CHECKING:
    from scorecheck.protocols import Profile
    from scorecheck.reasoning import ReasoningFormat

T = TypeVar("T")


@dataclass
class Item:
    id: str
    prompt: str
    gold: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Graded:
    score: float
    grader: str
    detail: str = ""
    info: dict[str, Any] | None = None
    """Structured grading facts kept with the sample (e.g. per-instruction results, an exception type)."""


class Benchmark:
    name: str = ""
    data_keys: tuple[str, ...] = ()
    description: str = ""
    prompt_template: str = ""
    """The protocol's user-prompt template (its sha256 goes into results.json)."""
    worker_grader: Callable[[Item, str], Graded] | None = None
    """A module-level function (picklable) run in a worker process for parsed answers; otherwise ``grade`` runs
    inline. Unparsed answers (``extract`` returned None) always go to ``grade``."""
    judge_capable: bool = False
    """The protocol's LLM equality judge can grade this benchmark (``--grader judge|both``): it is asked whether
    ``item.gold`` and the extracted answer are equivalent; ``worker_grader`` is then the symbolic grader."""
    judge_unparsed: str | None = None
    """What the judge is shown as the answer when extraction found nothing; ``None``: unparsed scores 0 without
    asking the judge (the fork's GSM8K). MATH shows the string ``"None"``, as the fork's template did."""
    aggregate_failed: bool = False
    """``aggregate`` receives every record, failed requests included (``score`` None), instead of graded ones only:
    for evals that grade a failed request as the empty response rather than leave it out (IFEval)."""

    def load(self, profile: str, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        """Items in run order and the sha256 of each data file used."""
        raise NotImplementedError

    def extract(self, text: str) -> str | None:
        raise NotImplementedError

    def grade(self, item: Item, extracted: str | None) -> Graded:
        raise NotImplementedError

    def aggregate(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Extra metrics beyond the mean score (e.g. MMLU's macro average). Records are graded samples.
        A returned ``score`` (with ``ci95``) replaces the plain mean, for evals whose headline is not one."""
        return {}

    def system_prompt(self, name: str, text: str | None, profile: Profile) -> str | None:
        """The system prompt this benchmark sends when the run asks for prompt ``name`` (resolved to ``text``).
        A protocol may use its own copy for one benchmark (the fork's IFEval prompts)."""
        return text

    def reasoning(self, fmt: ReasoningFormat, system_prompt_name: str) -> ReasoningFormat:
        """The reasoning format applied to this benchmark's responses when the run asks for ``fmt``."""
        return fmt


def fork_subset(examples: list[T], limit: int | None) -> list[T]:
    """The fork's subset: ``random.Random(0).sample(examples, n)``; the whole list without a limit."""
    if not limit:
        return examples
    return random.Random(0).sample(examples, min(limit, len(examples)))


def registry() -> dict[str, Benchmark]:
    from scorecheck.benchmarks import gpqa, gsm8k, humaneval, ifeval, math_eval, mmlu

    benches: list[Benchmark] = [mmlu.MMLU(), gpqa.GPQA("main"), gpqa.GPQA("diamond"), gsm8k.GSM8K(), math_eval.MATH(),
                                math_eval.MATH500(), ifeval.IFEval(), humaneval.HumanEval()]  # fmt: skip
    return {b.name: b for b in benches}


ALIASES = {"gpqa": "gpqa_main", "math500": "math_500"}


def get_benchmarks(names: Sequence[str]) -> list[Benchmark]:
    reg = registry()
    out = []
    for raw in names:
        name = ALIASES.get(raw.strip().lower(), raw.strip().lower())
        if name not in reg:
            known = sorted(set(reg) | set(ALIASES))
            raise UsageError(f"unknown eval {raw!r}; known: {', '.join(known)}")
        if reg[name] not in out:
            out.append(reg[name])
    if not out:
        raise UsageError("no evals given; e.g. --evals mmlu,gpqa,gsm8k")
    return out
