"""The protocol type: what a profile fixes for each eval it defines, as data every stage of a run reads.

A :class:`Profile` is a named protocol (``glaive-2024``, ``simple-evals``, ``reference``): its sampling, its HTTP-400
rule, its judge, its named system prompts and, per eval it defines, an :class:`EvalProtocol`: data and subset rule,
user-prompt template, answer extraction, reasoning post-processing and its default, grader, repeats and samples,
how the headline aggregates, and where each fact comes from. Benchmarks (``scorecheck.benchmarks``) are code
parameterised by an ``EvalProtocol``; a new protocol is a new data module here (see docs/protocols.md).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from scorecheck.errors import UsageError

Replacements = tuple[tuple[str, str], ...]


def sha256_text(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


class FrozenMap(Mapping[str, Any]):
    """A read-only mapping that pickles (``types.MappingProxyType`` does not): benchmark objects, which hold their
    protocol, go to the grading pool's worker processes (IFEval's checkers run there, out of the main process)."""

    __slots__ = ("_d",)

    def __init__(self, d: Mapping[str, Any] | None = None) -> None:
        self._d = dict(d or {})

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (self._d,))


def _frozen(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return FrozenMap(d)


def replace_all(text: str, pairs: Replacements) -> str:
    """``text.replace(a, b)`` for each pair in order (how simple-evals writes its normalisers)."""
    for a, b in pairs:
        text = text.replace(a, b)
    return text


@dataclass(frozen=True)
class Extraction:
    """How the answer is pulled out of the graded text (after the reasoning split)."""

    patterns: tuple[str, ...]
    """Regexes tried in order; the first one that matches gives the answer (its group 1)."""
    match: Literal["first", "last"] = "first"
    """Which match of a pattern is taken."""
    dotall: bool = False
    normalize_response: Replacements = ()
    """Replacements applied to the response before matching (simple-evals' ``normalize_response``)."""
    normalize_answer: Replacements = ()
    """Replacements applied to the matched text (simple-evals' ``normalize_extracted_answer``, GSM8K's ``%``)."""
    strip_answer: bool = False
    no_match: Literal["unparsed", "whole-response"] = "unparsed"
    """No pattern matched: the answer is unparsed (``None``), or the whole (normalised) response."""
    cut_before: str | None = None
    """Keep ``answer[answer.find(cut_before) + 2:]`` (simple-evals HumanEval's signature stripping, found or not)."""

    def apply(self, text: str) -> str | None:
        text = replace_all(text, self.normalize_response)
        flags = re.DOTALL if self.dotall else 0
        answer: str | None = None
        for pattern in self.patterns:
            if self.match == "first":
                m = re.search(pattern, text, flags)
                if m:
                    answer = m.group(1)
                    break
            else:
                found = re.findall(pattern, text, flags)
                if found:
                    answer = found[-1]
                    break
        if answer is None:
            if self.no_match == "unparsed":
                return None
            answer = text
        answer = replace_all(answer, self.normalize_answer)
        if self.strip_answer:
            answer = answer.strip()
        if self.cut_before is not None:
            # str.find gives -1 when absent, so upstream then drops the first character: kept as upstream does it.
            answer = answer[answer.find(self.cut_before) + 2 :]
        return answer

    def describe(self) -> dict[str, Any]:
        return {
            "patterns": list(self.patterns),
            "match": self.match + (" (DOTALL)" if self.dotall else ""),
            "normalize_response": [list(p) for p in self.normalize_response],
            "normalize_answer": [list(p) for p in self.normalize_answer] + (["strip"] if self.strip_answer else []),
            "no_match": self.no_match,
            "cut_signature": None if self.cut_before is None else f"answer[answer.find({self.cut_before!r}) + 2:]",
        }


@dataclass(frozen=True)
class EvalProtocol:
    """Everything a profile fixes for one eval."""

    eval: str
    source: str
    """Where the facts come from: repo @ commit, files."""
    data_key: str
    """The data file (``scorecheck.data.FILES`` key)."""
    subset: str
    """The ``--limit`` rule, in words (the code is the benchmark's)."""
    user_template: str
    """``str.format`` template of the user message."""
    extraction: Extraction
    grader: str
    """Named grading rule: exact-letter, math-equality, humaneval-exec, ifeval-reference, ifeval-glaive-2024."""
    reasoning_default: str = "none"
    """The reasoning format applied when the run gives no ``--reasoning``."""
    reflection_variant: str = "reflection"
    """What ``reflection`` means for this eval (the fork's IFEval used its own expression)."""
    reflection_prompts: tuple[str, ...] = ()
    """When non-empty: ``reflection`` applies only with one of these system prompts, else ``none``."""
    system_prompts: Mapping[str, str] = field(default_factory=dict)
    """Per-eval copies of the profile's named system prompts (the fork's IFEval prompts)."""
    repeats: int = 1
    """Times the upstream runner repeats the example list (without ``--limit``); 1 with a subset."""
    samples: int = 1
    """Samples per item (HumanEval's pass@k); multiplied by ``repeats`` where repeats are the same prompt."""
    pass_ks: tuple[int, ...] = ()
    """pass@k reported (HumanEval); empty: every k up to the samples drawn."""
    exec_timeout_s: float | None = None
    """Execution timeout of a generated program (HumanEval)."""
    judge_template: str | None = None
    """The equality judge's template (``%(expression1)s`` gold, ``%(expression2)s`` answer); None: no judge."""
    judge_unparsed: str | None = None
    """What the judge is shown when nothing was extracted; None: unparsed scores 0 without the judge."""
    aggregate: str = "mean over samples"
    byte_verified: bool = True
    """False when scorecheck cannot show its requests equal the upstream's (e.g. a different copy of the data)."""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "system_prompts", _frozen(self.system_prompts))

    def strings(self) -> dict[str, str]:
        """Every protocol string this eval uses, by name (their sha256 go into results.json)."""
        out = {"user_template": self.user_template}
        for i, p in enumerate(self.extraction.patterns):
            out[f"pattern[{i}]"] = p
        for name, text in self.system_prompts.items():
            out[f"system:{name}"] = text
        if self.judge_template is not None:
            out["judge_template"] = self.judge_template
        return out

    def strings_sha256(self) -> dict[str, str]:
        return {k: sha256_text(v) for k, v in self.strings().items()}

    def fingerprint(self) -> str:
        """Changes when anything that decides a stored response's grade changes (part of the grade key)."""
        parts = [self.eval, self.grader, repr(self.extraction), self.judge_template or "", str(self.pass_ks)]
        return sha256_text("\n".join(parts))[:16]

    def reasoning_rule(self) -> str:
        rule = f"default {self.reasoning_default}"
        if self.reflection_variant != "reflection" or self.reflection_prompts:
            rule += f"; reflection means {self.reflection_variant}"
            if self.reflection_prompts:
                rule += f" with system prompt {' or '.join(self.reflection_prompts)}, else none"
        return rule


