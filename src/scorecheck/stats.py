"""Confidence intervals for a run's scores."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for k successes in n trials (equal to scipy's ``binomtest(k, n).proportion_ci(
    method="wilson")``, tested; computed with the standard library because importing scipy costs seconds)."""
    if n == 0:
        return None
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


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
