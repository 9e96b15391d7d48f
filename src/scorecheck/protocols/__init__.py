"""Protocol profiles: which prompts, sampling and grading rules a run reproduces.

A profile is the named set of facts that makes a score comparable to a published one. Each profile's strings
live in one module of this package (``glaive_2024.py``), with their source cited there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from scorecheck.errors import UsageError
from scorecheck.protocols import glaive_2024


@dataclass(frozen=True)
class Profile:
    name: str
    reference: str
    system_prompts: dict[str, str]
    """Named system prompts usable as ``--system-prompt NAME``."""
    temperature: float
    max_tokens: int
    extra_body: dict[str, Any] = field(default_factory=dict)
    http_400_is_empty_answer: bool = True
    """A request answered with HTTP 400 is graded as the empty response (the fork's BadRequestError branch)."""
    default_evals: tuple[str, ...] = ()
    grader: str = "symbolic"
    """The grader that scores ``--grader both`` runs unless ``--score-by`` says otherwise (see grading/plan.py)."""
    judge_model: str | None = None
    """The protocol's LLM equality judge (``--grader judge|both``), its sampling, and the benchmarks it graded."""
    judge_temperature: float = 0.5
    judge_max_tokens: int = 1024

    def prompt_hashes(self) -> dict[str, str]:
        return {k: hashlib.sha256(v.encode()).hexdigest() for k, v in self.system_prompts.items()}


GLAIVE_2024 = Profile(
    name="glaive-2024",
    reference="glaive-ai/simple-evals @ 478400f",
    system_prompts={
        "reflection": glaive_2024.SYSTEM_REFLECTION,
        "default": glaive_2024.SYSTEM_DEFAULT,
        "reflection-ifeval": glaive_2024.SYSTEM_REFLECTION_IFEVAL,
        "default-ifeval": glaive_2024.SYSTEM_DEFAULT_IFEVAL,
    },
    temperature=glaive_2024.TEMPERATURE,
    max_tokens=glaive_2024.MAX_TOKENS,
    extra_body=dict(glaive_2024.EXTRA_BODY),
    default_evals=("mmlu", "gpqa", "gsm8k"),
    judge_model=glaive_2024.JUDGE_MODEL,
    judge_temperature=glaive_2024.JUDGE_TEMPERATURE,
    judge_max_tokens=glaive_2024.JUDGE_MAX_TOKENS,
)

REFERENCE = Profile(
    name="reference",
    reference="the benchmarks' own reference scorers (google-research instruction_following_eval for IFEval)",
    system_prompts={},
    # The reference scorers prescribe no sampling; greedy with the glaive budget keeps runs comparable, and no
    # vLLM-only extra body.
    temperature=glaive_2024.TEMPERATURE,
    max_tokens=glaive_2024.MAX_TOKENS,
    default_evals=("ifeval",),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (GLAIVE_2024, REFERENCE)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROFILES))}") from None
