"""``scorecheck audit``: a verdict for every claimed number against the runs that measured it.

For each claim and run (a cell): the measured score with an interval that respects the design (an item's repeats
clustered by item; MMLU's micro average clustered by subject), the difference, a test of the claim on the measured
items (exact binomial for a proportion of independent items; a cluster-robust t test for clustered 0/1 items; a
bootstrap over items for IFEval's mean of four and pass@k), Holm-adjusted over every claim tested in one audit, the
smallest difference the items detect with 80% power, the bounds that incomplete items (truncated, failed, unparsed)
allow, and one verdict word:

- ``not comparable``: the claim's protocol or the run's sampling differs (the differing fields named);
- ``inconclusive``: no items, the test's outcome depends on what the incomplete items would have been (the verdict
  at the all-wrong bound differs from the one at the all-right bound), or no significant difference while the items
  cannot detect one as large as the tolerance;
- ``lower than claimed`` / ``higher than claimed``: significant at 5% after Holm's adjustment;
- ``consistent``: not significant, and the items detect a difference of the tolerance with 80% power.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy import stats

from scorecheck.compare import claimstats as cs
from scorecheck.compare.model import Comparison, Run, _get
from scorecheck.stats import AUDIT_TOLERANCE

VERDICTS = ("consistent", "lower than claimed", "higher than claimed", "not comparable", "inconclusive")
DEFAULT_TOLERANCE = AUDIT_TOLERANCE
INCOMPLETE_FLAGS = ("truncated", "failed", "unparsed")


@dataclass
class Evidence:
    """What a test of one cell needs: one value per observation, its cluster (item or subject), whether its item was
    incomplete, and how the headline is tested."""

    values: list[float]
    clusters: list[str]
    items: list[str]
    incomplete: list[bool]
    kind: str
    """``binomial`` (0/1, one observation per item), ``clustered`` (0/1 with clusters), ``bootstrap`` (per-item
    values)."""
    n_failed: int = 0
    """Items with no scored observation because the request failed: counted in the bounds as all wrong/all right."""


@dataclass
class Finding:
    reference: str
    column: str
    label: str
    eval: str
    metric: str
    run: str
    claimed: float
    measured: float | None
    ci95: list[float] | None
    ci_method: str
    diff: float | None
    test: str
    p_value: float | None
    p_holm: float | None = None
    mdd: list[float | None] = field(default_factory=lambda: [None, None])
    """Smallest decrease and increase from the claim that the items detect with 80% power."""
    n: int = 0
    n_incomplete: int = 0
    bounds: list[float] | None = None
    verdict: str = "inconclusive"
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flags(s: dict[str, Any]) -> dict[str, Any]:
    f = s.get("flags")
    return f if isinstance(f, dict) else {}


def evidence(run: Run, eval_name: str, metric: str) -> Evidence | None:
    """The observations behind one cell, from the run's samples (None when this metric cannot be tested)."""
    recs = [s for s in run.samples if s.get("eval") == eval_name]
    if not recs:
        return None
    failed_items = {str(s.get("item_id")) for s in recs if s.get("score") is None}
    scored = [s for s in recs if s.get("score") is not None]
    failed_items -= {str(s.get("item_id")) for s in scored}
    incomplete_items = {str(s.get("item_id")) for s in scored if any(_flags(s).get(f) for f in INCOMPLETE_FLAGS)}
    if eval_name == "ifeval":
        return _ifeval_evidence(run, scored, metric, incomplete_items, len(failed_items))
    if metric == "macro":
        return None  # tested from the run's stratified interval (``_macro``)
    by_item: dict[str, list[float]] = defaultdict(list)
    for s in scored:
        by_item[str(s.get("item_id"))].append(float(s["score"]))
    if metric.startswith("pass@"):
        k = int(metric[5:])
        items = sorted(by_item)
        vals = [_pass_at_k(by_item[i], k) for i in items]
        return Evidence(vals, items, items, [i in incomplete_items for i in items], "bootstrap", len(failed_items))
    if metric != "score":
        return None
    binary = all(v in (0.0, 1.0) for vs in by_item.values() for v in vs)
    repeats = any(len(vs) > 1 for vs in by_item.values())
    subjects = {str(s.get("item_id")): _get(s, "meta", "subject") for s in scored}
    if eval_name == "mmlu" and all(subjects.values()):
        keys = [str(subjects[str(s.get("item_id"))]) for s in scored]
    else:
        keys = [str(s.get("item_id")) for s in scored]
    values = [float(s["score"]) for s in scored]
    ids = [str(s.get("item_id")) for s in scored]
    inc = [i in incomplete_items for i in ids]
    if binary and not repeats and eval_name != "mmlu":
        return Evidence(values, keys, ids, inc, "binomial", len(failed_items))
    if binary:
        return Evidence(values, keys, ids, inc, "clustered", len(failed_items))
    items = sorted(by_item)
    return Evidence([sum(by_item[i]) / len(by_item[i]) for i in items], items, items,
                    [i in incomplete_items for i in items], "bootstrap", len(failed_items))  # fmt: skip


