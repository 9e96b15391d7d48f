"""scorecheck compare: the statistics against known cases and scipy, the table from two real runs of the embedded
model, the outputs (Markdown, CSV, JSON, HTML) and HTML escaping of hostile model output."""

from __future__ import annotations

import csv
import io
import json

import pytest

from compare_fixtures import HOSTILE, make_run
from scorecheck.compare import compare, write_reports
from scorecheck.compare.html import script_json, to_html
from scorecheck.compare.paired import bootstrap_diff, mcnemar_exact, paired_test
from scorecheck.compare.references import load_reference, shipped
from scorecheck.compare.render import to_csv, to_markdown
from scorecheck.embedded import MODEL_ALIAS
from scorecheck.results import SCHEMA_VERSION, RecordError

# --- statistics ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (1, 9, 22 / 1024),  # 2 * (C(10,0) + C(10,1)) / 2^10
        (0, 5, 2 / 32),  # 2 * C(5,0) / 2^5
        (3, 10, 2 * (1 + 13 + 78 + 286) / 2**13),  # 2 * sum C(13, 0..3) / 2^13 = 0.09228515625
        (5, 5, 1.0),
        (0, 0, 1.0),  # no discordant pairs
        (10, 1, 24 / 2048),  # symmetric in b and c: 2 * (1 + 11) / 2^11
    ],
)
def test_mcnemar_exact_hand_computed(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p, abs=1e-15)


def test_mcnemar_exact_equals_scipy_binomtest():
    from scipy.stats import binomtest

    for b, c in [(0, 1), (2, 7), (12, 30), (45, 52), (100, 140), (700, 760), (3, 3), (0, 40)]:
        assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9), (b, c)


def test_paired_bootstrap_interval_covers_true_difference_in_simulation():
    """Paired data with a known mean difference of 0.1: the 95% interval covers it in about 95% of simulations."""
    import numpy as np

    rng = np.random.default_rng(1)
    sims, n, delta, covered = 200, 100, 0.1, 0
    for i in range(sims):
        x = rng.normal(0.5, 0.2, n)
        y = x + delta + rng.normal(0, 0.3, n)
        _, (lo, hi), _ = bootstrap_diff(x, y, resamples=500, seed=i)
        covered += lo <= delta <= hi
    assert 0.90 <= covered / sims <= 0.99, covered / sims


def test_paired_bootstrap_p_value_and_determinism():
    a = [0.2, 0.4, 0.6, 0.8] * 25
    same = bootstrap_diff(a, a)
    assert same[0] == 0 and same[2] == 1.0
    b = [v + 0.3 for v in a]  # every pair differs by the same 0.3: interval is the point, p ~ 0
    d, (lo, hi), p = bootstrap_diff(a, b)
    assert d == pytest.approx(0.3) and lo == pytest.approx(0.3) and hi == pytest.approx(0.3) and p < 0.01
    assert bootstrap_diff(a, [x * 1.1 for x in a], seed=3) == bootstrap_diff(a, [x * 1.1 for x in a], seed=3)


def test_paired_test_chooses_the_test_and_pairs_only_common_items():
    a = {f"q{i}": float(i % 2) for i in range(40)}
    b = {f"q{i}": 1.0 for i in range(30)}  # ten items b never answered
    p = paired_test("mmlu", "score", "A", "B", a, b)
    assert p.n == 30 and p.test == "exact McNemar"
    assert (p.a_only, p.b_only) == (0, 15)
    assert p.p_value == pytest.approx(mcnemar_exact(0, 15)) and p.significant
    frac = paired_test("ifeval", "score", "A", "B", {"x": 0.5, "y": 0.25}, {"x": 0.75, "y": 0.25})
    assert frac.test.startswith("paired bootstrap") and frac.diff == pytest.approx(0.125)
    none = paired_test("gsm8k", "score", "A", "B", {"x": 1.0}, {"y": 1.0})
    assert none.n == 0 and none.p_value is None and not none.significant


# --- references ------------------------------------------------------------------------------------------------------


