"""``scorecheck explain``: waterfalls whose steps sum to the total and match the contribution each change is known to
make (synthetic runs graded by the real benchmarks), the IFEval checker step on Google's GPT-4 responses, and two
runs of the embedded model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import run_cli
from scorecheck.benchmarks import Graded, Item, get_benchmarks
from scorecheck.compare import explain as ex
from scorecheck.errors import UsageError
from scorecheck.protocols import get_profile
from scorecheck.reasoning import parse_format
from scorecheck.report import eval_result
from scorecheck.results import build_results, split_timing, write_json, write_jsonl


def _write(path: Path, protocol: str, eval_name: str, records: list[dict[str, Any]], system_prompt: str = "none",
           result: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """A run directory of ``records`` (one or more evals; ``eval_name`` first); ``config`` overrides the recorded
    configuration's fields."""
    path.mkdir(parents=True)
    names = list(dict.fromkeys([eval_name, *(r["eval"] for r in records)]))
    evals = {}
    for name in names:
        bench = get_benchmarks([name], get_profile(protocol))[0]
        evals[name] = (result if name == eval_name else None) or eval_result(bench, [r for r in records
                                                                                     if r["eval"] == name])  # fmt: skip
    cfg = {"limit": None, "sampling": {"temperature": 0.0}, "evals": names, "system_prompt": {"name": system_prompt},
           **(config or {})}  # fmt: skip
    results = build_results(model="m", protocol={"name": protocol}, evals=evals, notes=[], started=0.0, ended=1.0,
                            config=cfg)  # fmt: skip
    write_json(path / "results.json", results)
    write_jsonl(path / "samples.jsonl", (split_timing(s)[0] for s in records))
    return path


def _graded_run(path: Path, protocol: str, fmt: str, responses: dict[str, str], judge: bool = False) -> Path:
    """A run directory of MMLU records graded as ``protocol`` grades them (its benchmark's extraction and grader,
    reasoning format ``fmt``): the stored grades are the real pipeline's; ``judge``: as if an LLM judge had called
    every answer right."""
    bench = get_benchmarks(["mmlu"], get_profile(protocol))[0]
    f = parse_format(fmt)
    recs = []
    for item_id, resp in responses.items():
        split = f.apply(resp)
        ext = bench.extract(split.answer)
        g = bench.grade(Item(item_id, "q", "B", {"subject": "s", "category": "c"}), ext)
        if judge:
            g = Graded(1.0, "judge:gpt-4o")
        recs.append({"eval": "mmlu", "item_id": item_id, "sample_index": 0, "prompt": f"question {item_id}",
                     "gold": "B", "meta": {"subject": "s", "category": "c"}, "status": "ok", "response": resp,
                     "reasoning": split.reasoning, "answer_text": split.answer, "extracted": ext, "score": g.score,
                     "grader": g.grader, "reasoning_format": str(f),
                     "flags": {"unparsed": ext is None, "missing_tag": split.missing_tag}})  # fmt: skip
    return _write(path, protocol, "mmlu", recs)


# Answers whose fate under each change is known. Gold is B throughout.
SPLIT = "<thinking>First guess. Answer: C</thinking><output>Answer: B</output>"
"""Right under glaive-2024's reflection split (the <output> part); wrong with none (the first Answer: is C)."""
NEWLINE = "<output>Answer:\nB</output>"
"""Right under glaive-2024's extraction (Answer\\s*: crosses the newline); unparsed under simple-evals' ([ \\t]*)."""
RIGHT, WRONG = "Answer: B", "Answer: A"