def _pass_at_k(scores: Sequence[float], k: int) -> float:
    n, c = len(scores), int(sum(scores))
    if n < k:
        return float("nan")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _ifeval_evidence(run: Run, scored: list[dict[str, Any]], metric: str, incomplete: set[str],
                     n_failed: int) -> Evidence | None:  # fmt: skip
    checker = _get(run.results, "evals", "ifeval", "checker")
    per = []
    for s in scored:
        ch = _get(s, "grade_info", "checkers", checker) if checker else None
        if isinstance(ch, dict):
            per.append((str(s.get("item_id")), list(ch.get("strict") or []), list(ch.get("loose") or [])))
    if not per:
        return None
    n_prompts = len(per)
    n_instr = sum(len(st) for _, st, _ in per)
    if metric == "score":
        vals = [(float(all(st)) + float(all(lo)) + n_prompts * (sum(st) + sum(lo)) / n_instr) / 4 for _, st, lo in per]
        ids = [i for i, _, _ in per]
        return Evidence(vals, ids, ids, [i in incomplete for i in ids], "bootstrap", n_failed)
    if metric in ("prompt-strict", "prompt-loose"):
        j = 1 if metric == "prompt-strict" else 2
        ids = [p[0] for p in per]
        return Evidence([float(all(p[j])) for p in per], ids, ids, [i in incomplete for i in ids], "binomial", n_failed)
    if metric in ("instruction-strict", "instruction-loose"):
        j = 1 if metric == "instruction-strict" else 2
        vals, keys, inc = [], [], []
        for p in per:
            for v in p[j]:
                vals.append(float(bool(v)))
                keys.append(p[0])
                inc.append(p[0] in incomplete)
        return Evidence(vals, keys, list(keys), inc, "clustered", n_failed)
    return None


@dataclass
class _Test:
    measured: float
    ci95: tuple[float, float]
    ci_method: str
    p: float
    test: str
    mdd: tuple[float | None, float | None]


def _test(ev: Evidence, claim: float, values: Sequence[float] | None = None) -> _Test:
    vals = list(ev.values if values is None else values)
    if ev.kind == "binomial":
        n = len(vals)
        k = int(round(sum(vals)))
        ci = cs.wilson_z(k / n, n, float(stats.norm.ppf(0.975)))
        return _Test(k / n, ci, "Wilson", cs.binom_pvalue(k, n, claim), "exact binomial", cs.min_detectable(n, claim))
    if ev.kind == "clustered":
        c = cs.cluster_ci(vals, ev.clusters)
        half = (c.ci95[1] - c.ci95[0]) / 2
        se = half / float(stats.t.ppf(0.975, max(1, c.clusters - 1))) if half > 0 else 0.0
        se_claim = math.sqrt(claim * (1 - claim) * c.deff / c.n) if 0 < claim < 1 else se
        t = abs(c.mean - claim) / se_claim if se_claim > 0 else (0.0 if c.mean == claim else math.inf)
        p = float(2 * stats.t.sf(t, max(1, c.clusters - 1)))
        n_eff = max(1, int(c.n / c.deff))
        return _Test(c.mean, c.ci95, c.method, p, f"cluster-robust t ({c.clusters} clusters)",
                     cs.min_detectable(n_eff, claim))  # fmt: skip
    per_item: dict[str, list[float]] = defaultdict(list)
    for v, key in zip(vals, ev.clusters, strict=True):
        per_item[key].append(v)
    item_vals = [sum(v) / len(v) for v in per_item.values()]
    b = cs.bootstrap_test(item_vals, claim)
    m = cs.min_detectable_se(b.se)
    return _Test(b.mean, b.ci95, f"bootstrap over {len(item_vals)} items", b.p_value,
                 f"bootstrap over items ({b.resamples})", (m, m))  # fmt: skip


