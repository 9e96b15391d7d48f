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


def test_results_interval_clusters_repeats_by_item_and_mmlu_by_subject():
    """results.json's headline interval: an item's repeats are one cluster (20 items x 5 identical repeats is as
    wide as one sample each, not as narrow as 100 independent ones); MMLU's questions cluster by subject."""
    from scorecheck.benchmarks import get_benchmarks
    from scorecheck.report import eval_result
    from scorecheck.stats import wilson

    gsm8k, mmlu = get_benchmarks(["gsm8k", "mmlu"])
    recs = [{"item_id": str(i), "sample_index": s, "score": float(i < 10), "flags": {}} for i in range(20)
            for s in range(5)]  # fmt: skip
    r = eval_result(gsm8k, recs)
    one, naive = wilson(10, 20), wilson(50, 100)
    assert one and naive and r["ci95"][0] <= one[0] + 1e-9 and r["ci95"][1] >= one[1] - 1e-9
    assert r["ci95"][1] - r["ci95"][0] > 1.5 * (naive[1] - naive[0])
    assert r["ci_method"].startswith("cluster-robust over 20 clusters")
    single = eval_result(gsm8k, [dict(x, sample_index=0, item_id=f"{x['item_id']}-{x['sample_index']}") for x in recs])
    assert single["ci_method"] == "wilson" and single["ci95"] == list(naive)
    subj = [{"item_id": str(i), "sample_index": 0, "score": float(i % 7 < 4), "flags": {},
             "meta": {"subject": f"s{i % 7}", "category": "other"}} for i in range(140)]  # fmt: skip
    m = eval_result(mmlu, subj)
    assert m["ci_method"].startswith("cluster-robust over 7 clusters")
