"""Testing a claimed number against the measured items: a pure module (numbers in, numbers out).

- ``binom_pvalues``: the exact two-sided binomial test of ``H0: p = p0`` (scipy's ``binomtest`` "minlike" rule: the
  probability of every outcome no more likely than the observed one), for every k at once.
- ``exact_power`` / ``min_detectable``: the power of that exact test at ``p1``, and the smallest difference from the
  claim that ``n`` items detect with 80% power (searched on the exact power, in each direction);
  ``min_detectable_normal`` is the closed form ``|p1 - p0| = (z_{1-a/2} sqrt(p0 q0) + z_power sqrt(p1 q1)) / sqrt(n)``
  it converges to.
- ``holm``: Holm's step-down adjustment of several claims' p-values.
- ``cluster_ci`` (from ``scorecheck.stats``, where results.json's intervals use it too): the cluster-robust interval.
- ``bootstrap_test``: a bootstrap over clusters (items) of a mean of per-item values (IFEval's per-prompt mean of
  four, pass@k), the claim tested by the shifted bootstrap.
- ``incomplete_bounds``: the score the incomplete items (truncated, failed, unparsed) allow, counted all wrong and
  all right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy import stats

from scorecheck.stats import ClusteredCI, cluster_ci, wilson_z

__all__ = ["ClusteredCI", "cluster_ci", "wilson_z"]  # the interval a claim is tested against lives in scorecheck.stats

ALPHA = 0.05
POWER = 0.8
_REL = 1 + 1e-7  # scipy's tolerance when it compares outcome probabilities


def binom_pvalues(n: int, p0: float) -> np.ndarray:
    """Two-sided exact p-value of every outcome k = 0..n under ``Binomial(n, p0)`` (equal to
    ``scipy.stats.binomtest(k, n, p0).pvalue``, tested)."""
    pmf = stats.binom.pmf(np.arange(n + 1), n, p0)
    order = np.sort(pmf)
    cum = np.cumsum(order)
    idx = np.searchsorted(order, pmf * _REL, side="right") - 1
    return np.minimum(1.0, cum[idx])


def binom_pvalue(k: int, n: int, p0: float) -> float:
    return float(stats.binomtest(k, n, p0).pvalue)


def exact_power(n: int, p0: float, p1: float, alpha: float = ALPHA, pvals: np.ndarray | None = None) -> float:
    """Probability that the exact two-sided test at level ``alpha`` rejects ``p = p0`` when the truth is ``p1``."""
    pv = binom_pvalues(n, p0) if pvals is None else pvals
    reject = pv <= alpha
    return float(stats.binom.pmf(np.arange(n + 1), n, p1)[reject].sum())


def min_detectable(n: int, p0: float, alpha: float = ALPHA, power: float = POWER) -> tuple[float | None, float | None]:
    """(smallest decrease, smallest increase) from ``p0`` that the exact test detects with ``power``; None where no
    difference in that direction reaches it (p0 at a bound, or n too small)."""
    if n <= 0:
        return None, None
    pv = binom_pvalues(n, p0)
    out: list[float | None] = []
    for sign, room in ((-1, p0), (1, 1 - p0)):
        if room <= 0 or exact_power(n, p0, p0 + sign * room, alpha, pv) < power:
            out.append(None)
            continue
        lo, hi = 0.0, room
        while hi - lo > 1e-5:
            mid = (lo + hi) / 2
            if exact_power(n, p0, p0 + sign * mid, alpha, pv) >= power:
                hi = mid
            else:
                lo = mid
        out.append(hi)
    return out[0], out[1]


def min_detectable_normal(n: int, p0: float, direction: int = 1, alpha: float = ALPHA, power: float = POWER) -> float:
    """The closed-form (normal) minimum detectable difference in ``direction`` (+1 up, -1 down), solved for p1."""
    za = NormalDist().inv_cdf(1 - alpha / 2)
    zb = NormalDist().inv_cdf(power)
    d = 0.0
    for _ in range(100):  # fixed point: d = (za sqrt(p0 q0) + zb sqrt(p1 q1)) / sqrt(n), p1 = p0 + direction * d
        p1 = min(1.0, max(0.0, p0 + direction * d))
        nd = (za * math.sqrt(p0 * (1 - p0)) + zb * math.sqrt(p1 * (1 - p1))) / math.sqrt(n)
        if abs(nd - d) < 1e-12:
            break
        d = nd
    return d


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


@dataclass(frozen=True)
class BootstrapTest:
    mean: float
    ci95: tuple[float, float]
    p_value: float
    se: float
    resamples: int


def bootstrap_test(item_values: Sequence[float], claim: float, resamples: int = 4000, seed: int = 0,
                   confidence: float = 0.95) -> BootstrapTest:  # fmt: skip
    """A mean over items (each item's value already its mean over repeats), resampled by item; the claim tested by
    the shifted bootstrap (the share of resampled means at least as far from the observed mean as the claim is)."""
    x = np.asarray(item_values, dtype=float)
    if x.size == 0:
        raise ValueError("no items")
    rng = np.random.default_rng(seed)
    n = x.size
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        means[start : start + m] = x[rng.integers(0, n, size=(m, n))].mean(axis=1)
    obs = float(x.mean())
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    far = np.abs(means - obs) >= abs(obs - claim) - 1e-12
    p = float((far.sum() + 1) / (resamples + 1))
    return BootstrapTest(obs, (float(lo), float(hi)), min(1.0, p), float(means.std(ddof=1)), resamples)


def min_detectable_se(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Minimum detectable difference for a test on an estimate with standard error ``se`` (normal closed form)."""
    return (NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)) * se


def incomplete_bounds(total: float, n: int, incomplete: int, incomplete_credit: float = 0.0) -> tuple[float, float]:
    """The score when the ``incomplete`` items (of ``n``; already counted in ``total`` with ``incomplete_credit``
    between them) are all wrong and all right."""
    if n <= 0:
        raise ValueError("n must be positive")
    base = total - incomplete_credit
    return base / n, (base + incomplete) / n