def test_shipped_references_hold_the_given_numbers():
    assert set(shipped()) == {"seed", "glaive", "meta-llama-3.1-70b"}
    claims = load_reference("seed")["claims"]
    columns: dict[str, dict[str, float]] = {}
    for c in claims:
        columns.setdefault(c["column"], {})[c["eval"]] = c["value"]
    # the seed README's table: three columns by six benchmarks
    assert list(columns.values()) == [
        {"mmlu": 0.9227, "gpqa_main": 0.5781, "humaneval": 0.8719, "ifeval": 0.8711, "math": 0.6994, "gsm8k": 0.9447},
        {"mmlu": 0.8446, "gpqa_main": 0.4330, "humaneval": 0.6707, "ifeval": 0.8396, "math": 0.6482, "gsm8k": 0.9401},
        {"mmlu": 0.8470, "gpqa_main": 0.4107, "humaneval": 0.8232, "ifeval": 0.8939, "math": 0.5570, "gsm8k": 0.9522},
    ]
    assert [n.split(" (")[0] for n in columns] == [
        "Reflection 70B", "Llama 3.1 70B, Reflection system prompt", "Llama 3.1 70B, default system prompt"]  # fmt: skip
    seed = {c["eval"]: c for c in claims if c["column"].startswith("Reflection 70B")}
    assert (seed["mmlu"]["k"], seed["mmlu"]["n"]) == (12957, 14042)
    for c in seed.values():  # each 4-decimal value is its count, rounded (HumanEval's truncated)
        if "k" in c:
            assert abs(c["k"] / c["n"] - c["value"]) < 1e-4
    glaive = {c["eval"]: c["value"] for c in load_reference("glaive")["claims"]}
    assert glaive == pytest.approx({"mmlu": 0.899, "gpqa_main": 0.553, "humaneval": 0.91, "math": 0.797,
                                    "gsm8k": 0.992, "ifeval": 0.9013})  # fmt: skip
    meta = {c["label"]: (c["value"], c["shots"], c["average"]) for c in load_reference("meta-llama-3.1-70b")["claims"]}
    assert meta["MMLU 5-shot"] == (0.836, 5, "macro") and meta["MMLU (CoT) 0-shot"] == (0.86, 0, "macro")
    assert meta["gsm8k"][:2] == (0.951, 8) and meta["math"][0] == 0.68 and meta["gpqa_main"][0] == 0.467
    assert meta["humaneval"][0] == 0.805 and meta["ifeval"][0] == 0.875


def test_claims_unlike_protocol_and_subset_are_marked(tmp_path):
    a = make_run(tmp_path / "a", "default", {"mmlu": 0.5, "gsm8k": 0.5}, n=30)
    refs = [load_reference(n) for n in ("seed", "glaive", "meta-llama-3.1-70b")]
    cmp = compare([a], references=refs)
    kinds = {(c["reference"], c["label"]): (c["runs"]["a"] or {}).get("kind") for c in cmp.claims}
    assert kinds[("seed", "mmlu")] == "subset"  # same protocol, but --limit
    assert kinds[("glaive", "mmlu")] == "unlike protocol"
    assert kinds[("meta-llama-3.1-70b", "MMLU 5-shot")] == "unlike protocol"
    assert kinds[("seed", "humaneval")] is None  # not measured
    md = to_markdown(cmp)
    assert "UNLIKE PROTOCOL" in md and "shots 5 vs 0" in md
    # max_tokens capped below the protocol's: not the seed's protocol any more, whatever the data
    res = json.loads((a / "results.json").read_text())
    res["config"]["sampling"] = {"temperature": 0.0, "max_tokens": 48}
    (a / "results.json").write_text(json.dumps(res))
    dev = compare([a], references=refs[:1]).claims[0]["runs"]["a"]
    assert dev["kind"] == "deviates from protocol" and dev["differences"] == ["max_tokens 48 (protocol 6000)"]


# --- outputs from synthetic runs ---------------------------------------------------------------------------------------


@pytest.fixture
def synthetic(tmp_path):
    a = make_run(tmp_path / "default", "default", {"mmlu": 0.4, "gpqa_main": 0.3}, n=40, seed=1, hostile=True)
    b = make_run(tmp_path / "reflection", "reflection", {"mmlu": 0.8, "gpqa_main": 0.3}, n=40, seed=2,
                 truncated_every=5)  # fmt: skip
    return compare([a, b], references=[load_reference("seed")])


def test_cells_paired_and_flags(synthetic):
    cmp = synthetic
    assert ("mmlu", "macro") in cmp.rows and cmp.rows[0] == ("mmlu", "score")
    cell = cmp.cells[("mmlu", "score", "reflection")]
    assert cell.n == 40 and cell.ci95 and cell.ci95[0] < cell.score < cell.ci95[1]
    assert any("truncated" in p for p in cell.problems)  # 1 in 5 cut off: flagged
    assert cmp.cells[("mmlu", "macro", "reflection")].problems  # a sub-score of a flagged cell is flagged too
    paired = {p["eval"]: p for p in cmp.paired}
    assert paired["mmlu"]["test"] == "exact McNemar" and paired["mmlu"]["n"] == 40
    assert paired["mmlu"]["diff"] == pytest.approx(cell.score - cmp.cells[("mmlu", "score", "default")].score)


