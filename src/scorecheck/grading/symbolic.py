"""Symbolic equality with math-verify, deterministic and free: scorecheck's default for GSM8K (and MATH).

math-verify's timeouts use ``signal.alarm``, which only works in a process's main thread; the runner therefore
calls :func:`symbolic_equal` in a worker process (whose tasks run on its main thread), never in a thread.
"""

from __future__ import annotations

from importlib.metadata import version

from scorecheck.benchmarks import Graded

TIMEOUT_S = 5


def grader_name() -> str:
    return f"symbolic:math-verify=={version('math-verify')}"


def symbolic_equal(gold: str, answer: str) -> Graded:
    from math_verify import parse, verify

    name = grader_name()
    try:
        g = parse(gold, parsing_timeout=TIMEOUT_S)
        a = parse(answer, parsing_timeout=TIMEOUT_S)
        if not g:
            return Graded(0.0, name, "gold not parsed")
        if not a:
            return Graded(0.0, name, "answer not parsed")
        ok = verify(g, a, timeout_seconds=TIMEOUT_S)
        return Graded(1.0 if ok else 0.0, name)
    except Exception as e:  # a grader failure scores 0 and says why; it never stops the run
        return Graded(0.0, name, f"grader error: {e.__class__.__name__}")
