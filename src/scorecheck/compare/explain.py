"""Why two numbers differ (``scorecheck explain RUN_A RUN_B``): a waterfall of ``score(B) - score(A)`` per eval.

Both runs are read from their directories (``results.json`` + ``samples.jsonl``: a run or a ``scorecheck grade``
output; no store, no model request). Each step changes one thing and is a paired difference on the samples both
runs graded, so the steps telescope and sum to the total difference:

- ``items (A)``: A's full score -> A on the common samples (B's subset / repeats);
- ``reasoning split``: A's stored responses with B's reasoning format;
- ``extraction``: then with B's answer extraction;
- ``grader``: then with B's grader (symbolic, the IFEval checker, sandboxed HumanEval); an LLM judge is not asked
  again: that step is then 0 and its effect stays in the remainder, labelled;
- ``remainder``: A's responses regraded as B -> B's stored grades: what only new requests explain (the prompt, the
  system prompt, sampling: the model answered differently);
- ``items (B)``: B on the common samples -> B's full score.

A step reuses the stored grade of a sample it does not change (a HumanEval program runs again only when its
extraction changed, and then in the sandbox). IFEval's per-item value is its contribution to the mean of four (as in
``compare.model.sample_scores``), computed on the set of items averaged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scorecheck import crossgrade
from scorecheck.benchmarks import Benchmark, Graded, Item, get_benchmarks
from scorecheck.compare.model import Run, load_run
from scorecheck.compare.paired import DEFAULT_RESAMPLES, paired_test
from scorecheck.compare.plot import save_png
from scorecheck.config import Resolved, config_from_run
from scorecheck.errors import UsageError
from scorecheck.protocols import get_profile
from scorecheck.protocols.diff import eval_fields
from scorecheck.reasoning import ReasoningFormat, parse_format

Key = tuple[str, int]
REMAINDER = "remainder: new requests only"
REMAINDER_NOTE = "only new requests explain it (prompts, system prompt, sampling: the model answered differently)"
REQUEST_FIELDS = ("user prompt", "system prompts", "sampling")
"""The protocol fields (``protocols diff``) that change the request itself: what only a run under P measures."""


@dataclass
class Value:
    """One sample's grade at one stage: the score, and for IFEval the per-checker results it came from."""

    score: float
    checkers: dict[str, Any] | None = None


@dataclass
class Step:
    name: str
    label: str
    diff: float
    ci95: list[float] | None
    p_value: float | None
    test: str
    n: int
    changed: int = 0
    """Items whose value this step changed."""
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Unmeasured:
    """What stays unexplained against a protocol: the requests P would send differ, so only a run under P says what
    the model answers; the fields are named, no number is given."""

    label: str
    fields: list[str]
    """Request fields the two protocols' objects differ in (``scorecheck protocols diff``)."""
    samples_differ: int
    """Samples whose request P would not have sent byte for byte (crossgrade's plan)."""
    request_fields: dict[str, int]
    """Per request field: in how many of those samples it differs."""