def test_csv_json_markdown(synthetic, tmp_path):
    written = write_reports(synthetic, markdown=tmp_path / "c.md", csv=tmp_path / "c.csv", json=tmp_path / "c.json",
                            terminal=False)  # fmt: skip
    assert set(written) == {"markdown", "csv", "json"}
    rows = list(csv.DictReader(io.StringIO((tmp_path / "c.csv").read_text())))
    sections = {r["section"] for r in rows}
    assert sections == {"cell", "paired", "claim"}
    mm = [r for r in rows if r["section"] == "cell" and r["eval"] == "mmlu" and r["metric"] == "score"]
    assert {r["config"] for r in mm} == {"default", "reflection"} and all(r["ci_low"] and r["n"] == "40" for r in mm)
    doc = json.loads((tmp_path / "c.json").read_text())
    assert [r["label"] for r in doc["runs"]] == ["default", "reflection"]
    assert doc["rows"][0]["cells"]["default"]["ci95"] and doc["paired"][0]["p_value"] is not None
    md = (tmp_path / "c.md").read_text()
    assert "| mmlu |" in md and "exact McNemar" in md and "## Diagnostics" in md
    assert "<script>" not in md  # model text never reaches Markdown unescaped (none does; labels are escaped)


def test_html_escapes_hostile_output(synthetic):
    page = to_html(synthetic, None)
    head, _, rest = page.partition('<script type="application/json" id="scorecheck-data">')
    data, _, tail = rest.partition("</script>")
    # The data block holds no markup at all: every < > & is a JSON escape, so nothing can close it.
    assert "<" not in data and ">" not in data and "onerror" in data
    payload = json.loads(data)
    responses = {s["resp"] for s in payload["samples"]}
    assert set(HOSTILE) <= responses  # kept intact, as data
    assert "onerror" not in head and "window.__pwned" not in head + tail
    assert "Content-Security-Policy" in head
    # The page script never writes model text as HTML.
    assert "innerHTML" not in tail and "insertAdjacentHTML" not in tail and "document.write" not in tail


def test_script_json_escapes_separators():
    s = script_json({"x": "</script>\u2028&"})
    assert "</" not in s and "\u2028" not in s and "&" not in s
    assert json.loads(s) == {"x": "</script>\u2028&"}


def test_fields_the_models_do_not_name_are_kept(tmp_path):
    """Permissive on optional fields: a minimal versioned record with fields added later (HumanEval pass@k,
    IFEval's sub-scores) compares as before; without schema_version it is a one-line error, not a guess."""
    run = tmp_path / "bare"
    run.mkdir()
    ev = {"n_items": 3, "n": 3}
    rec = {"schema_version": SCHEMA_VERSION, "scorecheck": {"version": "0"}, "protocol": {"name": "p"}, "model": "m",
           "config": {"system_prompt": {"name": "none"}}, "evals": {"humaneval": {**ev, "score": 0.5, "pass_at_k": {
        "pass@1": 0.5, "pass@5": 0.7}, "contained": False}, "ifeval": {**ev,
        "score": 0.6, "prompt_strict": 0.5, "instruction_strict": 0.6, "prompt_loose": 0.6,
        "instruction_loose": 0.7, "checker_difference": {"prompts_graded_differently": 1}}}}  # fmt: skip
    (run / "results.json").write_text(json.dumps(rec))
    cmp = compare([run])
    assert ("ifeval", "prompt-strict") in cmp.rows and ("ifeval", "instruction-loose") in cmp.rows
    assert any("checkers disagree on 1" in p for p in cmp.cells[("ifeval", "score", "bare")].problems)
    assert cmp.cells[("humaneval", "pass@5", "bare")].score == 0.7
    assert any("isolation" in p for p in cmp.cells[("humaneval", "score", "bare")].problems)
    to_markdown(cmp), to_csv(cmp), to_html(cmp, None)
    del rec["schema_version"]
    (run / "results.json").write_text(json.dumps(rec))
    with pytest.raises(RecordError, match="no schema_version"):
        compare([run])


def test_cli_errors(cli, tmp_path):
    r = cli("compare", str(tmp_path / "nope"))
    assert r.code != 0 and "no results.json" in r.err
    r = cli("compare", str(make_run(tmp_path / "a", "x", {"mmlu": 0.5}, n=4)), "--reference", "nosuch")
    assert r.code != 0 and "shipped references" in r.err


# --- two real runs of the embedded model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_runs(embedded, tmp_path_factory):
    from conftest import run_cli

    base = tmp_path_factory.mktemp("compare-runs")
    dirs = []
    for sp, extra in (("default", []), ("reflection", ["--reasoning", "reflection"])):
        out = base / sp
        r = run_cli("run", "--base-url", embedded.base_url, "--model", MODEL_ALIAS, "--evals", "mmlu,gsm8k",
                    "--limit", "4", "--max-tokens", "24", "--system-prompt", sp, *extra, "--out", str(out), "-q")  # fmt: skip
        assert r.code == 0, r.err
        dirs.append(out)
    return dirs