def test_synthetic_mmlu_waterfall_each_step_its_known_value(tmp_path: Path) -> None:
    # A: glaive-2024 (reflection), 10 items; B: simple-evals (no split), items 0-7 and two of its own (10, 11).
    a_kinds = [SPLIT, SPLIT, SPLIT, NEWLINE, NEWLINE, RIGHT, WRONG, WRONG, RIGHT, WRONG]
    a = _graded_run(tmp_path / "a", "glaive-2024", "reflection", {f"i{i}": r for i, r in enumerate(a_kinds)})
    # B answered items 6 and 7 differently (new requests: right where A was wrong), item 5 wrong where A was right
    b_resp = {f"i{i}": r for i, r in enumerate(a_kinds[:8])}
    b_resp.update({"i5": WRONG, "i6": RIGHT, "i7": RIGHT, "i10": RIGHT, "i11": WRONG})
    b = _graded_run(tmp_path / "b", "simple-evals", "none", b_resp)

    (x,) = ex.explain(a, b)
    steps = {s.name: s for s in x.steps}
    n_c = 8
    a_full = 7 / 10  # SPLIT x3, NEWLINE x2, RIGHT at 5 and 8
    a_common = 6 / 8  # items 0-7: SPLIT x3, NEWLINE x2, RIGHT at 5
    assert x.score_a == pytest.approx(a_full)
    assert steps["items_a"].diff == pytest.approx(a_common - a_full)
    assert steps["reasoning"].diff == pytest.approx(-3 / n_c)  # the three SPLIT answers now read C
    assert steps["reasoning"].changed == 3
    assert steps["extraction"].diff == pytest.approx(-2 / n_c)  # the two NEWLINE answers unparsed
    assert steps["extraction"].changed == 2
    assert steps["grader"].diff == 0 and steps["grader"].changed == 0  # exact-letter under both
    # regraded as B, A's common items score 1/8 (item 5); B's stored: 6, 7 right -> 2/8
    assert steps["remainder"].diff == pytest.approx(2 / 8 - 1 / 8)
    assert steps["remainder"].changed == 3
    b_full = 3 / 10  # items 6, 7, 10
    assert x.score_b == pytest.approx(b_full)
    assert steps["items_b"].diff == pytest.approx(b_full - 2 / 8)
    assert x.total == pytest.approx(b_full - a_full)
    assert abs(sum(s.diff for s in x.steps) - x.total) < 1e-12
    assert x.n_common == n_c
    assert "user prompt" not in steps["remainder"].note  # same prompts: nothing recorded explains the remainder
    # every interval brackets its step
    for s in x.steps:
        assert s.ci95 is not None and s.ci95[0] - 1e-12 <= s.diff <= s.ci95[1] + 1e-12, s


def _ifeval_rec(i: int, ref: tuple[list[bool], list[bool]], gl: tuple[list[bool], list[bool]], checker: str,
                reasoning_format: str = "none") -> dict[str, Any]:  # fmt: skip
    checkers = {"reference": {"strict": ref[0], "loose": ref[1]}, "glaive-2024": {"strict": gl[0], "loose": gl[1]}}
    own = checkers[checker]
    return {"eval": "ifeval", "item_id": str(i), "sample_index": 0, "prompt": f"p{i}", "gold": "",
            "meta": {"instruction_id_list": [f"punctuation:no_comma{j}" for j in range(len(ref[0]))]},
            "status": "ok", "response": f"r{i}", "answer_text": f"r{i}", "extracted": f"r{i}",
            "score": float(all(own["strict"])), "grader": f"ifeval-{checker}", "reasoning_format": reasoning_format,
            "grade_info": {"checkers": checkers}}  # fmt: skip


