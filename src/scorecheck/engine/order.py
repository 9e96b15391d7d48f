"""Length-aware order: the requests with the longest expected answers go first.

A continuous-batching server finishes a run when its last request finishes: if the long answers start last, the
batch drains to a few sequences and the GPU idles while they finish. Sending the longest first leaves short ones for
the end, which fill the batch until the very last step.

Expected completion tokens of a request = its eval's mean answer length (a prior of :data:`PRIOR_TOKENS` for every
eval, the same for all so that no eval is guessed long; then the answers finished in this run directory, by earlier
sessions and this one, weighted against the prior) x a prompt factor (longer prompts within an eval tend to get
longer answers: (prompt / the eval's median prompt) ** 0.25, kept within 0.8-1.25), plus the eval's observed rate of
answers that run to ``max_tokens`` times ``max_tokens`` (the runaway cap: an eval whose answers sometimes run away
starts early, so its runaways do not start last).

Within an eval, requests with the same factor are sorted by prompt text: the samples of one item (identical
requests) and prompts with a shared prefix are sent one after another, where vLLM's prefix cache reuses them.

The order changes when each request is sent, never what is sent or how it is scored.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

PRIOR_TOKENS = 400.0
PRIOR_WEIGHT = 8.0
"""The prior counts as this many answers."""
PRIOR_RUNAWAY = 0.002
FACTOR_RANGE = (0.8, 1.25)

T = TypeVar("T")


@dataclass
class EvalLengths:
    n: int = 0
    tokens: float = 0.0
    runaways: int = 0

    def mean(self) -> float:
        return (PRIOR_TOKENS * PRIOR_WEIGHT + self.tokens) / (PRIOR_WEIGHT + self.n)

    def runaway_rate(self) -> float:
        return (PRIOR_RUNAWAY * PRIOR_WEIGHT + self.runaways) / (PRIOR_WEIGHT + self.n)


class LengthModel:
    """Expected completion tokens per eval, learned from finished answers."""

    def __init__(self, max_tokens: int, stored: dict[str, tuple[int, float, int]] | None = None) -> None:
        self.max_tokens = max_tokens
        self.evals: dict[str, EvalLengths] = {}
        for name, (n, tokens, runaways) in (stored or {}).items():
            self.evals[name] = EvalLengths(n, tokens, runaways)

    def _get(self, eval_name: str) -> EvalLengths:
        e = self.evals.get(eval_name)
        if e is None:
            e = self.evals[eval_name] = EvalLengths()
        return e

    def observe(self, eval_name: str, completion_tokens: int | None, finish_reason: str | None) -> None:
        if completion_tokens is None:
            return
        e = self._get(eval_name)
        e.n += 1
        e.tokens += completion_tokens
        e.runaways += finish_reason == "length"

    def expected(self, eval_name: str, factor: float = 1.0) -> float:
        e = self._get(eval_name)
        p = e.runaway_rate()
        return min((1 - p) * e.mean() * factor + p * self.max_tokens, float(self.max_tokens))


def prompt_factors(prompts: list[int]) -> list[float]:
    """The prompt factor of each of one eval's prompts (their lengths in characters)."""
    if not prompts:
        return []
    med = max(statistics.median(prompts), 1.0)
    lo, hi = FACTOR_RANGE
    return [round(min(max((p / med) ** 0.25, lo), hi), 2) for p in prompts]


class LengthOrder(Generic[T]):
    """Pending requests, popped longest expected first. One queue per eval, each sorted once by prompt factor
    (then prompt text); :meth:`pop` takes the head with the largest expected length, which follows the eval means
    as answers come in."""

    def __init__(self, entries: Iterable[tuple[str, str, T]], model: LengthModel) -> None:
        """``entries``: (eval name, prompt text, payload) for every request to send."""
        by_eval: dict[str, list[tuple[str, T]]] = {}
        for name, text, payload in entries:
            by_eval.setdefault(name, []).append((text, payload))
        self.model = model
        self._queues: dict[str, deque[tuple[float, T]]] = {}
        self._factor_sum: dict[str, float] = {}
        for name, rows in by_eval.items():
            factors = prompt_factors([len(t) for t, _ in rows])
            idx = sorted(range(len(rows)), key=lambda i: (-factors[i], rows[i][0]))
            self._queues[name] = deque((factors[i], rows[i][1]) for i in idx)
            self._factor_sum[name] = sum(factors)
        self._n = sum(len(q) for q in self._queues.values())

    def __len__(self) -> int:
        return self._n

    def pop(self) -> tuple[T, str, float]:
        """The next request: (payload, its eval, its expected completion tokens)."""
        best, best_len = None, -1.0
        for name, q in self._queues.items():
            if q:
                exp = self.model.expected(name, q[0][0])
                if exp > best_len:
                    best, best_len = name, exp
        if best is None:
            raise IndexError("pop from an empty LengthOrder")
        factor, payload = self._queues[best].popleft()
        self._factor_sum[best] -= factor
        self._n -= 1
        return payload, best, best_len

    def expected_tokens(self) -> float:
        """Expected completion tokens of everything still pending."""
        return sum(self.model.expected(name, self._factor_sum[name] / len(q)) * len(q)
                   for name, q in self._queues.items() if q)  # fmt: skip
