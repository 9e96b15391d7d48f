"""IFEval's 25 verifiable instructions, checked strictly and loosely, under two checker semantics.

The behaviour is Google's instruction_following_eval (google-research, ``instructions.py``, ``evaluation_lib.py``);
``glaive-2024`` is the copy in glaive-ai/simple-evals @ 478400f (``ifeval/instructions.py``), which differs in two
checks, both in the direction of passing more responses (../shared/PROTOCOL.md):

- ``combination:repeat_prompt`` always passes (its ``if`` returns True on both branches);
- ``change_case:english_capital`` tests ``value.upper()`` (true for any non-empty text) instead of
  ``value.isupper()``, so any English response passes.

Shared by both, as in Google's current evaluator: a non-letter ``keywords:letter_frequency`` target (``#``, ``!``)
is kept (older copies of Google's code drew a random letter there), and langdetect is seeded
(``DetectorFactory.seed = 0``; the fork never seeded it, which made 95 of 834 instructions non-deterministic).

Rules common to every check:

- strict: the response as it is; an empty (after strip) response follows no instruction;
- loose: the instruction counts as followed when any of 8 variants follows it: the response, the response without
  its first line, without its last line, without both (each stripped), and each of those four with every ``*``
  removed; a variant counts only when it is non-empty after strip;
- a language check that langdetect cannot decide (``LangDetectException``, e.g. no letters) counts as followed.

Sentence counting and word tokenisation use nltk's punkt (``punkt_tab`` since nltk 3.9), looked up in
``$SCORECHECK_DATA_DIR/nltk_data``, then in the cache (``<cache>/nltk_data``); where it is in neither, it is
downloaded once into the cache (:func:`ensure_nltk`). Nothing is loaded or downloaded at import time.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scorecheck.errors import DataError

REFERENCE = "reference"
GLAIVE_2024 = "glaive-2024"
CHECKERS = (REFERENCE, GLAIVE_2024)

LESS_THAN, AT_LEAST = "less than", "at least"
RELATIONS = (LESS_THAN, AT_LEAST)

Kwargs = dict[str, Any]
Check = Callable[[str, Kwargs], bool]


# -- shared resources: nltk punkt and langdetect, set up on first use -------------------------------------------


def _nltk() -> Any:
    """``import nltk`` without letting it import scipy.stats (2-3 s here, for ``fisher_exact`` in nltk.metrics, which
    IFEval never uses): nltk falls back to a stub when scipy.stats cannot be imported."""
    if "nltk" in sys.modules:
        return sys.modules["nltk"]
    block = "scipy.stats" not in sys.modules
    if block:
        sys.modules["scipy.stats"] = None  # type: ignore[assignment]
    try:
        import nltk
    finally:
        if block and sys.modules.get("scipy.stats", 0) is None:
            del sys.modules["scipy.stats"]
    return nltk


@functools.cache
def ensure_nltk() -> None:
    """Make nltk's English ``punkt_tab`` findable: the data dir, then the cache, then one download into the cache."""
    nltk = _nltk()

    from scorecheck import data

    places = []
    data_dir = data.data_dir()
    if data_dir is not None:
        places.append(data_dir / "nltk_data")
    cache = data.cache_dir() / "nltk_data"
    places.append(cache)
    for p in places:
        if str(p) not in nltk.data.path:
            nltk.data.path.append(str(p))
    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return
    except LookupError:
        pass
    ok = False
    try:
        cache.mkdir(parents=True, exist_ok=True)
        ok = bool(nltk.download("punkt_tab", download_dir=str(cache), quiet=True, raise_on_error=True))
    except Exception:  # noqa: BLE001 (no network, a proxy page, a full disk: all the same to the user)
        ok = False
    if ok:
        try:
            nltk.data.find("tokenizers/punkt_tab/english/")
            return
        except LookupError:
            pass
    where = " or ".join(str(p / "tokenizers" / "punkt_tab") for p in places)
    raise DataError(
        f"IFEval needs nltk's punkt_tab tokenizer data and it is not at {where}, and downloading it into the cache "
        "failed; copy nltk_data/tokenizers/punkt_tab from a machine that has it (nltk.download('punkt_tab')) or "
        "set SCORECHECK_DATA_DIR to a data dir that has nltk_data/"
    )


@functools.cache
def _sentence_tokenizer() -> Any:
    ensure_nltk()
    return _nltk().tokenize.PunktTokenizer("english")