def test_synthetic_ifeval_checker_step_is_the_mean_of_four_by_hand(tmp_path: Path) -> None:
    # Three prompts, five instructions; the checkers differ on prompt 1's second instruction (strict and loose).
    per = [
        (([True], [True]), ([True], [True])),
        (([True, False], [True, False]), ([True, True], [True, True])),
        (([False, False], [False, True]), ([False, False], [False, True])),
    ]
    ra = [_ifeval_rec(i, r, g, "reference") for i, (r, g) in enumerate(per)]
    rb = [_ifeval_rec(i, r, g, "glaive-2024") for i, (r, g) in enumerate(per)]
    a = _write(tmp_path / "a", "reference", "ifeval", ra)
    b = _write(tmp_path / "b", "glaive-2024", "ifeval", rb)
    (x,) = ex.explain(a, b)

    def mean_of_four(strict: list[list[bool]], loose: list[list[bool]]) -> float:
        ps = sum(all(s) for s in strict) / 3
        pl = sum(all(s) for s in loose) / 3
        return (ps + pl + sum(map(sum, strict)) / 5 + sum(map(sum, loose)) / 5) / 4

    ref = mean_of_four([p[0][0] for p in per], [p[0][1] for p in per])  # (1/3 + 1/3 + 2/5 + 3/5) / 4
    gl = mean_of_four([p[1][0] for p in per], [p[1][1] for p in per])  # (2/3 + 2/3 + 3/5 + 4/5) / 4
    assert ref == pytest.approx((1 / 3 + 1 / 3 + 2 / 5 + 3 / 5) / 4)
    steps = {s.name: s for s in x.steps}
    assert x.score_a == pytest.approx(ref) and x.score_b == pytest.approx(gl)
    assert steps["grader"].diff == pytest.approx(gl - ref)
    assert steps["grader"].changed == 1
    assert all(steps[n].diff == 0 for n in ("items_a", "reasoning", "extraction", "remainder", "items_b"))
    assert abs(sum(s.diff for s in x.steps) - x.total) < 1e-12


def test_judge_grader_is_not_recomputed_and_folds_into_the_remainder(tmp_path: Path) -> None:
    a = _graded_run(tmp_path / "a", "simple-evals", "none", {"i0": RIGHT, "i1": WRONG})
    b = _graded_run(tmp_path / "b", "simple-evals", "none", {"i0": RIGHT, "i1": WRONG}, judge=True)
    (x,) = ex.explain(a, b)
    steps = {s.name: s for s in x.steps}
    assert steps["grader"].diff == 0 and "not recomputed" in steps["grader"].note
    assert steps["remainder"].diff == pytest.approx(0.5) and "LLM judge" in steps["remainder"].label
    assert abs(sum(s.diff for s in x.steps) - x.total) < 1e-12


def test_bad_input_is_one_line_error(tmp_path: Path) -> None:
    a = _graded_run(tmp_path / "a", "simple-evals", "none", {"i0": RIGHT})
    r = run_cli("explain", str(a), str(tmp_path / "nope"))
    assert r.code != 0 and "no results.json" in r.err
    r = run_cli("explain", str(a), str(a), "--eval", "gsm8k")
    assert r.code != 0 and "--eval gsm8k" in r.err


# -- one run against a protocol it was not run under (explain RUN --protocol P) --------------------------------------
GLAIVE_SAMPLING = {"temperature": 0.0, "max_tokens": 6000, "skip_special_tokens": False}


def _answers(gold: str) -> dict[str, str]:
    """SPLIT, NEWLINE, RIGHT, WRONG (above) for an item whose gold letter is ``gold``."""
    other = next(c for c in "ABCD" if c != gold)
    return {"split": f"<thinking>First guess. Answer: {other}</thinking><output>Answer: {gold}</output>",
            "newline": f"<output>Answer:\n{gold}</output>", "right": f"<output>Answer: {gold}</output>",
            "wrong": f"<output>Answer: {other}</output>"}  # fmt: skip


