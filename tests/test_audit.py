"""``scorecheck audit``: the claim-testing statistics against hand-computed, closed-form and simulated values, and a
verdict word for each reason on synthetic runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from conftest import run_cli
from scorecheck.compare import claimstats as cs
from scorecheck.compare import compare
from scorecheck.compare.audit import audit
from scorecheck.compare.references import load_reference
from scorecheck.results import build_results, split_timing, write_json, write_jsonl
from scorecheck.stats import wilson


def test_binom_pvalues_equal_scipy_for_every_outcome() -> None:
    for n, p0 in [(10, 0.3), (57, 0.5), (198, 0.467), (400, 0.02)]:
        ref = np.array([stats.binomtest(k, n, p0).pvalue for k in range(n + 1)])
        assert np.allclose(cs.binom_pvalues(n, p0), ref, atol=1e-12, rtol=0)


def test_binom_pvalue_by_hand() -> None:
    # n = 4, p0 = 1/2, k = 0: P(0) + P(4) = 2/16
    assert cs.binom_pvalue(0, 4, 0.5) == pytest.approx(0.125)
    # n = 3, p0 = 0.2, k = 2: outcomes no likelier than P(2) = 0.096 are 2 and 3: 0.096 + 0.008
    assert cs.binom_pvalue(2, 3, 0.2) == pytest.approx(0.104)


def test_exact_power_and_min_detectable_against_the_closed_form() -> None:
    n, p0 = 2000, 0.6
    down, up = cs.min_detectable(n, p0)
    assert down is not None and up is not None
    for d, sign in ((down, -1), (up, 1)):
        assert cs.exact_power(n, p0, p0 + sign * d) >= 0.8
        assert cs.exact_power(n, p0, p0 + sign * (d - 0.003)) < 0.8
        assert d == pytest.approx(cs.min_detectable_normal(n, p0, sign), rel=0.03)
    # the closed form at p1 = p0 reduces to (z_0.975 + z_0.8) sqrt(p0 q0 / n)
    assert cs.min_detectable_se(math.sqrt(p0 * (1 - p0) / n)) == pytest.approx(
        (1.959964 + 0.841621) * math.sqrt(0.24 / 2000), rel=1e-5
    )
    # a claim at 100%: no increase can be detected
    assert cs.min_detectable(50, 1.0)[1] is None


def test_holm_by_hand() -> None:
    # m = 4, sorted: 4 x 0.01, 3 x 0.02, 2 x 0.04, 1 x 0.5 (each at least the one before)
    assert cs.holm([0.04, 0.01, 0.5, 0.02]) == pytest.approx([0.08, 0.04, 0.5, 0.06])
    assert cs.holm([0.03, 0.8]) == pytest.approx([0.06, 0.8])
    assert cs.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def _coverage(items: int, reps: int, a: float, b: float, sims: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    truth = a / (a + b)
    hits = 0
    clusters = np.repeat(np.arange(items), reps)
    for _ in range(sims):
        p = rng.beta(a, b, size=items)
        y = (rng.random((items, reps)) < p[:, None]).astype(float)
        lo, hi = cs.cluster_ci(y.ravel(), clusters).ci95
        hits += lo <= truth <= hi
    return hits / sims


@pytest.mark.parametrize("items,reps,a,b", [(40, 5, 2.0, 2.0), (164, 5, 1.0, 1.0), (60, 10, 4.0, 1.0)])
def test_clustered_interval_covers_95_percent(items: int, reps: int, a: float, b: float) -> None:
    cov = _coverage(items, reps, a, b, sims=2000, seed=items)
    print(f"coverage {items} items x {reps} repeats, Beta({a}, {b}): {cov:.4f}")
    assert 0.935 <= cov <= 0.965


def test_identical_repeats_do_not_narrow_the_interval() -> None:
    # 20 items, 10 right, each answered 5 times identically: as wide as one sample each (the example)
    values = [float(i < 10) for i in range(20) for _ in range(5)]
    clusters = [i for i in range(20) for _ in range(5)]
    c = cs.cluster_ci(values, clusters)
    one = wilson(10, 20)
    assert one is not None
    assert c.deff == pytest.approx(5.0, rel=0.1)
    assert c.ci95[0] <= one[0] + 1e-9 and c.ci95[1] >= one[1] - 1e-9
    naive = wilson(50, 100)
    assert naive is not None and c.ci95[1] - c.ci95[0] > 1.5 * (naive[1] - naive[0])


def test_bootstrap_test_of_a_mean_of_four() -> None:
    rng = np.random.default_rng(3)
    vals = np.clip(rng.normal(0.8, 0.15, size=541), 0, 1)
    b = cs.bootstrap_test(vals, claim=float(vals.mean()))
    assert b.p_value > 0.9
    assert b.ci95[0] < vals.mean() < b.ci95[1]
    assert b.se == pytest.approx(vals.std(ddof=1) / math.sqrt(541), rel=0.1)
    far = cs.bootstrap_test(vals, claim=float(vals.mean()) + 0.05)
    assert far.p_value < 0.01


def test_incomplete_bounds() -> None:
    # 100 items, 60 right of which 5 were truncated but right; 30 incomplete in all
    assert cs.incomplete_bounds(60, 100, 30, incomplete_credit=5) == (0.55, 0.85)


# --- verdicts on synthetic runs ---------------------------------------------------------------------------------


def _run(path: Path, eval_name: str, right: list[bool], truncated: list[bool] | None = None, limit: int | None = None,
         max_tokens: int | None = None) -> Path:  # fmt: skip
    path.mkdir(parents=True)
    samples = []
    for i, r in enumerate(right):
        t = bool(truncated and truncated[i])
        samples.append({"eval": eval_name, "item_id": f"{eval_name}-{i}", "sample_index": 0, "status": "ok",
                        "score": float(r), "flags": {"truncated": t, "unparsed": False, "failed": False}})  # fmt: skip
    n = len(right)
    k = sum(right)
    evals = {eval_name: {"score": k / n, "n": n, "n_items": n, "ci95": list(wilson(k, n) or (0, 1)),
                         "counts": {"truncated": sum(truncated or [])}}}  # fmt: skip
    sampling = {"temperature": 0.0, "max_tokens": max_tokens or 6000}
    results = build_results(model="m", protocol={"name": "glaive-2024"}, evals=evals, notes=[], started=0.0, ended=1.0,
                            config={"limit": limit, "sampling": sampling, "system_prompt": {"name": "none"},
                                    "evals": [eval_name]})  # fmt: skip
    write_json(path / "results.json", results)
    write_jsonl(path / "samples.jsonl", (split_timing(s)[0] for s in samples))
    return path


def _claims(path: Path, claims: list[tuple[str, float, str]]) -> Path:
    lines = ['name = "t"', 'title = "test claims"', "[defaults]", 'protocol = "glaive-2024"', "shots = 0", ""]
    for eval_name, value, proto in claims:
        lines += ["[[claim]]", f'eval = "{eval_name}"', f"value = {value}", f'protocol = "{proto}"', ""]
    path.write_text("\n".join(lines))
    return path


def test_each_verdict_for_its_reason(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    big = _run(tmp_path / "big", "gsm8k", list(rng.random(1319) < 0.80))
    small = _run(tmp_path / "small", "humaneval", list(rng.random(20) < 0.5))
    right = [bool(x) for x in rng.random(300) < 0.45]
    trunc = [i % 10 < 3 for i in range(300)]  # 30% truncated, every one of them wrong
    right = [r and not t for r, t in zip(right, trunc, strict=True)]
    trunc_run = _run(tmp_path / "trunc", "math", right, trunc)
    refs = [load_reference(str(_claims(tmp_path / "c.toml", [
        ("gsm8k", 0.80, "glaive-2024"), ("gsm8k", 0.90, "glaive-2024"), ("gsm8k", 0.70, "glaive-2024"),
        ("gsm8k", 0.81, "meta (8-shot CoT)"), ("humaneval", 0.5, "glaive-2024"), ("math", 0.45, "glaive-2024"),
    ])))]  # fmt: skip
    cmp = compare([big, small, trunc_run], references=refs)
    found = {(f.eval, f.claimed, f.verdict): f for f in audit(cmp) if f.measured is not None}
    verdicts = {(e, c): v for e, c, v in found}
    assert verdicts[("gsm8k", 0.80)] in ("consistent",)
    assert verdicts[("gsm8k", 0.90)] == "lower than claimed"
    assert verdicts[("gsm8k", 0.70)] == "higher than claimed"
    nc = [f for f in found.values() if f.verdict == "not comparable"]
    assert nc and "protocol" in nc[0].reasons[0]
    few = found[("humaneval", 0.5, "inconclusive")]
    assert "too few items" in few.reasons[0]
    tr = found[("math", 0.45, "inconclusive")]
    assert tr.bounds is not None and tr.bounds[0] < 0.45 < tr.bounds[1]
    assert "truncated" in " ".join(tr.reasons)
    assert tr.n_incomplete == 90
    assert found[("gsm8k", 0.90, "lower than claimed")].p_holm is not None


def test_capped_sampling_is_not_comparable(tmp_path: Path) -> None:
    run = _run(tmp_path / "r", "gsm8k", [True, False] * 200, max_tokens=256)
    refs = [load_reference(str(_claims(tmp_path / "c.toml", [("gsm8k", 0.5, "glaive-2024")])))]
    (f,) = audit(compare([run], references=refs))
    assert f.verdict == "not comparable"
    assert "max_tokens 256" in f.reasons[0]


def test_audit_command(tmp_path: Path) -> None:
    run = _run(tmp_path / "r", "gsm8k", [True] * 300 + [False] * 100)
    claims = _claims(tmp_path / "c.toml", [("gsm8k", 0.95, "glaive-2024")])
    p = run_cli(
        "audit", str(run), "-r", str(claims), "--json", str(tmp_path / "a.json"), "--md", str(tmp_path / "a.md")
    )
    assert p.code == 0, p.err
    assert "lower than claimed" in p.out
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["findings"][0]["verdict"] == "lower than claimed"
    assert "**lower than claimed**" in (tmp_path / "a.md").read_text()
    bad = run_cli("audit", str(tmp_path / "nope"), "-r", str(claims))
    assert bad.code != 0 and "no results.json" in bad.err
