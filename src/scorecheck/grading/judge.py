"""The protocol's LLM equality judge (glaive-2024 and simple-evals: ``check_equality`` with gpt-4-turbo-preview).

One user message, no system message: the eval protocol's ``judge_template`` (``EQUALITY_TEMPLATE``)
``% {"expression1": gold, "expression2": answer}``; the
answer is equal iff the reply, lowercased and stripped, is ``"yes"``. A judge request answered with HTTP 400 reads as
the empty reply, i.e. "no" (the fork's sampler returned ``""`` on ``BadRequestError``).

Judge requests are ordinary requests of the run: stored in ``store.sqlite`` under their own request key (judge model,
its ``/v1/models`` identity, messages, judge sampling), so a resumed run or a regrade never asks the same question
twice. Identical questions (same gold, same answer) share one request, even across items.
"""

from __future__ import annotations

from typing import Any

from scorecheck.protocols import DEFAULT_PROFILE


def judge_prompt(gold: str, answer: str, template: str | None = None) -> str:
    """``template`` is the eval protocol's ``judge_template`` [glaive-2024's MATH judge]."""
    template = template or DEFAULT_PROFILE.evals["math"].judge_template or ""
    return template % {"expression1": gold, "expression2": answer}


def judge_messages(gold: str, answer: str, template: str | None = None) -> list[dict[str, str]]:
    return [{"role": "user", "content": judge_prompt(gold, answer, template)}]


def judge_says_yes(reply: str | None) -> bool:
    """The fork's ``response.lower().strip() == "yes"``; a missing reply is ``""``."""
    return (reply or "").lower().strip() == "yes"


def judge_sampling(temperature: float, max_tokens: int) -> dict[str, Any]:
    """The body fields of a judge request besides model and messages (the fork's ChatCompletionSampler defaults;
    no extra body: the fork's checker sent none)."""
    return {"temperature": temperature, "max_tokens": max_tokens}