def _glaive_mmlu_run(path: Path, kinds: list[tuple[int, int, str]], limit: int, samples: int,
                     extra: list[dict[str, Any]] = ()) -> Path:  # type: ignore[assignment]  # fmt: skip
    """A glaive-2024 MMLU run at ``--limit limit --samples samples``, graded by glaive's pipeline: (index into the
    subset, sample index, answer kind or "failed") per sample; the items and prompts are the real data's."""
    bench = get_benchmarks(["mmlu"], get_profile("glaive-2024"))[0]
    items, _ = bench.load(limit)
    fmt = parse_format("reflection")
    recs = []
    for i, s_idx, kind in kinds:
        it = items[i]
        base = {"eval": "mmlu", "item_id": it.id, "sample_index": s_idx, "prompt": it.prompt, "gold": it.gold,
                "meta": it.meta, "reasoning_format": str(fmt)}  # fmt: skip
        if kind == "failed":
            recs.append({**base, "status": "failed", "error": "timeout", "flags": {"failed": True}})
            continue
        resp = _answers(str(it.gold))[kind]
        split = fmt.apply(resp)
        ext = bench.extract(split.answer)
        g = bench.grade(it, ext)
        recs.append({**base, "status": "ok", "response": resp, "reasoning": split.reasoning,
                     "answer_text": split.answer, "extracted": ext, "score": g.score, "grader": g.grader,
                     "flags": {"unparsed": ext is None, "missing_tag": split.missing_tag}})  # fmt: skip
    cfg = {"limit": limit, "samples": samples, "sampling": GLAIVE_SAMPLING, "reasoning": "reflection"}
    return _write(path, "glaive-2024", "mmlu", recs + list(extra), config=cfg)


def test_run_against_simple_evals_each_measured_step_its_known_value(tmp_path: Path) -> None:
    # glaive-2024, --limit 10 --samples 2: simple-evals draws the same 10 items, one sample each.
    kinds = [(0, 0, "split"), (1, 0, "split"), (2, 0, "split"), (3, 0, "newline"), (4, 0, "newline"),
             (5, 0, "right"), (6, 0, "right"), (7, 0, "wrong"), (8, 0, "right"), (8, 1, "wrong"),
             (9, 0, "failed")]  # fmt: skip
    gsm = {"eval": "gsm8k", "item_id": "0", "sample_index": 0, "prompt": "q", "gold": "1", "meta": {},
           "status": "ok", "response": "1", "answer_text": "1", "extracted": "1", "score": 1.0,
           "grader": "math-equality"}  # fmt: skip
    run = _glaive_mmlu_run(tmp_path / "run", kinds, limit=10, samples=2, extra=[gsm])
    xs, skipped = ex.explain_protocol(run, "simple-evals")
    assert skipped == ["gsm8k: skipped: protocol simple-evals does not define it (it defines mmlu, gpqa_diamond, "
                       "math, math_500, humaneval)"]  # fmt: skip
    (x,) = xs
    steps = {s.name: s for s in x.steps}
    assert [s.name for s in x.steps] == ["items_a", "reasoning", "extraction", "grader"]
    # own score: items 0-8, item 8 the mean of its two samples (1, 0): (3 + 2 + 2 + 0 + 0.5) / 9
    assert x.score_a == pytest.approx(7.5 / 9)
    assert steps["items_a"].diff == pytest.approx(8 / 9 - 7.5 / 9)  # simple-evals draws sample 0 only
    assert steps["items_a"].n == 9 and x.n_common == 9
    assert steps["reasoning"].diff == pytest.approx(-3 / 9) and steps["reasoning"].changed == 3  # no split: C first
    assert steps["extraction"].diff == pytest.approx(-2 / 9) and steps["extraction"].changed == 2  # [ \t]* only
    assert steps["grader"].diff == 0 and steps["grader"].changed == 0  # exact-letter under both
    assert x.score_b == pytest.approx(3 / 9)  # items 5, 6, 8
    assert abs(sum(s.diff for s in x.steps) - (x.score_b - x.score_a)) < 1e-12 and x.total == x.score_b - x.score_a
    # the item simple-evals draws that the run has no answer for: named, not invented
    bench = get_benchmarks(["mmlu"], get_profile("simple-evals"))[0]
    ids = [it.id for it in bench.load(10)[0]]
    assert x.missing == [ids[9]] and any("1 sample(s)" in n and ids[9] in n for n in x.notes)
    u = x.unmeasured
    assert u is not None and u.fields == ["user prompt", "system prompts", "sampling"]
    assert u.label == ("not measured: needs a run under simple-evals (prompts, sampling, system prompt differ: "
                       "user prompt, system prompts, sampling)")  # fmt: skip
    assert u.samples_differ == 9 and u.request_fields["user prompt"] == 9
    assert u.request_fields["max_tokens"] == u.request_fields["temperature"] == 9
    assert x.mode == "protocol" and x.protocol == "simple-evals" and x.sides["b"]["reasoning"] == "none"


