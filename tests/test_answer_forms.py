"""The symbolic grader on the answer lines models write (issue #17): the normalisation before math-verify, the forms
set in ``tests/data/answer_forms.jsonl`` (every form the issue lists, verbatim, and near misses in the same forms),
the several-numbers rule, and a stored run regraded under the new grading version."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from scorecheck.benchmarks import Item
from scorecheck.benchmarks.gsm8k import grade_symbolic
from scorecheck.benchmarks.math_eval import grade_symbolic_math
from scorecheck.grading.symbolic import normalise, several_numbers

FORMS = [json.loads(x) for x in (Path(__file__).parent / "data" / "answer_forms.jsonl").read_text().splitlines()]
GRADERS = {"math": grade_symbolic_math, "gsm8k": grade_symbolic}


@pytest.mark.parametrize("row", FORMS, ids=[f"{r['eval']}:{r['answer']!r}->{r['gold']!r}" for r in FORMS])
def test_answer_forms(row):
    g = GRADERS[row["eval"]](Item("1", "", row["gold"]), row["answer"])
    assert (g.score == 1.0) is row["correct"], g


def test_forms_set_holds_the_issues_forms_and_near_misses():
    issue = {(r["eval"], r["answer"]) for r in FORMS if r["kind"] == "issue"}
    listed = {("math", a) for a in ("**4096**", "** \\frac{1}{2}", "*42*", "`42`", "\\frac{1}{2}.", "\\pi.", "32-8\\pi.",
                                    "\\text{(-7,10)}", "∞", "six", "50 of 18")}  # fmt: skip
    listed |= {("gsm8k", a) for a in ("\\$18", "\\$18.00", "14{,}000", "14\\,000", "eighteen", "１８", "50 of 18")}
    assert issue == listed
    assert all(r["correct"] is False for r in FORMS if r["kind"] == "near_miss")
    # each rule has a near miss written in its own form
    rules = {r["rule"] for r in FORMS}
    assert rules == {r["rule"] for r in FORMS if r["kind"] == "near_miss"}


@pytest.mark.parametrize(
    "answer,normalised",
    [
        ("**4096**", "4096"),  # markdown emphasis and code spans, balanced or not
        ("** \\frac{1}{2}", "\\frac{1}{2}"),  # what **Answer:** \frac{1}{2} extracts
        ("42**", "42"),  # what **Answer: 42** extracts
        ("```x+1```", "x+1"),
        ("__42__", "42"),
        ("**4096**.", "4096"),
        ("\\pi.", "\\pi"),  # trailing period or comma after LaTeX or a number
        ("10,", "10"),
        ("\\$18.00", "18.00"),  # escaped dollar signs
        ("14{,}000", "14000"),  # thousands separators between groups of three digits
        ("14\\,000", "14000"),
        ("3,\\!250", "3250"),
        ("14\u2009000", "14000"),
        ("１８", "18"),  # fullwidth forms
        ("∞", "\\infty"),
        ("−5", "-5"),  # U+2212 minus sign
        ("\\text{(-7,10)}", "(-7,10)"),  # a wrapper around the whole answer
        ("\\mathrm{six}", "6"),  # number words up to twenty, as the whole answer
        ("Eighteen.", "18"),
    ],
)
def test_normalise(answer, normalised):
    assert normalise(answer) == normalised


@pytest.mark.parametrize(
    "answer",
    [
        "5!",  # a factorial, not punctuation
        "1, 2, 3, ...",  # an ellipsis
        "2**10",  # ** inside the answer is not emphasis
        "z^*",
        "x_1",
        "1{,}8",  # not a thousands grouping
        "14\\,00",
        "1,000",  # a plain comma is left to math-verify (which reads 1,000 as 1000 and (1,000) as a tuple)
        "twenty-one",  # number words stop at twenty
        "six apples",  # and only as the whole answer
        "\\text{a} + \\text{b}",  # a wrapper around part of the answer stays
        "5\\,\\text{cm}",
    ],
)
def test_normalise_leaves(answer):
    assert normalise(answer) == answer


@pytest.mark.parametrize(
    "answer,math,several",
    [
        ("50 of 18", False, True),
        ("$50$ of $18$", True, True),
        ("2 hours 30 minutes", False, True),
        ("2 and 3", False, True),  # GSM8K's gold is one number
        ("2 and 3", True, False),  # MATH: a list, read by math-verify as a set
        ("18 \\times 2 = 36", True, False),  # the working before the last = is not the answer
        ("5 \\text{ cm}^2", True, False),  # nor is an exponent
        ("18 apples", False, False),
        ("(-7, 10)", True, False),
        ("\\frac{1}{2}", True, False),
    ],
)
def test_several_numbers(answer, math, several):
    assert several_numbers(answer, math) is several


def test_several_numbers_in_the_gold_too_are_compared():
    g = grade_symbolic_math(
        Item("1", "", "2 \\text{ hours } 30 \\text{ minutes}"), "2 \\text{ hours } 30 \\text{ minutes}"
    )
    assert g.score == 1.0, g


# -- a run stored under the previous grading version ------------------------------------------------------------------
def test_stored_run_regraded_under_the_new_rules(cli, stub, tmp_path, data_dir, monkeypatch):
    """A run graded by GRADING_VERSION 1 (MATH's ``** \\frac{1}{2}.`` scored wrong, GSM8K's ``50 of 100`` right):
    ``scorecheck regrade`` shows both changes; ``scorecheck run`` again regrades the stored answers, sending nothing."""
    from scorecheck import runner as runner_mod
    from scorecheck.config import Resolved
    from scorecheck.session import config_from_run

    # MATH takes the first Answer line, GSM8K the last; --limit 1 draws gold \frac{1}{2} (MATH) and 100 (GSM8K)
    stub.control(answer="**Answer:** \\frac{1}{2}.\nAnswer: 50 of 100")
    run = tmp_path / "run"
    args = ["run", "--base-url", stub.base_url, "--model", "stub-model", "--evals", "math,gsm8k", "--limit", "1",
            "--out", str(run), "-q"]  # fmt: skip
    r = cli(*args)
    assert r.code == 0, r.err
    res = json.loads((run / "results.json").read_text())
    assert (res["evals"]["math"]["score"], res["evals"]["gsm8k"]["score"]) == (1.0, 0.0)

    # what version 1 stored: its grade keys and its scores
    monkeypatch.setattr(runner_mod, "GRADING_VERSION", "1")
    rc = Resolved(config_from_run(json.loads((run / "config.json").read_text()), {}))
    old_runner = runner_mod.Runner(rc, [], "stub-model", None, show_progress=False)  # type: ignore[arg-type]
    old_scores = {"math": 0.0, "gsm8k": 1.0}
    new_keys = {}
    with sqlite3.connect(run / "store.sqlite") as db:
        rows = db.execute("SELECT eval, item_id, sample_index, request_key, record, grade_key FROM samples").fetchall()
        assert len(rows) == 2
        for ev, item_id, si, key, record, grade_key in rows:
            bench = next(b for b in rc.benchmarks if b.name == ev)
            new_keys[ev] = grade_key
            assert old_runner.grade_key(bench, key) != grade_key  # the version is part of the grade key
            rec = json.loads(record) | {"score": old_scores[ev]}
            db.execute("UPDATE samples SET grade_key = ?, score = ?, record = ? WHERE eval = ? AND item_id = ? AND "
                       "sample_index = ?", (old_runner.grade_key(bench, key), old_scores[ev], json.dumps(rec), ev,
                                            item_id, si))  # fmt: skip
    for ev, score in old_scores.items():
        res["evals"][ev]["score"] = score
    (run / "results.json").write_text(json.dumps(res))
    with sqlite3.connect(run / "store.sqlite") as db:
        n_sends = db.execute("SELECT COUNT(*) FROM sends").fetchone()[0]

    r = cli("regrade", str(run))
    assert r.code == 0, r.err
    assert "math: score 0.000 -> 1.000; 1 sample(s) graded differently (1 now right, 0 now wrong)" in r.out
    assert "gsm8k: score 1.000 -> 0.000; 1 sample(s) graded differently (0 now right, 1 now wrong)" in r.out
    (out,) = [p for p in run.iterdir() if p.name.startswith("regrade-symbolic-")]
    rg = json.loads((out / "results.json").read_text())
    assert rg["regrade"]["previous_scores"] == {"math": 0.0, "gsm8k": 1.0}
    assert (rg["evals"]["math"]["score"], rg["evals"]["gsm8k"]["score"]) == (1.0, 0.0)
    (m,) = rg["regrade"]["changed_samples"]["math"]
    assert (m["extracted"], m["before"], m["after"]) == ("** \\frac{1}{2}.", 0.0, 1.0)
    (g,) = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines() if '"gsm8k"' in x]
    assert g["grader_detail"] == "several numbers in the answer"

    # the run itself, again: the stored answers carry version 1's grade keys, so they are graded again, not sent
    r = cli(*args, "--no-preflight")
    assert r.code == 0, r.err
    res = json.loads((run / "results.json").read_text())
    assert (res["evals"]["math"]["score"], res["evals"]["gsm8k"]["score"]) == (1.0, 0.0)
    with sqlite3.connect(run / "store.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM sends").fetchone()[0] == n_sends
        assert {ev: gk for ev, gk in db.execute("SELECT eval, grade_key FROM samples")} == new_keys