def _word(measured: float, claim: float, p: float, alpha: float) -> str:
    if p < alpha:
        return "lower than claimed" if measured < claim else "higher than claimed"
    return "consistent"


def audit(cmp: Comparison, tolerance: float = DEFAULT_TOLERANCE, alpha: float = cs.ALPHA) -> list[Finding]:
    """Every claim of the comparison's references against every run that measured it."""
    runs = {r.label: r for r in cmp.runs}
    findings: list[Finding] = []
    tests: list[tuple[Finding, Evidence | None, _Test]] = []
    for claim in cmp.claims:
        for label, m in claim["runs"].items():
            if m is None:
                continue
            run = runs[label]
            f = Finding(claim["reference"], claim["column"], claim["label"], claim["eval"], claim["metric"], label,
                        claim["claimed"], m["measured"], m.get("ci95"), "run's interval", m["diff"], "none", None)  # fmt: skip
            findings.append(f)
            if m["kind"] in ("unlike protocol", "deviates from protocol"):
                f.verdict = "not comparable"
                f.reasons = list(m["differences"])
                continue
            if m["kind"] == "subset":
                f.reasons.append("; ".join(m["differences"]) + " (a random subset: tested as drawn)")
            ev = evidence(run, claim["eval"], claim["metric"])
            macro = _macro_test(run, claim["eval"], claim["claimed"]) if claim["metric"] == "macro" else None
            if macro is not None:
                f.n = int(_get(run.results, "evals", claim["eval"], "macro_subjects") or 0)
                tests.append((f, None, macro))
                continue
            if ev is None or not ev.values:
                f.verdict = "inconclusive"
                f.reasons.append("no scored items for this metric in the run's samples")
                continue
            tests.append((f, ev, _test(ev, claim["claimed"])))
    adjusted = cs.holm([t.p for _, _, t in tests])
    for (f, ev, t), p_adj in zip(tests, adjusted, strict=True):
        f.measured, f.ci95, f.ci_method = t.measured, list(t.ci95), t.ci_method
        f.diff = t.measured - f.claimed
        f.p_value, f.p_holm, f.test, f.mdd = t.p, p_adj, t.test, list(t.mdd)
        level = alpha * t.p / p_adj if p_adj > 0 else alpha  # the level Holm's step gives this test
        word = _word(t.measured, f.claimed, t.p, level)
        if ev is not None:
            f.n = len(set(ev.items))
            f.n_incomplete = len({c for c, i in zip(ev.items, ev.incomplete, strict=True) if i}) + ev.n_failed
            if f.n_incomplete:
                word = _bounded(f, ev, t, level, word)
        if word in ("lower than claimed", "higher than claimed", "inconclusive"):
            f.verdict = word
            if word != "inconclusive":
                f.reasons.append(f"p = {p_adj:.2g} after Holm's adjustment over {len(adjusted)} claims")
            continue
        reach = list(t.mdd)
        if any(d is None or d > tolerance for d in reach):
            f.verdict = "inconclusive"
            shown = ", ".join("-" if d is None else f"{d:.3f}" for d in reach)
            f.reasons.append(f"too few items: n = {f.n} detects only differences of ({shown}) down/up at 80% power, "
                             f"more than the tolerance {tolerance:.3f}")  # fmt: skip
        else:
            f.verdict = "consistent"
            f.reasons.append(f"no significant difference (p = {p_adj:.2g} after Holm); the items detect "
                             f"{max(d for d in reach if d is not None):.3f} at 80% power")  # fmt: skip
    return findings


