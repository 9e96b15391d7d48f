"""Benchmarks: one short declarative module each (data, prompt, extractor, grader).

A benchmark turns data rows into :class:`Item` s (the user prompt and the gold answer), pulls the answer out of the
graded text (``extract``; ``None`` means unparsed) and scores it (``grade``). Grading that may be slow or may hang
(symbolic math) names a module-level function the runner executes in a worker process.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from scorecheck.errors import UsageError

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


class Benchmark:
    name: str = ""
    data_keys: tuple[str, ...] = ()
    description: str = ""
    prompt_template: str = ""
    """The protocol's user-prompt template (its sha256 goes into results.json)."""
    worker_grader: Callable[[str, str], Graded] | None = None
    """A module-level function (picklable) run in a worker process; otherwise ``grade`` runs inline."""

    def load(self, profile: str, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        """Items in run order and the sha256 of each data file used."""
        raise NotImplementedError

    def extract(self, text: str) -> str | None:
        raise NotImplementedError

    def grade(self, item: Item, extracted: str | None) -> Graded:
        raise NotImplementedError

    def aggregate(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Extra metrics beyond the mean score (e.g. MMLU's macro average). Records are graded samples."""
        return {}


def fork_subset(examples: list[T], limit: int | None) -> list[T]:
    """The fork's subset: ``random.Random(0).sample(examples, n)``; the whole list without a limit."""
    if not limit:
        return examples
    return random.Random(0).sample(examples, min(limit, len(examples)))


def registry() -> dict[str, Benchmark]:
    from scorecheck.benchmarks import gpqa, gsm8k, mmlu

    benches: list[Benchmark] = [mmlu.MMLU(), gpqa.GPQA("main"), gpqa.GPQA("diamond"), gsm8k.GSM8K()]
    return {b.name: b for b in benches}


ALIASES = {"gpqa": "gpqa_main"}


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