def count_sentences(text: str) -> int:
    return len(_sentence_tokenizer().tokenize(text))


def word_tokens(text: str) -> list[str]:
    """nltk's ``word_tokenize`` (punkt sentences, then Treebank words)."""
    ensure_nltk()
    return _nltk().word_tokenize(text)


WORD_RE = re.compile(r"\w+")


def count_words(text: str) -> int:
    """nltk ``RegexpTokenizer(r"\\w+")``: the number of ``\\w+`` runs."""
    return len(WORD_RE.findall(text))


@functools.lru_cache(maxsize=8192)
def detect_language(text: str) -> str | None:
    """langdetect's answer for ``text`` with the detector seeded (deterministic per text, hence cached); None
    when langdetect cannot decide."""
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0
    try:
        return detect(text)
    except LangDetectException:
        return None


# -- the 25 instructions -----------------------------------------------------------------------------------------


def _compare(count: int, relation: str, threshold: int) -> bool:
    if relation == LESS_THAN:
        return count < threshold
    if relation == AT_LEAST:
        return count >= threshold
    raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")


def _relation(kw: Kwargs, key: str) -> str:
    rel = kw[key]
    if rel not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {rel!r}")
    return rel


def response_language(value: str, kw: Kwargs) -> bool:
    lang = detect_language(value)
    return True if lang is None else lang == kw["language"]


def number_sentences(value: str, kw: Kwargs) -> bool:
    return _compare(count_sentences(value), _relation(kw, "relation"), kw["num_sentences"])


def number_placeholders(value: str, kw: Kwargs) -> bool:
    return len(re.findall(r"\[.*?\]", value)) >= kw["num_placeholders"]


STAR_BULLET = re.compile(r"^\s*\*[^\*].*$", re.MULTILINE)
DASH_BULLET = re.compile(r"^\s*-.*$", re.MULTILINE)


def number_bullet_lists(value: str, kw: Kwargs) -> bool:
    return len(STAR_BULLET.findall(value)) + len(DASH_BULLET.findall(value)) == kw["num_bullets"]


CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def constrained_response(value: str, kw: Kwargs) -> bool:
    v = value.strip()
    return any(opt in v for opt in CONSTRAINED_OPTIONS)


SINGLE_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")


def number_highlighted_sections(value: str, kw: Kwargs) -> bool:
    n = sum(1 for h in SINGLE_HIGHLIGHT.findall(value) if h.strip("*").strip())
    n += sum(1 for h in DOUBLE_HIGHLIGHT.findall(value) if h[2:-2].strip())
    return n >= kw["num_highlights"]


def multiple_sections(value: str, kw: Kwargs) -> bool:
    splitter = kw["section_spliter"].strip()  # the data's spelling of "splitter"
    parts = re.split(r"\s?" + splitter + r"\s?\d+\s?", value)
    return len(parts) - 1 >= kw["num_sections"]


def number_paragraphs(value: str, kw: Kwargs) -> bool:
    """Paragraphs separated by ``***``: empty pieces at either end are not paragraphs, an empty one inside fails."""
    parts = re.split(r"\s?\*\*\*\s?", value)
    count = len(parts)
    for i, p in enumerate(parts):
        if not p.strip():
            if i in (0, len(parts) - 1):
                count -= 1
            else:
                return False
    return count == kw["num_paragraphs"]


def postscript(value: str, kw: Kwargs) -> bool:
    marker = kw["postscript_marker"].strip()
    if marker == "P.P.S":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "P.S.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + marker.lower() + r".*$"
    return bool(re.findall(pattern, value.lower(), flags=re.MULTILINE))


def keyword_existence(value: str, kw: Kwargs) -> bool:
    return all(re.search(k, value, flags=re.IGNORECASE) for k in kw["keywords"])


def keyword_frequency(value: str, kw: Kwargs) -> bool:
    n = len(re.findall(kw["keyword"].strip(), value, flags=re.IGNORECASE))
    return _compare(n, _relation(kw, "relation"), kw["frequency"])


def number_words(value: str, kw: Kwargs) -> bool:
    return _compare(count_words(value), _relation(kw, "relation"), kw["num_words"])


def json_format(value: str, kw: Kwargs) -> bool:
    v = value.strip()
    for prefix in ("```json", "```Json", "```JSON", "```"):
        v = v.removeprefix(prefix)
    v = v.removesuffix("```").strip()
    try:
        json.loads(v)
    except ValueError:
        return False
    return True


