"""Symbolic equality with math-verify, deterministic and free: scorecheck's default grader for GSM8K and MATH.

math-verify's timeouts use ``signal.alarm``, which only works in a process's main thread (called from another
thread it raises ``ValueError``, which a careless caller turns into a silent zero). The runner therefore calls
:func:`symbolic_equal` in a worker process, whose tasks run on its main thread; scripts may call it on their main
thread. Called from any other thread it raises :class:`RuntimeError` instead of grading without a timeout.

Before either side is parsed, the answer is normalised (:func:`normalise`: markdown, trailing punctuation, ``\\$``,
thousands separators, fullwidth digits, ``\\text{}`` wrappers, ``∞``, number words up to twenty; the gold gets the
thousands-separator rule only), and an answer with several numbers between words (``50 of 18``) scores 0
(:func:`several_numbers`). Every rule, with examples and what it leaves alone: docs/graders.md.

How the two sides are parsed:
- GSM8K (``latex_gold=False``): gold and answer as math-verify's defaults parse them (LaTeX, then plain expression).
- MATH (``latex_gold=True``): the gold answer is the content of the solution's ``\\boxed{}``, so it is parsed as
  ``\\boxed{gold}``. The extracted answer (the rest of the ``Answer:`` line) is parsed as written when it carries
  its own math delimiters (``$``, ``\\(``, ``\\[``, ``\\boxed``), else as LaTeX between ``$ $`` (``\\frac{1}{2}``,
  ``2, 3``), falling back to math-verify's defaults when that finds nothing.
- MATH answers in another base (gold ``443_5``, ``4210_{7}``): math-verify reads the subscript away, so ``443_6``
  would match ``443_5``. These are compared as digits and base instead: the digits must be equal, and the base too
  when the answer writes one (``443`` alone is accepted, as the protocol's judge gives units the benefit of the doubt).

Known false positive left in math-verify 0.9.0: an unbraced ``\\frac \\pi4`` is mangled while parsing, and the
expression can then reduce to a fragment that matches a different answer (bench/math_grading.py found one in 5,000).
"""

from __future__ import annotations

import re
import threading
from importlib.metadata import version

from scorecheck.benchmarks import Graded

TIMEOUT_S = 5
"""Per parse and per comparison, as math-verify applies them (signal.alarm)."""

_DELIMITERS = ("$", "\\(", "\\[", "\\boxed")
_BASE_GOLD = re.compile(r"^\s*(-?[0-9A-Za-z]*\.?[0-9A-Za-z]+)_\{?(\d+)\}?\s*$")
_BASE_ANSWER = re.compile(r"^\s*(?:\\boxed\{)?(-?[0-9A-Za-z]*\.?[0-9A-Za-z]+)(?:_\{?(\d+)\}?)?\}?\s*$")


def _base_number(gold: str, answer: str) -> bool | None:
    """Equality of a number written in another base, or None when the gold is not one (or the answer not a number)."""
    g = _BASE_GOLD.match(gold)
    if g is None:
        return None
    a = _BASE_ANSWER.match(answer.strip().strip("$").strip())
    if a is None:
        return None
    same_digits = a.group(1).lower() == g.group(1).lower()
    return same_digits and (a.group(2) is None or int(a.group(2)) == int(g.group(2)))


# -- the answer line, normalised before math-verify (docs/graders.md, "Normalising the answer") ----------------------
_FULLWIDTH = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: " "}
"""Fullwidth ASCII forms (U+FF01-FF5E: ``１８``, ``＄``, ``．``) and the ideographic space, to their ASCII originals."""
_SYMBOLS = {"∞": "\\infty ", "\u2212": "-"}
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:(?:\{,\}|\\,|,\\!|[\u2009\u202f\u2007\u00a0])\d{3})+(?![\d])")
_SEPARATOR = re.compile(r"\{,\}|\\,|,\\!|[\u2009\u202f\u2007\u00a0]")
_EMPHASIS = re.compile(r"^(\*{1,3}|_{1,3}|`{1,3})(.+)\1$", re.S)
_LEADING = re.compile(r"^(?:\*{1,3}|`{1,3})\s*")
_TRAILING = re.compile(r"(?<![\^\\])\s*(?:\*{1,3}|`{1,3})$")
_WRAPPER = re.compile(r"^\\(?:text|textrm|textbf|mathrm|mbox)\s*\{")
_END_PUNCT = re.compile(r"(?<=[\w})\]$*`])[.,]$")
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}  # fmt: skip


