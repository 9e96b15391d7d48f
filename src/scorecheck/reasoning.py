"""Reasoning formats: split a response into the part that is graded and the reasoning before it.

This stage runs after the request and before answer extraction; it knows nothing of benchmarks. Each format
returns the graded text, the reasoning it set aside (for the transcript) and whether the expected tag was missing.

- ``reflection``: the glaive fork's expression, applied to every response of every column under glaive-2024:
  ``s.split("<output>")[1].split("</output>")[0]``; no ``<output>`` -> the whole response (tag missing).
- ``reflection-ifeval``: the fork's IFEval variant: ``s.split("<output>")[1].replace("</output>", "").strip()``.
- ``think``: ``<think>...</think>``: the text after the last ``</think>``; an unclosed ``<think>`` -> empty answer;
  a ``</think>`` without an opening tag (templates that open the block in the prompt) is handled the same way.
- ``reasoning-field``: the answer is ``content``; the reasoning is the response's ``reasoning`` field (vLLM >= 0.10)
  or ``reasoning_content`` (older vLLM, DeepSeek, llama.cpp).
- ``tags:OPEN,CLOSE``: user-given reasoning tags, handled like ``think``.
- ``none``: the whole response is graded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scorecheck.errors import UsageError

FORMATS = ("none", "reflection", "reflection-ifeval", "think", "reasoning-field", "tags:OPEN,CLOSE")


@dataclass(frozen=True)
class Split:
    answer: str
    reasoning: str | None
    missing_tag: bool


@dataclass(frozen=True)
class ReasoningFormat:
    name: str
    open_tag: str = ""
    close_tag: str = ""

    def apply(self, content: str | None, message: dict[str, Any] | None = None) -> Split:
        s = content or ""
        if self.name == "none":
            return Split(s, None, False)
        if self.name == "reflection":
            if "<output>" not in s:
                return Split(s, None, True)
            head, rest = s.split("<output>", 1)
            return Split(rest.split("<output>")[0].split("</output>")[0], head, False)
        if self.name == "reflection-ifeval":
            if "<output>" not in s:
                return Split(s, None, True)
            parts = s.split("<output>")
            return Split(parts[1].replace("</output>", "").strip(), parts[0], False)
        if self.name == "reasoning-field":
            msg = message or {}
            r = msg.get("reasoning") or msg.get("reasoning_content")
            return Split(s, r, not r)
        # think and user tags
        if self.close_tag in s:
            head, answer = s.rsplit(self.close_tag, 1)
            if head.startswith(self.open_tag):
                head = head[len(self.open_tag) :]
            return Split(answer.strip(), head, False)
        if self.open_tag in s:  # unclosed block: the model never reached its answer
            return Split("", s, False)
        return Split(s, None, True)

    def __str__(self) -> str:
        if self.name == "tags":
            return f"tags:{self.open_tag},{self.close_tag}"
        return self.name


def parse_format(spec: str) -> ReasoningFormat:
    spec = spec.strip()
    if spec in ("none", "reflection", "reflection-ifeval", "reasoning-field"):
        return ReasoningFormat(spec)
    if spec == "think":
        return ReasoningFormat("think", "<think>", "</think>")
    if spec.startswith("tags:"):
        body = spec[len("tags:") :]
        if body.count(",") != 1 or not all(p.strip() for p in body.split(",")):
            raise UsageError(f"reasoning format {spec!r}: expected tags:OPEN,CLOSE, e.g. tags:<reasoning>,</reasoning>")
        o, c = (p.strip() for p in body.split(","))
        return ReasoningFormat("tags", o, c)
    raise UsageError(f"unknown reasoning format {spec!r}; known: {', '.join(FORMATS)}")
