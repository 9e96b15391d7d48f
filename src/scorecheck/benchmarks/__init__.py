"""Benchmarks: one short module each (data, prompt, extractor, grader), parameterised by the protocol.

A benchmark is built for one eval's :class:`~scorecheck.protocols.EvalProtocol` (``spec``) and holds no other state:
it turns data rows into :class:`Item` s (the user prompt and the gold answer) as the protocol says, pulls the answer
out of the graded text (``extract``; ``None`` means unparsed) and scores it (``grade``). Grading that may be slow or
may hang (symbolic math) names a module-level function the runner executes in a worker process.
``registry(profile)`` builds the benchmarks a profile defines; a benchmark built without a spec uses glaive-2024's.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from scorecheck.errors import UsageError
from scorecheck.protocols import DEFAULT_PROFILE, PROFILES, EvalProtocol, Profile, eval_protocol
from scorecheck.reasoning import parse_format

if TYPE_CHECKING:
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
    worker_grader: Callable[[Item, str], Graded] | None = None
    """A module-level function (picklable) run in a worker process for parsed answers; otherwise ``grade`` runs
    inline. Unparsed answers (``extract`` returned None) always go to ``grade``."""
    judge_capable: bool = False
    """The protocol's LLM equality judge can grade this benchmark (``--grader judge|both``): it is asked whether
    ``item.gold`` and the extracted answer are equivalent; ``worker_grader`` is then the symbolic grader."""
    interval_cluster: str | None = None
    """The ``meta`` key of items that are not independent for the headline's interval (MMLU: its subject); None: an
    item's samples (its repeats) are the cluster."""

    def __init__(self, spec: EvalProtocol | None = None) -> None:
        self.spec: EvalProtocol = spec or DEFAULT_PROFILE.evals[self.name]
        if self.spec.eval != self.name:
            raise ValueError(f"{type(self).__name__} given the protocol of {self.spec.eval}")

    @property
    def prompt_template(self) -> str:
        """The protocol's user-prompt template (its sha256 goes into results.json)."""
        return self.spec.user_template

    @property
    def judge_unparsed(self) -> str | None:
        """What the judge is shown as the answer when extraction found nothing; ``None``: unparsed scores 0 without
        asking the judge (the fork's GSM8K). MATH shows the string ``"None"``, as the fork's template did."""
        return self.spec.judge_unparsed

    def load(self, limit: int | None) -> tuple[list[Item], dict[str, str]]:
        """Items in run order and the sha256 of each data file used."""
        raise NotImplementedError

    def default_samples(self, limit: int | None) -> int:
        """Requests per item when the run does not say: the protocol's samples, times its repeats where a repeat is
        the same prompt again (none with a subset, as upstream allows)."""
        return self.spec.samples * (1 if limit else self.spec.repeats)

    def extract(self, text: str) -> str | None:
        return self.spec.extraction.apply(text)

    def grade(self, item: Item, extracted: str | None) -> Graded:
        raise NotImplementedError

    def aggregate(self, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Extra metrics beyond the mean score (e.g. MMLU's macro average). Records are graded samples.
        A returned ``score`` (with ``ci95``) replaces the plain mean, for evals whose headline is not one."""
        return {}

    def system_prompt(self, name: str, text: str | None) -> str | None:
        """The system prompt this benchmark sends when the run asks for prompt ``name`` (resolved to ``text``).
        A protocol may use its own copy for one benchmark (the fork's IFEval prompts)."""
        return self.spec.system_prompts.get(name, text)

    def reasoning(self, fmt: ReasoningFormat | None, system_prompt_name: str) -> ReasoningFormat:
        """The reasoning format applied to this benchmark's responses when the run asks for ``fmt`` (None: the
        protocol's default). What ``reflection`` means, and with which system prompts, is the protocol's."""
        fmt = fmt or parse_format(self.spec.reasoning_default)
        if fmt.name != "reflection":
            return fmt
        if self.spec.reflection_prompts and system_prompt_name not in self.spec.reflection_prompts:
            return parse_format("none")
        return parse_format(self.spec.reflection_variant)


def fork_subset(examples: list[T], limit: int | None) -> list[T]:
    """The fork's subset: ``random.Random(0).sample(examples, n)``; the whole list without a limit."""
    if not limit:
        return examples
    return random.Random(0).sample(examples, min(limit, len(examples)))


def _classes() -> dict[str, Callable[[EvalProtocol], Benchmark]]:
    from scorecheck.benchmarks import gpqa, gsm8k, humaneval, ifeval, math_eval, mmlu

    return {"mmlu": mmlu.MMLU, "gpqa_main": gpqa.GPQA.of, "gpqa_diamond": gpqa.GPQA.of, "gsm8k": gsm8k.GSM8K,
            "math": math_eval.MATH, "math_500": math_eval.MATH500, "ifeval": ifeval.IFEval,
            "humaneval": humaneval.HumanEval}  # fmt: skip


def registry(profile: Profile | None = None) -> dict[str, Benchmark]:
    """The benchmarks ``profile`` defines (glaive-2024's by default), each built for its protocol."""
    prof = profile or DEFAULT_PROFILE
    classes = _classes()
    return {name: classes[name](spec) for name, spec in prof.evals.items()}


ALIASES = dict(DEFAULT_PROFILE.aliases)
"""glaive-2024's aliases (each profile has its own: ``Profile.aliases``)."""


def known_evals() -> list[str]:
    return sorted({e for p in PROFILES.values() for e in (*p.evals, *p.aliases)})


def get_benchmarks(names: Sequence[str], profile: Profile | None = None) -> list[Benchmark]:
    """The benchmarks named, as ``profile`` (glaive-2024 by default) defines them; an eval the profile does not
    define is a one-line error naming the profiles that do."""
    prof = profile or DEFAULT_PROFILE
    classes = _classes()
    out: list[Benchmark] = []
    for raw in names:
        spec = eval_protocol(prof, raw)
        if all(b.name != spec.eval for b in out):
            out.append(classes[spec.eval](spec))
    if not out:
        raise UsageError("no evals given; e.g. --evals mmlu,gpqa,gsm8k")
    return out
