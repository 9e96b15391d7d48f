"""Paired significance between two configurations on the items both answered.

- 0/1 scores: exact McNemar test (two-sided binomial test of the discordant pairs at p = 1/2), computed with exact
  integer arithmetic from the standard library (equal to ``scipy.stats.binomtest(b, b + c).pvalue``, tested).
- other scores (IFEval's per-prompt mean of four, pass@k fractions, averaged repeats): paired bootstrap.
- The difference's 95% interval is a paired percentile bootstrap in both cases (seeded: the same inputs give the same
  interval).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

ALPHA = 0.05
DEFAULT_RESAMPLES = 2000


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` pairs right only in A and ``c`` right only in B.

    ``min(1, 2 * P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``; 1.0 when there are no discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def bootstrap_diff(a: Sequence[float], b: Sequence[float], resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                   confidence: float = 0.95) -> tuple[float, tuple[float, float], float]:  # fmt: skip
    """Paired bootstrap of ``mean(b) - mean(a)``: the difference, its percentile interval and a two-sided p-value
    (the share of resampled differences, centred on the observed one, at least as far from 0 as the observed one)."""
    import numpy as np

    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("paired samples must be non-empty and of equal length")
    d = y - x
    obs = float(d.mean())
    rng = np.random.default_rng(seed)
    n = d.size
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)  # bound memory: at most ~2M indices at once
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(m, n))
        means[start : start + m] = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    centred = means - obs
    p = float(np.mean(np.abs(centred) >= abs(obs) - 1e-12)) if obs != 0 else 1.0
    return obs, (float(lo), float(hi)), min(1.0, p)


@dataclass
class Paired:
    eval: str
    metric: str
    a: str
    b: str
    n: int
    """Items both configurations answered (failed requests left out)."""
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    """mean(b) - mean(a) on the paired items."""
    ci95: tuple[float, float] | None
    p_value: float | None
    test: str
    significant: bool
    b_only: int | None = None
    """0/1 scores: items right in b and wrong in a (McNemar's discordant counts)."""
    a_only: int | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ci95"] = list(self.ci95) if self.ci95 else None
        return d


def paired_test(eval_name: str, metric: str, label_a: str, label_b: str, scores_a: dict[str, float],
                scores_b: dict[str, float], resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Paired:  # fmt: skip
    """Compare two configurations on the items (keys) both scored."""
    common = sorted(set(scores_a) & set(scores_b))
    n = len(common)
    if n == 0:
        return Paired(eval_name, metric, label_a, label_b, 0, None, None, None, None, None, "none", False,
                      note="no item answered by both")  # fmt: skip
    xa = [scores_a[k] for k in common]
    xb = [scores_b[k] for k in common]
    ma, mb = sum(xa) / n, sum(xb) / n
    diff, ci, p_boot = bootstrap_diff(xa, xb, resamples=resamples, seed=seed)
    binary = all(v in (0.0, 1.0) for v in xa + xb)
    if binary:
        b_only = sum(1 for u, v in zip(xa, xb, strict=True) if v > u)
        a_only = sum(1 for u, v in zip(xa, xb, strict=True) if u > v)
        p = mcnemar_exact(a_only, b_only)
        return Paired(eval_name, metric, label_a, label_b, n, ma, mb, mb - ma, ci, p, "exact McNemar",
                      p < ALPHA, b_only=b_only, a_only=a_only)  # fmt: skip
    return Paired(eval_name, metric, label_a, label_b, n, ma, mb, diff, ci, p_boot,
                  f"paired bootstrap ({resamples})", p_boot < ALPHA)  # fmt: skip