@dataclass(frozen=True)
class Profile:
    name: str
    reference: str
    system_prompts: Mapping[str, str]
    """Named system prompts usable as ``--system-prompt NAME``."""
    temperature: float
    max_tokens: int
    extra_body: dict[str, Any] = field(default_factory=dict)
    http_400_text: str = ""
    """The text a request answered with HTTP 400 is graded as (glaive-2024: the empty response)."""
    default_evals: tuple[str, ...] = ()
    grader: str = "symbolic"
    """The grader that scores ``--grader both`` runs unless ``--score-by`` says otherwise (see grading/plan.py)."""
    judge_model: str | None = None
    """The protocol's LLM equality judge (``--grader judge|both``), its sampling, and the benchmarks it graded."""
    judge_temperature: float = 0.5
    judge_max_tokens: int = 1024
    evals: Mapping[str, EvalProtocol] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    """Eval names this profile's runner uses for its own evals (simple-evals' ``gpqa`` is diamond)."""
    description: str = ""
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("system_prompts", "evals", "aliases"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "extra_body", dict(self.extra_body))  # a copy; a plain dict, as JSON serialises it

    @property
    def http_400_is_empty_answer(self) -> bool:
        """A request answered with HTTP 400 is graded as the empty response (the fork's BadRequestError branch)."""
        return self.http_400_text == ""

    def prompt_hashes(self) -> dict[str, str]:
        return {k: sha256_text(v) for k, v in self.system_prompts.items()}

    def canonical_eval(self, raw: str) -> str:
        name = raw.strip().lower()
        return self.aliases.get(name, name)

    def eval_protocol(self, raw: str, profiles: Mapping[str, Profile]) -> EvalProtocol:
        """The eval's protocol under this profile; an eval it does not define is a one-line error naming those
        that do."""
        name = self.canonical_eval(raw)
        if name in self.evals:
            return self.evals[name]
        by = [p.name for p in profiles.values() if p.canonical_eval(raw) in p.evals]
        if by:
            raise UsageError(f"protocol {self.name} does not define eval {raw!r}; it is defined by "
                             f"{', '.join(by)} (--protocol); {self.name} defines {', '.join(self.evals)}")  # fmt: skip
        known = sorted({e for p in profiles.values() for e in p.evals})
        raise UsageError(
            f"unknown eval {raw!r}; known: {', '.join(known)} (scorecheck protocols lists who defines what)"
        )
