import pytest
from scipy.stats import binomtest, t

from scorecheck.stats import mean_ci, wilson


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (259, 448), (12957, 14042), (1, 2)])
def test_wilson_equals_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = wilson(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-12)
    assert hi == pytest.approx(ci.high, abs=1e-12)


def test_mean_ci_uses_t_for_non_binary_scores():
    values = [0.25, 0.5, 0.75, 1.0, 0.0]
    lo, hi = mean_ci(values)
    m, sd = 0.5, (sum((v - 0.5) ** 2 for v in values) / 4) ** 0.5
    h = t.ppf(0.975, 4) * sd / 5**0.5
    assert (lo, hi) == pytest.approx((m - h, m + h))
    assert mean_ci([]) is None
    assert mean_ci([1.0, 0.0, 1.0]) == wilson(2, 3)