def _bounded(f: Finding, ev: Evidence, t: _Test, level: float, word: str) -> str:
    """The verdict when every incomplete item is wrong and when every one is right; inconclusive if they differ."""
    nf = ev.n_failed  # failed items have no observation: they join as incomplete ones
    pads = [f"failed-{j}" for j in range(nf)]
    full = Evidence([*ev.values, *([0.0] * nf)], [*ev.clusters, *pads], [*ev.items, *pads],
                    [*ev.incomplete, *([True] * nf)], ev.kind)  # fmt: skip
    low = [0.0 if i else v for v, i in zip(full.values, full.incomplete, strict=True)]
    high = [1.0 if i else v for v, i in zip(full.values, full.incomplete, strict=True)]
    t_low, t_high = _test(full, f.claimed, low), _test(full, f.claimed, high)
    f.bounds = [t_low.measured, t_high.measured]
    w_low = _word(t_low.measured, f.claimed, t_low.p, level)
    w_high = _word(t_high.measured, f.claimed, t_high.p, level)
    if w_low != w_high:
        what = "truncated, unparsed" + (" or failed" if nf else "")
        f.reasons.append(f"{f.n_incomplete} incomplete items ({what}): all wrong gives {t_low.measured:.4f} "
                         f"({w_low}), all right {t_high.measured:.4f} ({w_high}); the claim lies between")  # fmt: skip
        return "inconclusive"
    return word


def _macro_test(run: Run, eval_name: str, claim: float) -> _Test | None:
    ev = _get(run.results, "evals", eval_name)
    ci = ev.get("macro_ci95") if isinstance(ev, dict) else None
    value = ev.get("macro") if isinstance(ev, dict) else None
    if not ci or value is None:
        return None
    se = (ci[1] - ci[0]) / (2 * float(stats.norm.ppf(0.975)))
    z = abs(value - claim) / se if se > 0 else math.inf
    m = cs.min_detectable_se(se)
    return _Test(value, (ci[0], ci[1]), "stratified by subject (the run's)", float(2 * stats.norm.sf(z)),
                 "normal test on the stratified macro interval", (m, m))  # fmt: skip


def _mdd_text(mdd: Sequence[float | None]) -> str:
    return "/".join("-" if d is None else f"{d:.3f}" for d in mdd)


def markdown(findings: Sequence[Finding], tolerance: float) -> str:
    lines = [
        "| claim | claimed | run | measured | 95% CI | diff | p (Holm) | detectable (-/+) | verdict | why |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in findings:
        ci = f"[{f.ci95[0]:.4f}, {f.ci95[1]:.4f}]" if f.ci95 else ""
        lines.append(
            f"| {f.label} ({f.column}) | {f.claimed:.4f} | {f.run} | "
            + ("-" if f.measured is None else f"{f.measured:.4f}")
            + f" | {ci} | " + ("-" if f.diff is None else f"{f.diff:+.4f}")
            + " | " + ("-" if f.p_holm is None else f"{f.p_holm:.2g}")
            + f" | {_mdd_text(f.mdd)} | **{f.verdict}** | {'; '.join(f.reasons)} |"
        )  # fmt: skip
    lines += ["", method_note(tolerance)]
    return "\n".join(lines) + "\n"


def method_note(tolerance: float) -> str:
    return (f"Tests: exact binomial (independent 0/1 items), cluster-robust t (an item's repeats, MMLU's subjects), "
            f"bootstrap over items (IFEval's mean of four, pass@k); p-values Holm-adjusted over every claim tested; "
            f"'detectable' is the smallest difference from the claim found with 80% power; 'consistent' needs it at "
            f"most the tolerance {tolerance:.3f}.")  # fmt: skip