def _unwrap(s: str) -> str:
    """``\\text{...}`` (and ``\\textrm``, ``\\textbf``, ``\\mathrm``, ``\\mbox``) around the whole answer, removed."""
    m = _WRAPPER.match(s)
    if m is None or not s.endswith("}"):
        return s
    depth = 0
    for i in range(m.end() - 1, len(s)):
        depth += {"{": 1, "}": -1}.get(s[i], 0)
        if depth == 0:
            return s[m.end() : -1] if i == len(s) - 1 else s  # the brace that closes the wrapper ends the answer
    return s


def _thousands(s: str) -> str:
    """Thousands separators other than a plain comma taken out (``14{,}000``, ``14\\,000``, ``3,\\!250``, thin
    spaces), only between digit groups of three: ``1{,}8`` and ``14\\,00`` are left as written."""
    return _THOUSANDS.sub(lambda m: _SEPARATOR.sub("", m.group()), s)


def normalise(answer: str) -> str:
    """The extracted answer as math-verify should read it: what markdown, punctuation and typography a model puts
    around an answer line taken away, and nothing that changes which value it names. Each rule is in
    docs/graders.md with an example; tests/data/answer_forms.jsonl holds the forms and their near misses."""
    s = answer.translate(_FULLWIDTH)
    for k, v in _SYMBOLS.items():
        s = s.replace(k, v)
    s = s.replace("\\$", "")
    s = _thousands(s)
    prev = None
    while s != prev:
        prev = s
        s = s.strip()
        m = _EMPHASIS.match(s)
        if m is not None:
            s = m.group(2)
        s = _LEADING.sub("", s)
        s = _TRAILING.sub("", s)
        s = _unwrap(s)
        s = _END_PUNCT.sub("", s)
    return _NUMBER_WORDS.get(s.lower(), s)


_EXPONENT = re.compile(r"\^\s*(?:\{[^{}]*\}|\\circ|\d+)")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|\\[A-Za-z]+|[A-Za-z]{2,}")
_CONJUNCTIONS = frozenset({"and", "or"})


def several_numbers(s: str, conjunctions_list: bool) -> bool:
    """True when the answer names more than one number with words between them (``50 of 18``, ``$50$ of $18$``,
    ``2 hours 30 minutes``): math-verify would read the last one and match it to a gold it only contains. What comes
    before the last ``=`` is working and not counted (``18 \\times 2 = 36``), nor are exponents (``5 \\text{ cm}^2``).
    With ``conjunctions_list`` (MATH), ``and``/``or`` between numbers make a list, which math-verify reads as a set
    (``2 and 3`` for ``2, 3``)."""
    tail = _EXPONENT.sub(" ", s.rsplit("=", 1)[-1])
    seen_number = worded = False
    for t in _TOKEN.findall(tail):
        if t[0].isdigit():
            if seen_number and worded:
                return True
            seen_number, worded = True, False
        elif seen_number and t[0] != "\\" and not (conjunctions_list and t.lower() in _CONJUNCTIONS):
            worded = True
    return False


def grader_name() -> str:
    return f"symbolic:math-verify=={version('math-verify')}"


def _parse_answer(answer: str, latex: bool):  # noqa: ANN202 (sympy objects)
    from math_verify import parse

    if latex and not any(d in answer for d in _DELIMITERS):
        parsed = parse(f"${answer}$", parsing_timeout=TIMEOUT_S)
        if parsed:
            return parsed
    return parse(answer, parsing_timeout=TIMEOUT_S)


def symbolic_equal(gold: str, answer: str, latex_gold: bool = False) -> Graded:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "symbolic_equal must run on a main thread (math-verify's timeouts use signal.alarm); "
            "call it in a worker process"
        )
    from math_verify import parse, verify

    name = grader_name()
    answer = normalise(answer)
    if several_numbers(answer, latex_gold) and not several_numbers(gold, latex_gold):
        return Graded(0.0, name, "several numbers in the answer")
    if latex_gold:
        base = _base_number(gold, answer)
        if base is not None:
            return Graded(
                1.0 if base else 0.0, name, "compared as a number in base " + gold.split("_")[-1].strip("{} ")
            )
    try:
        # The gold's own separators go the same way: math-verify 0.9.0 cannot parse \frac{12}{5,\!525}.
        gold = _thousands(gold)
        g = parse(f"\\boxed{{{gold}}}" if latex_gold else gold, parsing_timeout=TIMEOUT_S)
        a = _parse_answer(answer, latex_gold)
        if not g:
            return Graded(0.0, name, "gold not parsed")
        if not a:
            return Graded(0.0, name, "answer not parsed")
        ok = verify(g, a, timeout_seconds=TIMEOUT_S)
        return Graded(1.0 if ok else 0.0, name)
    except Exception as e:  # a grader failure scores 0 and says why; it never stops the run
        return Graded(0.0, name, f"grader error: {e.__class__.__name__}")
