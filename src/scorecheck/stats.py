"""Confidence intervals for a run's scores.

- ``wilson``: independent 0/1 items;
- ``mean_ci``: Student-t for other values (Wilson when every value is 0 or 1);
- ``cluster_ci``: observations that are not independent (an item's repeats; MMLU's questions within a subject): the
  mean of all observations with the CR1 sandwich variance ``G/(G-1) * sum_g (sum_{i in g} (y_i - mean))^2 / N^2``;
  for 0/1 observations a Wilson interval on the effective sample size ``N / deff`` (deff = that variance over the
  independent one, at least 1), else Student-t; both on G - 1 degrees of freedom. Coverage measured by simulation
  (tests/test_audit.py): 94.5-95.5% over 2,000 simulated runs in each design tested.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

AUDIT_TOLERANCE = 0.10
"""``scorecheck audit``'s default tolerance: a claim within this of the measured score is not called wrong (here, not
in compare/audit.py, so the CLI reads it without importing scipy: about 30 MB and 0.5 s at every start)."""


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for k successes in n trials (equal to scipy's ``binomtest(k, n).proportion_ci(
    method="wilson")``, tested; computed with the standard library because importing scipy costs seconds)."""
    if n == 0:
        return None
    return wilson_z(k / n, n, NormalDist().inv_cdf((1 + confidence) / 2))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Student-t interval of a mean; Wilson when every value is 0 or 1."""
    n = len(values)
    if n == 0:
        return None
    if all(v in (0.0, 1.0) for v in values):
        return wilson(int(sum(values)), n, confidence)
    from scipy import stats

    m = sum(values) / n
    if n == 1:
        return (m, m)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    h = stats.t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
    return (m - h, m + h)


@dataclass(frozen=True)
class ClusteredCI:
    mean: float
    ci95: tuple[float, float]
    n: int
    clusters: int
    deff: float
    method: str


def wilson_z(p: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` of ``n`` (which may be an effective, non-integer n) at ``z``."""
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n))) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cluster_ci(values: Sequence[float], clusters: Sequence[Hashable], confidence: float = 0.95) -> ClusteredCI:
    """Mean of ``values`` with a cluster-robust interval (clusters: the item of each repeat, or MMLU's subject)."""
    import numpy as np  # here, not at the top: importing numpy and scipy costs the CLI's start-up seconds
    from scipy import stats

    y = np.asarray(values, dtype=float)
    n = y.size
    if n == 0 or len(clusters) != n:
        raise ValueError("values and clusters must be non-empty and of equal length")
    codes: dict[Hashable, int] = {}
    g = np.fromiter((codes.setdefault(c, len(codes)) for c in clusters), dtype=np.int64, count=n)
    groups = len(codes)
    mean = float(y.mean())
    resid = np.bincount(g, weights=y - mean, minlength=groups)
    var = groups / (groups - 1) * float((resid**2).sum()) / n**2 if groups > 1 else 0.0
    df = max(1, groups - 1)
    z = float(stats.t.ppf((1 + confidence) / 2, df))
    binary = bool(np.all((y == 0) | (y == 1)))
    if binary:
        srs = mean * (1 - mean) / n
        deff = max(1.0, var / srs) if srs > 0 else 1.0
        lo, hi = wilson_z(mean, n / deff, z)
        method = f"Wilson on the effective n (cluster-robust design effect, {groups} clusters, t{df})"
    else:
        deff = max(1.0, var / (float(y.var(ddof=1)) / n)) if n > 1 and y.var() > 0 else 1.0
        h = z * math.sqrt(var)
        lo, hi = mean - h, mean + h
        method = f"cluster-robust (CR1) t interval, {groups} clusters"
    return ClusteredCI(mean, (float(lo), float(hi)), n, groups, deff, method)


def interval(values: Sequence[float], clusters: Sequence[Hashable]) -> tuple[tuple[float, float] | None, str]:
    """The 95% interval of a mean and the method's name: ``wilson``/``t`` when every observation is its own cluster
    (one sample per item), else the cluster-robust one (an item's repeats, MMLU's subjects)."""
    if not values:
        return None, "none"
    if len(set(clusters)) == len(values):
        binary = all(v in (0.0, 1.0) for v in values)
        return mean_ci(values), "wilson" if binary else "t"
    c = cluster_ci(values, clusters)
    return c.ci95, f"cluster-robust over {c.clusters} clusters (design effect {c.deff:.2f})"