FIRST_WORD_STOP = frozenset(".,?!'\"")


def nth_paragraph_first_word(value: str, kw: Kwargs) -> bool:
    """Paragraphs separated by blank lines: the count of non-empty ones must match, and paragraph ``nth`` (counted
    in the raw split, empty pieces included) must start with ``first_word`` (case-insensitive, up to punctuation)."""
    num, nth, want = kw["num_paragraphs"], kw["nth_paragraph"], kw["first_word"].lower()
    if nth <= 0 or nth > num:
        raise ValueError(f"nth_paragraph {nth} outside 1..{num}")
    parts = re.split(r"\n\n", value)
    count = sum(1 for p in parts if p.strip())
    if nth > count:
        return False
    para = parts[nth - 1].strip()
    if not para:
        return False
    word = para.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for ch in word:
        if ch in FIRST_WORD_STOP:
            break
        first += ch.lower()
    return count == num and first == want


def forbidden_words(value: str, kw: Kwargs) -> bool:
    return not any(re.search(r"\b" + w + r"\b", value, flags=re.IGNORECASE) for w in set(kw["forbidden_words"]))


def two_responses(value: str, kw: Kwargs) -> bool:
    parts = value.split("******")
    kept = []
    for i, p in enumerate(parts):
        if p.strip():
            kept.append(p)
        elif i not in (0, len(parts) - 1):
            return False
    return len(kept) == 2 and kept[0].strip() != kept[1].strip()


def repeat_prompt(value: str, kw: Kwargs) -> bool:
    return value.strip().lower().startswith(kw["prompt_to_repeat"].strip().lower())


def end_checker(value: str, kw: Kwargs) -> bool:
    return value.strip().strip('"').lower().endswith(kw["end_phrase"].strip().lower())


TITLE = re.compile(r"<<[^\n]+>>")


def title(value: str, kw: Kwargs) -> bool:
    return any(t.lstrip("<").rstrip(">").strip() for t in TITLE.findall(value))


def letter_frequency(value: str, kw: Kwargs) -> bool:
    """The target is kept as given, a non-letter (``#``, ``!``) included, as Google's current code does."""
    letter = kw["letter"].strip().lower()
    rel = _relation(kw, "let_relation")
    n = Counter(value.lower())[letter]
    return n < kw["let_frequency"] if rel == LESS_THAN else n >= kw["let_frequency"]


def _english_and(case_ok: bool, value: str) -> bool:
    if not case_ok:
        return False
    lang = detect_language(value)
    return True if lang is None else lang == "en"


def english_capital(value: str, kw: Kwargs) -> bool:
    return _english_and(value.isupper(), value)


def english_lowercase(value: str, kw: Kwargs) -> bool:
    return _english_and(value.islower(), value)


def no_comma(value: str, kw: Kwargs) -> bool:
    return "," not in value


def capital_word_frequency(value: str, kw: Kwargs) -> bool:
    n = sum(1 for w in word_tokens(value) if w.isupper())
    rel = _relation(kw, "capital_relation")
    return n < kw["capital_frequency"] if rel == LESS_THAN else n >= kw["capital_frequency"]


def quotation(value: str, kw: Kwargs) -> bool:
    v = value.strip()
    return len(v) > 1 and v[0] == '"' and v[-1] == '"'


# The fork's two changes.
def repeat_prompt_glaive(value: str, kw: Kwargs) -> bool:
    """glaive-2024: passes whatever the response (both branches of the fork's check return True)."""
    return True


def english_capital_glaive(value: str, kw: Kwargs) -> bool:
    """glaive-2024: ``value.upper()`` (truthy for any non-empty text) instead of ``value.isupper()``."""
    return _english_and(bool(value.upper()), value)


REFERENCE_CHECKS: dict[str, Check] = {
    "keywords:existence": keyword_existence,
    "keywords:frequency": keyword_frequency,
    "keywords:forbidden_words": forbidden_words,
    "keywords:letter_frequency": letter_frequency,
    "language:response_language": response_language,
    "length_constraints:number_sentences": number_sentences,
    "length_constraints:number_paragraphs": number_paragraphs,
    "length_constraints:number_words": number_words,
    "length_constraints:nth_paragraph_first_word": nth_paragraph_first_word,
    "detectable_content:number_placeholders": number_placeholders,
    "detectable_content:postscript": postscript,
    "detectable_format:number_bullet_lists": number_bullet_lists,
    "detectable_format:constrained_response": constrained_response,
    "detectable_format:number_highlighted_sections": number_highlighted_sections,
    "detectable_format:multiple_sections": multiple_sections,
    "detectable_format:json_format": json_format,
    "detectable_format:title": title,
    "combination:two_responses": two_responses,
    "combination:repeat_prompt": repeat_prompt,
    "startend:end_checker": end_checker,
    "startend:quotation": quotation,
    "change_case:capital_word_frequency": capital_word_frequency,
    "change_case:english_capital": english_capital,
    "change_case:english_lowercase": english_lowercase,
    "punctuation:no_comma": no_comma,
}