def test_run_against_a_protocol_cli_outputs_and_the_grader_step(tmp_path: Path) -> None:
    # IFEval under glaive-2024 against reference: only the checker differs in grading; known by hand.
    ids = [it.id for it in get_benchmarks(["ifeval"], get_profile("reference"))[0].load(None)[0][:3]]
    per = [
        (([True], [True]), ([True], [True])),
        (([True, False], [True, False]), ([True, True], [True, True])),
        (([False, False], [False, True]), ([False, False], [False, True])),
    ]
    recs = [{**_ifeval_rec(i, r, g, "glaive-2024"), "item_id": ids[i]} for i, (r, g) in enumerate(per)]
    run = _write(tmp_path / "run", "glaive-2024", "ifeval", recs, config={"sampling": GLAIVE_SAMPLING})
    md, js, png, page = tmp_path / "x.md", tmp_path / "x.json", tmp_path / "x.png", tmp_path / "x.html"
    r = run_cli("explain", str(run), "--protocol", "reference", "--md", str(md), "--json", str(js), "--plot", str(png),
                "--html", str(page))  # fmt: skip
    assert r.code == 0, r.err
    html = page.read_text()  # the compare report of the run, with this waterfall (table, chart, the unmeasured rest)
    assert "samples graded)" in html and "not measured: needs a run under reference" in html
    assert "data:image/png;base64," in html and "ifeval: run → run graded as reference (3 samples graded)" in html
    assert "not measured: needs a run under reference" in r.out
    doc = json.loads(js.read_text())
    assert doc["mode"] == "protocol" and doc["protocol"] == "reference" and doc["skipped"] == []
    (x,) = doc["evals"]
    steps = {s["name"]: s for s in x["steps"]}
    gl = (2 / 3 + 2 / 3 + 3 / 5 + 4 / 5) / 4
    ref = (1 / 3 + 1 / 3 + 2 / 5 + 3 / 5) / 4
    assert x["score_a"] == pytest.approx(gl) and x["score_b"] == pytest.approx(ref)
    assert steps["grader"]["diff"] == pytest.approx(ref - gl) and steps["grader"]["changed"] == 1
    assert all(steps[n]["diff"] == 0 for n in ("items_a", "reasoning", "extraction"))
    assert abs(x["steps_sum"] - x["total"]) < 1e-12
    assert "remainder" not in steps and x["unmeasured"]["label"].startswith("not measured: needs a run under reference")
    assert len(x["missing"]) == 541 - 3  # reference draws all 541 prompts; the run has 3
    assert "| not measured: needs a run under reference" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_against_a_protocol_bad_input_is_one_line_error(tmp_path: Path) -> None:
    a = _graded_run(tmp_path / "a", "simple-evals", "none", {"i0": RIGHT})
    r = run_cli("explain", str(a), str(a), "--protocol", "nope")
    assert r.code != 0 and "give RUN_B or --protocol, not both" in r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1
    r = run_cli("explain", str(a))
    assert r.code != 0 and "missing RUN_B" in r.err
    with pytest.raises(UsageError, match=r"^--protocol nope: unknown protocol; known: glaive-2024, reference, simple"):
        ex.explain_protocol(a, "nope")
    with pytest.raises(UsageError, match=r"^--protocol reference defines none of the evals asked for \(mmlu\)"):
        ex.explain_protocol(a, "reference")  # reference defines ifeval only
    with pytest.raises(UsageError, match=r"^--eval gsm8k: not in"):
        ex.explain_protocol(a, "simple-evals", ["gsm8k"])