@pytest.mark.slow
def test_compare_two_real_runs(cli, real_runs, tmp_path):
    html, png = tmp_path / "r.html", tmp_path / "r.png"
    r = cli("compare", *map(str, real_runs), "-r", "seed", "--html", str(html), "--plot", str(png),
            "--md", str(tmp_path / "r.md"), "--csv", str(tmp_path / "r.csv"), "--json", str(tmp_path / "r.json"),
            env={"COLUMNS": "200"})  # fmt: skip
    assert r.code == 0, r.err
    for word in ("mmlu", "mmlu (macro)", "gsm8k", "n=4", "paired differences", "exact McNemar", "diagnostics",
                 "trunc.", "claimed numbers", "DEVIATES FROM PROTOCOL"):  # fmt: skip
        assert word in r.out, (word, r.out)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    page = html.read_text()
    assert "Transcripts" in page and "data:image/png;base64," in page
    assert page.count('<table class="waterfall">') == 2  # two runs: the waterfall of B - A per eval
    doc = json.loads((tmp_path / "r.json").read_text())
    cells = doc["rows"][0]["cells"]
    assert set(cells) == {"default", "reflection"}
    # Whatever the tiny model did, every rate over its threshold is named on the cell (never averaged away).
    for c in cells.values():
        for flag, share in (("unparsed", 0.05), ("truncated", 0.01)):
            if c["counts"][flag] / c["n_items"] >= share:
                assert any(p.startswith(flag) for p in c["problems"]), c
    paired = [p for p in doc["paired"] if p["eval"] == "mmlu"]
    assert paired and paired[0]["n"] == 4 and 0 <= paired[0]["p_value"] <= 1
    # every sample of both runs is in the transcript browser
    data = page.split('id="scorecheck-data">')[1].split("</script>")[0]
    assert len(json.loads(data)["samples"]) == sum(
        len((d / "samples.jsonl").read_text().splitlines()) for d in real_runs
    )


def test_many_samples_page_builds_quickly(tmp_path):
    """20,000 samples: the page is built in seconds and its data block stays a few MB."""
    import time

    a = make_run(tmp_path / "a", "default", {"mmlu": 0.5}, n=10_000, seed=1)
    b = make_run(tmp_path / "b", "reflection", {"mmlu": 0.6}, n=10_000, seed=2)
    t0 = time.monotonic()
    cmp = compare([a, b], resamples=500)
    page = to_html(cmp, None)
    assert time.monotonic() - t0 < 30
    assert page.count('"r":') == 20_000 and len(page) < 20_000_000


def test_ifeval_paired_values_average_to_the_headline():
    """IFEval's per-prompt value z has the mean of the four numbers as its mean, so the paired test compares the
    headline itself."""
    from scorecheck.compare.model import sample_scores

    prompts = [([True, True], [True, True]), ([True, False], [True, True]), ([False], [False]), ([False, True, True],
               [True, True, True])]  # fmt: skip
    samples = [{"eval": "ifeval", "item_id": str(i), "score": float(all(st)),
                "grade_info": {"checkers": {"glaive-2024": {"strict": st, "loose": lo}}}}
               for i, (st, lo) in enumerate(prompts)]  # fmt: skip
    n_instr = sum(len(st) for st, _ in prompts)
    four = [sum(all(st) for st, _ in prompts) / 4, sum(sum(st) for st, _ in prompts) / n_instr,
            sum(all(lo) for _, lo in prompts) / 4, sum(sum(lo) for _, lo in prompts) / n_instr]  # fmt: skip
    z = sample_scores(samples, "ifeval", "score", {"evals": {"ifeval": {"checker": "glaive-2024"}}})
    assert sum(z.values()) / len(z) == pytest.approx(sum(four) / 4)


def test_ifeval_sub_scores_carry_their_own_n(tmp_path):
    """prompt-level numbers are over prompts, instruction-level ones over instructions, as results.json's metrics."""
    run = tmp_path / "ifeval"
    run.mkdir()
    metrics = {"prompt_strict": {"value": 0.5, "correct": 2, "n": 4}, "instruction_strict": {"value": 0.7, "correct": 7,
               "n": 10}}  # fmt: skip
    rec = {"schema_version": SCHEMA_VERSION, "scorecheck": {"version": "0"}, "protocol": {"name": "p"}, "model": "m",
           "config": {"system_prompt": {"name": "none"}}, "evals": {"ifeval": {"n_items": 4, "n": 4, "score": 0.6,
           "prompt_strict": 0.5, "instruction_strict": 0.7, "metrics": metrics}}}  # fmt: skip
    (run / "results.json").write_text(json.dumps(rec))
    cmp = compare([run])
    assert cmp.cells[("ifeval", "prompt-strict", "ifeval")].n == 4
    assert cmp.cells[("ifeval", "instruction-strict", "ifeval")].n == 10