@dataclass
class Explanation:
    eval: str
    a: str
    b: str
    score_a: float
    score_b: float
    total: float
    n_common: int
    steps: list[Step]
    sides: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per run: protocol, reasoning format, extraction, grader, items, samples."""
    notes: list[str] = field(default_factory=list)
    mode: str = "runs"
    """``runs``: A -> B, two runs; ``protocol``: one run -> its stored responses graded as ``protocol`` grades."""
    protocol: str | None = None
    unmeasured: Unmeasured | None = None
    """``protocol`` mode: the remainder no stored response measures (never a number)."""
    missing: list[str] = field(default_factory=list)
    """``protocol`` mode: the samples P draws that the run has no graded answer for (``item#sample``)."""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps_sum"] = sum(s.diff for s in self.steps)
        return d


@dataclass
class _Side:
    run: Run
    bench: Benchmark
    fmt: ReasoningFormat
    judge: bool
    records: dict[Key, dict[str, Any]]
    protocol: str
    items: dict[Key, Item] | None = None
    """Protocol side: the item each sample is graded with (crossgrade's plan: P's where P sends the same request,
    else the run's own, forced); None: each record's own."""
    plan: crossgrade.EvalPlan | None = None

    @property
    def checker(self) -> str | None:
        return getattr(self.bench, "checker", None)

    def describe(self) -> dict[str, Any]:
        return {"protocol": self.protocol,
                "reasoning": str(self.fmt), "extraction": repr(self.bench.spec.extraction),
                "grader": "llm-judge" if self.judge else self.bench.spec.grader,
                "items": len({k[0] for k in self.records}), "samples": len(self.records)}  # fmt: skip


def _protocol_of(run: Run, eval_name: str) -> str:
    ev = run.record.evals[eval_name]
    if ev.protocol is not None and ev.protocol.name:
        return ev.protocol.name
    return run.record.protocol.name


def _side(run: Run, eval_name: str) -> _Side:
    protocol = _protocol_of(run, eval_name)
    try:
        profile = get_profile(protocol)
    except UsageError as e:
        raise UsageError(f"{run.path}: {e}") from None
    bench = get_benchmarks([eval_name], profile)[0]
    recs = {(str(s["item_id"]), int(s.get("sample_index") or 0)): s for s in run.samples if s.get("eval") == eval_name}
    recorded = [f for s in recs.values() if (f := s.get("reasoning_format"))]
    if recorded:
        fmt = parse_format(max(set(recorded), key=recorded.count))
    else:
        ev = run.record.evals[eval_name]
        spec = ev.protocol.reasoning if ev.protocol is not None else None
        cfg = run.record.config.reasoning
        fmt = parse_format(spec) if spec else bench.reasoning(parse_format(cfg) if cfg else None,
                                                               run.record.config.system_prompt.name)  # fmt: skip
    judge = any(str(s.get("grader") or "").startswith("judge") for s in recs.values())
    return _Side(run, bench, fmt, judge, recs, protocol)


def _protocol_side(a: _Side, eval_name: str, protocol: str) -> tuple[_Side, list[Key], list[str]]:
    """Side B as protocol ``protocol`` would grade A's run: P's benchmark, reasoning split (with the run's system
    prompt), the samples P draws that the run has, each graded with crossgrade's item (``--force-scoring``). Also the
    samples P draws that the run lacks, and notes."""
    notes = []
    described = {**a.run.results["config"], "evals": [eval_name], "protocol": a.protocol}
    graded_only = (a.run.record.source or {}).get("command") == "grade"
    if graded_only:  # graded responses: no system prompt or sampling recorded (the requests were not scorecheck's)
        described["system_prompt"] = {"name": "none"}
        notes.append(f"{eval_name}: {a.run.label} is a `scorecheck grade` output: its system prompt and sampling are "
                     f"not recorded, so its requests are compared with {protocol}'s on the user prompt only")  # fmt: skip
    described.pop("samples", None)  # P's own draws (repeats, samples per item), at the run's --limit
    target = Resolved(config_from_run(crossgrade.retarget(described, protocol), {}))
    bench = target.benchmarks[0]
    items, _ = bench.load(target.cfg.limit)
    own = target if graded_only else Resolved(config_from_run(described, {}))
    sampling = target.sampling() if graded_only else dict(a.run.record.config.sampling)
    answered = {k: r for k, r in a.records.items() if r.get("score") is not None}
    sent = [(r, {"messages": own.messages(r.get("prompt") or "", a.bench), **sampling}) for r in answered.values()]
    plan = crossgrade.plan_eval(target, bench, items, sent, force=True)
    wanted = [(it.id, s) for it in items for s in range(target.samples_for(bench))]
    recs = {k: r for k in wanted if (r := answered.get(k)) is not None}
    missing = [k for k in wanted if k not in answered]
    side = _Side(a.run, bench, target.reasoning_for(bench), False, recs, protocol, plan.selection(), plan)
    return side, missing, notes


def _unmeasured(a: _Side, b: _Side, common: list[Key]) -> Unmeasured:
    assert b.plan is not None
    own, other = get_profile(a.protocol), get_profile(b.protocol)
    fa, fb = eval_fields(own, a.bench.spec), eval_fields(other, b.bench.spec)
    fields = [f for f in REQUEST_FIELDS if fa[f] != fb[f]]
    graded = set(common)
    # the request fields only: a sample outside P's items or draws is the items step's, not the remainder's
    request = {k: [f for f in v if not f.startswith(("item ", "sample "))] for k, v in b.plan.differ.items()}
    differ = {k: v for k, v in request.items() if v and k in graded}
    counts = crossgrade.EvalPlan(differ=differ).field_counts()
    if fields or differ:
        named = ", ".join(fields or sorted(counts))
        label = f"not measured: needs a run under {b.protocol} (prompts, sampling, system prompt differ: {named})"
    else:
        label = f"nothing left to measure: {b.protocol} would have sent the run's requests byte for byte"
    return Unmeasured(label, fields, len(differ), dict(sorted(counts.items())))


def _stored(rec: dict[str, Any]) -> Value:
    info = rec.get("grade_info")
    checkers = info.get("checkers") if isinstance(info, dict) else None
    return Value(float(rec["score"]), checkers)


def _graded(g: Graded) -> Value:
    checkers = g.info.get("checkers") if isinstance(g.info, dict) else None
    return Value(float(g.score), checkers)


def grade(bench: Benchmark, item: Item, extracted: str | None) -> Graded:
    """The benchmark's grading, inline: its worker grader (symbolic math, the HumanEval sandbox) for parsed answers."""
    if extracted is not None and bench.worker_grader is not None:
        return bench.worker_grader(item, extracted)
    return bench.grade(item, extracted)


def item_values(stage: dict[Key, Value], eval_name: str, checker: str | None) -> dict[str, float]:
    """Per item: the mean over its samples of the value a mean over items turns into the score. IFEval: a prompt's
    contribution to the mean of four under ``checker``, z = (prompt-strict + prompt-loose + P * (instructions
    followed, strict + loose) / I) / 4 over the P prompts and I instructions of ``stage``."""
    by_item: dict[str, list[float]] = {}
    if eval_name == "ifeval" and checker:
        per = [(k, v.checkers[checker]) for k, v in stage.items() if v.checkers and checker in v.checkers]
        n_p = len(per)
        n_i = sum(len(ch.get("strict") or []) for _, ch in per)
        if len(per) == len(stage) and n_i:
            for k, ch in per:
                st, lo = list(ch.get("strict") or []), list(ch.get("loose") or [])
                z = (float(all(st)) + float(all(lo)) + n_p * (sum(st) + sum(lo)) / n_i) / 4
                by_item.setdefault(k[0], []).append(z)
            return {k: sum(v) / len(v) for k, v in by_item.items()}
    for k, v in stage.items():
        by_item.setdefault(k[0], []).append(v.score)
    return {k: sum(v) / len(v) for k, v in by_item.items()}


def _mean(values: dict[str, float]) -> float:
    return sum(values.values()) / len(values) if values else 0.0


def _paired_step(name: str, label: str, eval_name: str, x: dict[str, float], y: dict[str, float], resamples: int,
                 note: str = "") -> Step:  # fmt: skip
    diff = _mean(y) - _mean(x) + 0.0
    changed = sum(1 for k in x if x[k] != y[k])
    if changed == 0 and x == y:
        return Step(name, label, diff, [0.0, 0.0], 1.0, "no sample changed", len(x), 0, note)
    p = paired_test(eval_name, "score", "before", "after", x, y, resamples=resamples)
    return Step(name, label, diff, list(p.ci95) if p.ci95 else None, p.p_value, p.test, len(x), changed, note)


def _subset_step(name: str, label: str, full: dict[str, float], sub: dict[str, float], forward: bool,
                 resamples: int) -> Step:  # fmt: skip
    """mean(sub) - mean(full) (or the reverse): its interval by a bootstrap over the full set's items."""
    diff = (_mean(sub) - _mean(full)) * (1 if forward else -1) + 0.0
    if set(sub) == set(full):
        return Step(name, label, diff, [diff, diff], None, "same items", len(full))
    keys = sorted(full)
    vals = np.array([full[k] for k in keys])
    inside = np.array([k in sub for k in keys])
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(keys), size=(resamples, len(keys)))
    v, m = vals[idx], inside[idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (v * m).sum(axis=1) / m.sum(axis=1) - v.mean(axis=1)
    d = d[np.isfinite(d)] * (1 if forward else -1)
    ci = [float(q) for q in np.quantile(d, [0.025, 0.975])] if d.size else None
    return Step(name, label, diff, ci, None, f"bootstrap over {len(keys)} items ({resamples})", len(sub))


def explain_eval(run_a: Run, run_b: Run, eval_name: str, resamples: int = DEFAULT_RESAMPLES) -> Explanation:
    return _explain(_side(run_a, eval_name), _side(run_b, eval_name), eval_name, resamples)


def explain_protocol_eval(run: Run, eval_name: str, protocol: str,
                          resamples: int = DEFAULT_RESAMPLES) -> Explanation:  # fmt: skip
    """The run's score -> its stored responses graded as ``protocol`` grades them; the rest, unmeasured."""
    a = _side(run, eval_name)
    b, missing, notes = _protocol_side(a, eval_name, protocol)
    return _explain(a, b, eval_name, resamples, missing, notes)


def _explain(a: _Side, b: _Side, eval_name: str, resamples: int, missing: list[Key] | None = None,
             notes: list[str] | None = None) -> Explanation:  # fmt: skip
    """The one path of both modes: side B is another run (its stored grades end the waterfall) or a protocol
    (``b.plan`` set: the waterfall ends at the grader step, the remainder is named, not measured)."""
    run_a, run_b = a.run, b.run
    against = b.plan is not None
    label_b = f"{run_a.label} graded as {b.protocol}" if against else run_b.label
    notes = list(notes or [])
    ok_a = {k: r for k, r in a.records.items() if r.get("score") is not None}
    ok_b = {k: r for k, r in b.records.items() if r.get("score") is not None}
    common = sorted(set(ok_a) & set(ok_b))
    if not common:
        raise UsageError(f"{eval_name}: {run_a.label} and {label_b} graded no sample in common "
                         "(item ids and sample indices must match): nothing to explain")  # fmt: skip
    full_a = item_values({k: _stored(r) for k, r in ok_a.items()}, eval_name, a.checker)

    # Stage 0: A's stored grades on the common samples; then one change at a time.
    s0 = {k: _stored(ok_a[k]) for k in common}
    s1: dict[Key, Value] = {}
    s2: dict[Key, Value] = {}
    s3: dict[Key, Value] = {}
    same_fmt = str(a.fmt) == str(b.fmt)
    same_ext = repr(a.bench.spec.extraction) == repr(b.bench.spec.extraction)
    same_grader = a.bench.spec.grader == b.bench.spec.grader and a.judge == b.judge
    a_judge_kept = 0
    for k in common:
        rec = ok_a[k]
        item = b.items[k] if b.items is not None else None
        item = item or Item(k[0], rec.get("prompt") or "", rec.get("gold") or "", rec.get("meta") or {})
        text_a, ext_a = rec.get("answer_text") or "", rec.get("extracted")
        # (b) B's reasoning split of A's response
        if same_fmt or rec.get("response") is None:
            text_b = text_a
        else:
            message = {"reasoning": rec.get("reasoning")} if b.fmt.name == "reasoning-field" else None
            text_b = b.fmt.apply(rec.get("response"), message).answer

        def regrade(e: str | None, item: Item = item) -> Value:
            return _graded(grade(a.bench, item, e))

        ext1 = ext_a
        if text_b == text_a:
            s1[k] = s0[k]
        else:
            ext1 = a.bench.extract(text_b)
            s1[k] = regrade(ext1) if ext1 != ext_a else s0[k]
        # (c) B's extraction
        ext2 = ext1 if same_ext else b.bench.extract(text_b)
        s2[k] = s1[k] if ext2 == ext1 else regrade(ext2)
        if a.judge and (s1[k] is not s0[k] or s2[k] is not s1[k]):
            s1[k] = s2[k] = s0[k]  # A's judge is not asked again: its stored grade is kept
            a_judge_kept += 1
        # (d) B's grader
        checkers2 = s2[k].checkers
        if same_grader or b.judge:
            s3[k] = s2[k]
        elif b.checker and checkers2 and b.checker in checkers2:
            s3[k] = Value(float(all(checkers2[b.checker]["strict"])), checkers2)
        else:
            s3[k] = _graded(grade(b.bench, item, ext2))
    v0 = item_values(s0, eval_name, a.checker)
    v1 = item_values(s1, eval_name, a.checker)
    v2 = item_values(s2, eval_name, a.checker)
    v3 = item_values(s3, eval_name, b.checker)
    grader_note = ""
    if b.judge and not same_grader:
        grader_note = "B's grader is an LLM judge: not recomputed (no request is made); its effect is in the remainder"
        notes.append(f"{eval_name}: {grader_note}")
    if a_judge_kept:
        notes.append(f"{eval_name}: A was graded by an LLM judge: {a_judge_kept} sample(s) whose answer B's reasoning "
                     "split or extraction changes keep A's stored grade; their change is in the remainder")  # fmt: skip
    items_a = (f"items: {b.protocol}'s subset and repeats that {run_a.label} has" if against
               else f"items: {run_a.label} on the common samples")  # fmt: skip
    steps = [
        _subset_step("items_a", items_a, full_a, v0, True, resamples),
        _paired_step("reasoning", f"reasoning split {a.fmt} -> {b.fmt}", eval_name, v0, v1, resamples),
        _paired_step(
            "extraction",
            "extraction: " + ("the same" if same_ext else f"{a.protocol}'s -> {b.protocol}'s"),
            eval_name,
            v1,
            v2,
            resamples,
        ),  # fmt: skip
        _paired_step("grader", f"grader {_grader(a)} -> {_grader(b)}", eval_name, v2, v3, resamples, grader_note),
    ]
    unmeasured = None
    if against:
        unmeasured = _unmeasured(a, b, common)
        score_b = _mean(v3)
        if missing:
            shown = ", ".join(i + (f"#{s}" if s else "") for i, s in missing[:10]) + (" …" if len(missing) > 10 else "")
            notes.append(f"{eval_name}: {b.protocol} draws {len(missing)} sample(s) {run_a.label} has no graded answer "
                         f"for (not invented; only a run under {b.protocol} has them): {shown}")  # fmt: skip
    else:
        full_b = item_values({k: _stored(r) for k, r in ok_b.items()}, eval_name, b.checker)
        v4 = item_values({k: _stored(ok_b[k]) for k in common}, eval_name, b.checker)
        fields = _request_differences(a, b, common)
        if run_a.record.model != run_b.record.model:
            fields.append(f"model ({run_a.record.model} vs {run_b.record.model})")
        remainder_note = REMAINDER_NOTE + ("; differs: " + ", ".join(fields) if fields
                                           else "; no prompt or sampling difference recorded")  # fmt: skip
        remainder = REMAINDER + (" (and the LLM judge)" if grader_note or a_judge_kept else "")
        steps.append(_paired_step("remainder", remainder, eval_name, v3, v4, resamples, remainder_note))
        steps.append(_subset_step("items_b", f"items: {run_b.label}'s other samples", full_b, v4, False, resamples))
        score_b = _mean(full_b)
    score_a = _mean(full_a)
    for run, v in ((run_a, score_a), *(() if against else ((run_b, score_b),))):
        recorded_score = run.record.evals[eval_name].score
        if recorded_score is not None and abs(recorded_score - v) > 1e-9:
            notes.append(f"{eval_name}: {run.label}'s recorded score {recorded_score:.6f} is not the mean of its "
                         f"per-item values {v:.6f}; the waterfall explains the latter")  # fmt: skip
    return Explanation(eval_name, run_a.label, label_b, score_a, score_b, score_b - score_a, len(common), steps,
                       {"a": a.describe(), "b": b.describe()}, notes, "protocol" if against else "runs",
                       b.protocol if against else None, unmeasured,
                       [i + (f"#{s}" if s else "") for i, s in missing or []])  # fmt: skip


def _grader(s: _Side) -> str:
    return "llm-judge" if s.judge else s.bench.spec.grader


def _request_differences(a: _Side, b: _Side, common: list[Key]) -> list[str]:
    """What the two runs' requests differ in, from what both recorded: user prompts, system prompt, sampling."""
    out = []
    n = sum(1 for k in common if a.records[k].get("prompt") != b.records[k].get("prompt"))
    if n:
        out.append(f"user prompt ({n} of {len(common)} samples)")
    ca, cb = a.run.record.config, b.run.record.config
    if (ca.system_prompt.sha256, ca.system_prompt.text) != (cb.system_prompt.sha256, cb.system_prompt.text):
        out.append(f"system prompt ({ca.system_prompt.name} vs {cb.system_prompt.name})")
    sa, sb = dict(ca.sampling), dict(cb.sampling)
    keys = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
    if keys:
        out.append("sampling (" + ", ".join(f"{k} {sa.get(k)} vs {sb.get(k)}" for k in keys) + ")")
    return out


def explain(path_a: Path, path_b: Path, evals: list[str] | None = None, labels: tuple[str, str] | None = None,
            resamples: int = DEFAULT_RESAMPLES) -> list[Explanation]:  # fmt: skip
    """A waterfall per eval both runs have (or those named)."""
    la, lb = labels or (None, None)
    run_a, run_b = load_run(path_a, la), load_run(path_b, lb)
    if run_a.label == run_b.label:
        run_a.label, run_b.label = "A", "B"
    return explain_runs(run_a, run_b, evals, resamples)


def explain_runs(run_a: Run, run_b: Run, evals: list[str] | None = None,
                 resamples: int = DEFAULT_RESAMPLES) -> list[Explanation]:  # fmt: skip
    both = [e for e in run_a.record.evals if e in run_b.record.evals]
    if evals:
        unknown = [e for e in evals if e not in both]
        if unknown:
            raise UsageError(f"--eval {', '.join(unknown)}: not in both runs; both have: {', '.join(both) or 'none'}")
        both = list(evals)
    if not both:
        raise UsageError(f"{run_a.path} and {run_b.path} have no eval in common: nothing to explain")
    for r in (run_a, run_b):
        if not r.samples:
            raise UsageError(f"{r.path}: no samples.jsonl: explain needs the stored responses")
    return [explain_eval(run_a, run_b, e, resamples) for e in both]


def explain_protocol(path: Path, protocol: str, evals: list[str] | None = None, label: str | None = None,
                     resamples: int = DEFAULT_RESAMPLES) -> tuple[list[Explanation], list[str]]:  # fmt: skip
    """A waterfall per eval of the run (or each ``--eval``) that ``protocol`` defines, and a line for each eval
    skipped (``protocol`` does not define it)."""
    profile = crossgrade.target_profile(protocol)
    run = load_run(path, label)
    have = list(run.record.evals)
    if evals:
        unknown = [e for e in evals if e not in have]
        if unknown:
            raise UsageError(f"--eval {', '.join(unknown)}: not in {run.path}; it has: {', '.join(have) or 'none'}")
        have = list(evals)
    if not run.samples:
        raise UsageError(f"{run.path}: no samples.jsonl: explain needs the stored responses")
    skipped = [f"{e}: skipped: protocol {protocol} does not define it (it defines {', '.join(profile.evals)})"
               for e in have if profile.canonical_eval(e) not in profile.evals]  # fmt: skip
    todo = [e for e in have if profile.canonical_eval(e) in profile.evals]
    if not todo:
        raise UsageError(f"--protocol {protocol} defines none of the evals asked for ({', '.join(have)}); it defines "
                         f"{', '.join(profile.evals)}")  # fmt: skip
    return [explain_protocol_eval(run, e, protocol, resamples) for e in todo], skipped


def _fmt_ci(ci: list[float] | None) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "-"


def rows(x: Explanation) -> list[list[str]]:
    out = [[f"{x.a} ({x.sides['a']['protocol']})", f"{x.score_a:.6f}", "", "", ""]]
    run = x.score_a
    for s in x.steps:
        run += s.diff
        out.append([s.label, f"{run:.6f}", f"{s.diff:+.6f}", _fmt_ci(s.ci95), str(s.changed) if s.changed else ""])
    end = x.b if x.protocol else f"{x.b} ({x.sides['b']['protocol']})"  # protocol mode: "RUN graded as P"
    out.append([end, f"{x.score_b:.6f}", f"{x.total:+.6f}", "total", ""])
    if x.unmeasured is not None:
        out.append([x.unmeasured.label, "-", "not measured", "-", ""])
    return out


HEADERS = ["step", "running score", "difference", "95% interval", "items changed"]


def markdown(xs: list[Explanation]) -> str:
    parts = ["# Why the two numbers differ", ""]
    for x in xs:
        parts += [f"## {x.eval}: {x.score_a:.6f} -> {x.score_b:.6f} ({x.total:+.6f})", "",
                  f"{x.n_common} samples {'graded as ' + x.protocol if x.protocol else 'in common'}.", "",
                  "| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]  # fmt: skip
        for r in rows(x):
            parts.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        parts.append("")
        for s in x.steps:
            if s.note:
                parts.append(f"- {s.label}: {s.note}")
        parts += [f"- {n}" for n in x.notes]
        if x.unmeasured is not None:
            parts.append(f"- {unmeasured_line(x.unmeasured)}")
        parts.append("")
    parts.append(METHOD)
    return "\n".join(parts) + "\n"


METHOD = ("Each step is a paired difference on the common samples (exact McNemar for 0/1 values, else a paired "
          "bootstrap; the interval a paired percentile bootstrap); the item steps' intervals are a bootstrap over the "
          "run's items. The steps sum to the total. Computed from the stored responses; no model request was made.")  # fmt: skip


def unmeasured_line(u: Unmeasured) -> str:
    per = ", ".join(f"{f} ({n})" for f, n in u.request_fields.items())
    return u.label + (f"; the run's requests differ from the protocol's in {u.samples_differ} sample(s): {per}"
                      if u.samples_differ else "")  # fmt: skip


def plot_png(xs: list[Explanation], path: Path | None = None) -> bytes:
    """A waterfall per eval: the start and end scores as bars, each step a floating bar from the running score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(xs), 1, figsize=(10, 3.6 * len(xs)), dpi=110, squeeze=False)
    for ax, x in zip(axes[:, 0], xs, strict=True):
        labels = [x.a] + [s.name for s in x.steps] + [x.b]
        bottoms, heights, colors = [0.0], [x.score_a], ["#4c72b0"]
        run = x.score_a
        for s in x.steps:
            bottoms.append(min(run, run + s.diff))
            heights.append(abs(s.diff))
            colors.append("#55a868" if s.diff > 0 else "#c44e52" if s.diff < 0 else "#999999")
            run += s.diff
        bottoms.append(0.0)
        heights.append(x.score_b)
        colors.append("#4c72b0")
        if x.unmeasured is not None:  # the remainder against a protocol: named, never drawn as a number
            labels.append("not measured")
            bottoms.append(0.0)
            heights.append(0.0)
            colors.append("#999999")
        ax.bar(range(len(labels)), heights, bottom=bottoms, color=colors, width=0.6)
        if x.unmeasured is not None:
            ax.annotate("needs a run\nunder " + (x.protocol or ""), (len(labels) - 1, x.score_b), ha="center",
                        va="center", fontsize=8, color="#555555")  # fmt: skip
        for i, s in enumerate(x.steps, start=1):
            ax.annotate(f"{s.diff:+.4f}", (i, bottoms[i] + heights[i]), ha="center", va="bottom", fontsize=8)
        lo = min(bottoms[1 : 1 + len(x.steps)] + [x.score_a, x.score_b])
        hi = max(b + h for b, h in zip(bottoms, heights, strict=True))
        pad = max(0.01, (hi - lo) * 0.3)
        ax.set_ylim(max(0.0, lo - pad), min(1.05, hi + pad) if hi <= 1 else hi + pad)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(f"{x.eval}: {x.score_a:.4f} -> {x.score_b:.4f} ({x.total:+.4f})", fontsize=10)
    return save_png(fig, path)