GLAIVE_OVERRIDES: dict[str, Check] = {
    "combination:repeat_prompt": repeat_prompt_glaive,
    "change_case:english_capital": english_capital_glaive,
}

CHECKS: dict[str, dict[str, Check]] = {
    REFERENCE: REFERENCE_CHECKS,
    GLAIVE_2024: {**REFERENCE_CHECKS, **GLAIVE_OVERRIDES},
}


def get_check(instruction_id: str, checker: str = REFERENCE) -> Check:
    try:
        table = CHECKS[checker]
    except KeyError:
        raise ValueError(f"unknown IFEval checker {checker!r}; known: {', '.join(CHECKS)}") from None
    try:
        return table[instruction_id]
    except KeyError:
        raise ValueError(f"unknown IFEval instruction {instruction_id!r}") from None


def loose_variants(response: str) -> list[str]:
    """The 8 texts the loose score tries: the response, without its first/last/both lines, each also without ``*``."""
    lines = response.split("\n")
    no_first = "\n".join(lines[1:]).strip()
    no_last = "\n".join(lines[:-1]).strip()
    no_both = "\n".join(lines[1:-1]).strip()
    bases = [response, no_first, no_last, no_both]
    return bases + [b.replace("*", "") for b in bases]


def follows(check: Check, text: str, kw: Kwargs) -> bool:
    """One instruction on one text: an empty (after strip) text follows nothing."""
    return bool(text.strip()) and bool(check(text, kw))


@dataclass(frozen=True)
class PromptResult:
    strict: list[bool]
    loose: list[bool]

    @property
    def strict_all(self) -> bool:
        return all(self.strict)

    @property
    def loose_all(self) -> bool:
        return all(self.loose)

    def as_dict(self) -> dict[str, list[bool]]:
        return {"strict": self.strict, "loose": self.loose}


def check_prompt(instruction_ids: Sequence[str], kwargs: Sequence[Kwargs], response: str,
                 checkers: Sequence[str] = CHECKERS) -> dict[str, PromptResult]:  # fmt: skip
    """Each checker's strict and loose results for every instruction of one prompt."""
    if len(instruction_ids) != len(kwargs):
        raise ValueError(f"{len(instruction_ids)} instructions but {len(kwargs)} kwargs")
    variants = loose_variants(response)
    out = {}
    memo: dict[tuple[Check, int], tuple[bool, bool]] = {}
    for checker in checkers:
        strict, loose = [], []
        for i, (iid, kw) in enumerate(zip(instruction_ids, kwargs, strict=True)):
            check = get_check(iid, checker)
            key = (check, i)
            if key not in memo:
                s = follows(check, response, kw or {})
                lo = s or any(follows(check, v, kw or {}) for v in variants[1:])
                memo[key] = (s, lo)
            s, lo = memo[key]
            strict.append(s)
            loose.append(lo)
        out[checker] = PromptResult(strict, loose)
    return out


def scores(results: Sequence[PromptResult]) -> dict[str, float | None]:
    """The four IFEval numbers and their mean over graded prompts."""
    if not results:
        return {"prompt_strict": None, "instruction_strict": None, "prompt_loose": None, "instruction_loose": None,
                "mean": None}  # fmt: skip
    n_prompts = len(results)
    n_instr = sum(len(r.strict) for r in results)
    out: dict[str, float | None] = {
        "prompt_strict": sum(r.strict_all for r in results) / n_prompts,
        "instruction_strict": sum(sum(r.strict) for r in results) / n_instr if n_instr else None,
        "prompt_loose": sum(r.loose_all for r in results) / n_prompts,
        "instruction_loose": sum(sum(r.loose) for r in results) / n_instr if n_instr else None,
    }
    parts = [v for v in out.values() if v is not None]
    out["mean"] = sum(parts) / len(parts) if len(parts) == 4 else None
    return out