GPT4 = ["--evals", "ifeval", "--responses", "ifeval_gpt4_responses", "--input-data", "ifeval_glaive"]


def test_gpt4_ifeval_checker_step_reproduces_the_published_gap(tmp_path: Path) -> None:
    ref, gl = tmp_path / "ref", tmp_path / "gl"
    for out, proto in ((ref, "reference"), (gl, "glaive-2024")):
        r = run_cli("grade", *GPT4, "--protocol", proto, "--out", str(out))
        assert r.code == 0, r.err
    md, js, png = tmp_path / "x.md", tmp_path / "x.json", tmp_path / "x.png"
    r = run_cli("explain", str(ref), str(gl), "--md", str(md), "--json", str(js), "--plot", str(png))
    assert r.code == 0, r.err
    assert "+0.026503" in r.out
    (x,) = json.loads(js.read_text())["evals"]
    steps = {s["name"]: s for s in x["steps"]}
    assert x["score_a"] == pytest.approx(0.815128, abs=5e-7)
    assert x["score_b"] == pytest.approx(0.841631, abs=5e-7)
    assert steps["grader"]["diff"] == pytest.approx(0.026503, abs=1e-6)
    assert steps["grader"]["changed"] == 18  # the 18 prompts the checkers grade differently
    assert all(steps[n]["diff"] == 0 for n in ("items_a", "reasoning", "extraction", "remainder", "items_b"))
    assert abs(x["steps_sum"] - x["total"]) < 1e-12 and x["n_common"] == 541
    assert "| grader ifeval-reference -> ifeval-glaive-2024 | 0.841631 | +0.026503 |" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same gap from one grade output against the protocol it was not graded under
    r = run_cli("explain", str(gl), "--protocol", "reference", "--json", str(js))
    assert r.code == 0, r.err
    (x,) = json.loads(js.read_text())["evals"]
    steps = {s["name"]: s for s in x["steps"]}
    assert (x["score_a"], x["score_b"]) == (pytest.approx(0.841631, abs=5e-7), pytest.approx(0.815128, abs=5e-7))
    assert steps["grader"]["diff"] == pytest.approx(-0.026503, abs=1e-6) and steps["grader"]["changed"] == 18
    assert x["unmeasured"]["request_fields"] == {"user prompt": 1}  # 2785: the fork's copy of the prompt differs
    assert any("user prompt only" in n for n in x["notes"]) and x["missing"] == []


def test_embedded_two_system_prompts_waterfall_sums(cli, embedded, tmp_path: Path) -> None:
    outs = {}
    for name, extra in (("plain", ["--system-prompt", "none", "--reasoning", "none"]),
                        ("reflection", ["--system-prompt", "reflection", "--reasoning", "reflection"])):  # fmt: skip
        out = outs[name] = tmp_path / name
        r = cli("run", "--base-url", embedded.base_url, "--model", embedded.model, "--evals", "mmlu", "--limit", "3",
                "--max-tokens", "64", *extra, "--out", str(out), "-q")  # fmt: skip
        assert r.code == 0, r.err
    (x,) = ex.explain(outs["plain"], outs["reflection"])
    assert x.n_common == 3
    assert abs(sum(s.diff for s in x.steps) - x.total) < 1e-12
    steps = {s.name: s for s in x.steps}
    assert steps["items_a"].diff == 0 and steps["items_b"].diff == 0
    assert "system prompt (none vs reflection)" in steps["remainder"].note
    assert steps["reasoning"].label == "reasoning split none -> reflection"
