"""MATH and the graders of MATH and GSM8K: extraction, prompt, symbolic grader in a worker, the judge (reply parsing,
stored requests, failures), ``--grader both`` agreement and ``scorecheck regrade``; end to end on the embedded model."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from scorecheck.benchmarks import Item, get_benchmarks
from scorecheck.benchmarks.math_eval import grade_symbolic_math
from scorecheck.grading.judge import judge_messages, judge_says_yes
from scorecheck.grading.plan import agreement
from scorecheck.grading.symbolic import symbolic_equal
from scorecheck.protocols import glaive_2024 as P

ROOT = Path(__file__).resolve().parent.parent


def _math():
    return get_benchmarks(["math"])[0]


# -- extraction and prompt -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text,expected",
    [
        ("work\nAnswer: 5\nAnswer: 6", "5"),  # first match, unlike GSM8K's last
        ("answer : $\\frac{1}{2}$ \nmore", "$\\frac{1}{2}$ "),  # (?i), \s* after the colon, not stripped
        ("Final Answer: 7%", "7%"),  # % kept (GSM8K removes it, MATH does not)
        ("no answer line", None),
        ("Answer:\n5", "5"),  # \s* crosses the newline, as the fork's regex does
    ],
)
def test_math_extraction_first_match(text, expected):
    assert _math().extract(text) == expected


def test_gsm8k_extraction_is_last_match():
    gsm = get_benchmarks(["gsm8k"])[0]
    assert gsm.extract("Answer: 5\nAnswer: 60%") == "60"


def test_math_prompt_and_data(data_dir):
    b = _math()
    items, shas = b.load(None)
    assert len(items) == 5000
    assert shas == {"math": "1835505d451a6f4b8bfdfe11b90bbd6676f382d2aa269acf8d3e4155947fe451"}
    ref = (ROOT.parent / "shared" / "protocol" / "glaive-2024" / "prompt_math.txt").read_text()
    assert b.prompt_template == P.QUERY_TEMPLATE_MATH
    if ref.endswith("\n") and not P.QUERY_TEMPLATE_MATH.endswith("\n"):
        ref = ref[:-1]
    assert P.QUERY_TEMPLATE_MATH == ref
    assert items[0].prompt == P.QUERY_TEMPLATE_MATH.format(Question="How many vertical asymptotes does the graph of "
                                                           "$y=\\frac{2}{x^2+x-6}$ have?")  # fmt: skip
    assert items[0].prompt.endswith("$ have?. The last line of your response should be of the form Answer: $ANSWER "
                                    "(without quotes) where $ANSWER is the answer to the problem. ")  # fmt: skip
    assert items[0].gold == "2"
    sub, _ = b.load(10)
    import random

    assert [i.id for i in sub] == [str(r) for r in random.Random(0).sample(range(5000), 10)]


def test_math500_selectable_with_its_own_answers(data_dir):
    (b,) = get_benchmarks(["math500"])
    assert b.name == "math_500"
    items, shas = b.load(None)
    assert len(items) == 500
    assert shas["math500"] == "5f825781e98ae98d39711ce3f9d02ec06743e04b6f3b3cb256f4049079dfa491"
    full = {i.prompt: i.gold for i in _math().load(None)[0]}
    differ = {(i.gold, full[i.prompt]) for i in items if full[i.prompt] != i.gold}
    assert differ == {("90", "90^\\circ"), ("864", "864 \\mbox{ inches}^2"), ("15", "15\\mbox{ cm}^2")}


# -- symbolic grader -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "gold,answer,score",
    [
        ("\\frac{1}{2}", "$\\frac{1}{2}$", 1.0),
        ("\\frac{1}{2}", "\\dfrac12", 1.0),
        ("\\frac{1}{2}", "0.5", 1.0),
        ("\\frac{1}{2}", "1/3", 0.0),
        ("2, 3", "3, 2", 1.0),
        ("2, 3", "3", 0.0),
        ("(3,-1)", "$(3, -1)$", 1.0),
        ("\\sqrt{2}", "\\boxed{\\sqrt 2}", 1.0),
        ("x^2+2x+1", "(x+1)^2", 1.0),
        ("90^\\circ", "90", 1.0),
        ("5", "", 0.0),
        ("443_5", "443_5", 1.0),
        ("443_5", "$443_{5}$", 1.0),
        ("443_5", "443", 1.0),  # no base written: the digits decide
        ("443_5", "443_6", 0.0),  # math-verify alone reads both as 443
        ("4210_{7}", "4210_7", 1.0),
        ("4210_{7}", "4211_7", 0.0),
        ("-221_3", "-221_4", 0.0),
        ("0.0011_{2}", "0.0011_2", 1.0),
        ("0.0011_{2}", "0.0011_3", 0.0),
    ],
)
def test_symbolic_math(gold, answer, score):
    g = grade_symbolic_math(Item("1", "", gold), answer)
    assert g.score == score, g


def test_symbolic_refuses_a_thread():
    """Never signal.alarm in a thread: math-verify would raise there, and a swallowed error is a silent zero."""
    box: dict[str, BaseException] = {}

    def go() -> None:
        try:
            symbolic_equal("1", "1")
        except BaseException as e:  # noqa: BLE001
            box["e"] = e

    t = threading.Thread(target=go)
    t.start()
    t.join()
    assert isinstance(box.get("e"), RuntimeError)


def _slow_parse(item, extracted):  # runs in the worker: math-verify's timeout must fire there
    import time

    import math_verify.parser as mp

    from scorecheck.grading import symbolic

    symbolic.TIMEOUT_S = 1
    real = mp.extract_target_from_pred

    def slow(*a, **k):
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            pass
        return real(*a, **k)

    mp.extract_target_from_pred = slow
    t0 = time.monotonic()
    g = symbolic_equal(item.gold, extracted)
    return g, time.monotonic() - t0


def test_symbolic_timeouts_work_in_the_spawned_worker():
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        g, seconds = pool.submit(_slow_parse, Item("1", "", "18"), "18").result(timeout=60)
    assert seconds < 10, seconds  # the alarm interrupted a 30 s parse
    assert g.score == 0.0 and g.detail == "gold not parsed"


# -- judge -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply,yes",
    [("Yes", True), (" yes\n", True), ("YES", True), ("Yes.", False), ("No", False), ("", False), (None, False),
     ("Yes, they are equivalent", False)],
)  # fmt: skip
def test_judge_reply_parsing(reply, yes):
    assert judge_says_yes(reply) is yes


def test_judge_message_is_the_protocols_template():
    (m,) = judge_messages("\\frac{1}{2}", "None")
    assert m["role"] == "user"
    assert m["content"] == P.EQUALITY_TEMPLATE % {"expression1": "\\frac{1}{2}", "expression2": "None"}
    assert m["content"].endswith("    Expression 1: \\frac{1}{2}\n    Expression 2: None")


def test_agreement_counts_parsed_answers_only():
    def rec(i, extracted, s, j):
        return {"item_id": str(i), "sample_index": 0, "gold": "1", "extracted": extracted,
                "grades": {"symbolic": {"score": s}, "judge": {"score": j, "reply": "x"}}}  # fmt: skip

    ag = agreement([rec(1, "1", 1.0, 1.0), rec(2, "2", 0.0, 1.0), rec(3, "3", 1.0, 0.0), rec(4, None, 0.0, 1.0),
                    rec(5, "5", 0.0, None)])  # fmt: skip
    assert ag is not None
    assert (ag["compared"], ag["agree"], ag["judge_failed"]) == (3, 1, 1)
    assert (ag["symbolic_yes_judge_no"], ag["judge_yes_symbolic_no"]) == (1, 1)
    assert ag["unparsed_judge_yes"] == 1
    assert [d["item_id"] for d in ag["disagreements"]] == ["3", "2"]


def test_grading_options_are_checked():
    from scorecheck.config import Resolved, build
    from scorecheck.errors import UsageError

    assert Resolved(build({}, {"evals": "math"})).grading().mode == "symbolic"
    both = Resolved(build({}, {"evals": "math", "grader": "both", "judge_url": "http://x/v1"})).grading()
    assert (both.score_by, both.judge_model, both.judge_sampling) == (
        "symbolic", "gpt-4-turbo-preview", {"temperature": 0.5, "max_tokens": 1024})  # fmt: skip
    judge = Resolved(build({}, {"evals": "math", "grader": "judge"})).grading()
    assert (judge.score_by, judge.judge_url) == ("judge", "https://api.openai.com/v1")
    with pytest.raises(UsageError):
        Resolved(build({}, {"evals": "math", "score_by": "judge"})).grading()
    with pytest.raises(UsageError):
        build({}, {"grader": "gpt"})


# -- through the CLI against two stubs (model and judge) -------------------------------------------------------------
def _sends(run: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(run / "store.sqlite") as db:
        return db.execute(
            "SELECT sends.key, COALESCE(requests.eval, '') FROM sends LEFT JOIN requests ON requests.key = sends.key"
        ).fetchall()


def test_judge_with_stubs_resume_failure_and_regrade(cli, stub, tmp_path, data_dir):
    from conftest import start_stub

    judge = start_stub("judge-model")
    try:
        stub.control(answer="Work.\nAnswer: 18")
        judge.control(answer="Yes")
        run = tmp_path / "run"
        base = ["run", "--base-url", stub.base_url, "--model", "stub-model", "--evals", "math,gsm8k", "--limit", "4",
                "--out", str(run), "-q", "--grader", "both", "--judge-url", judge.base_url, "--judge-model",
                "judge-model", "--judge-api-key-env", "JUDGE_SECRET"]  # fmt: skip
        r = cli(*base, env={"JUDGE_SECRET": "sk-judge-123"})
        assert r.code == 0, r.err
        res = json.loads((run / "results.json").read_text())
        # the judge says yes to everything: judge-correct 8 of 8, symbolic only where the gold is 18
        for name in ("math", "gsm8k"):
            ag = res["evals"][name]["grader_agreement"]
            assert ag["compared"] == 4 and ag["judge_correct"] == 4
            assert ag["agree"] == ag["symbolic_correct"]
            assert res["evals"][name]["score"] == ag["symbolic_correct"] / 4  # scored by symbolic by default
        assert res["judge"]["judge_model"] == "judge-model"
        assert res["judge"]["judge_sampling"] == {"temperature": 0.5, "max_tokens": 1024}
        assert judge.stats()["last_authorization"] == "Bearer sk-judge-123"
        assert "sk-judge-123" not in "".join(p.read_text(errors="replace") for p in run.iterdir() if p.is_file())
        samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
        assert all(set(s["grades"]) == {"symbolic", "judge"} for s in samples)
        assert any("agree on" in n for n in res["notes"])
        # the judge's requests are stored: a rerun sends nothing to either endpoint
        n_sends = len(_sends(run))
        assert sum(1 for _, ev in _sends(run) if ev == "judge") == len({s["grades"]["judge"]["request_key"]
                                                                       for s in samples})  # fmt: skip
        r = cli(*base, "--no-preflight")
        assert r.code == 0, r.err
        assert len(_sends(run)) == n_sends
        # scored by the judge: same stored answers, regraded (grader choice is in the grade key), no request sent
        r = cli(*base, "--no-preflight", "--score-by", "judge")
        assert r.code == 0, r.err
        assert len(_sends(run)) == n_sends
        assert json.loads((run / "results.json").read_text())["evals"]["math"]["score"] == 1.0

        # a failing judge: the samples are kept without a judge grade, the run says so and exits 1; a rerun retries
        # only the judge
        run2 = tmp_path / "run2"
        base2 = [*base[: base.index("--out") + 1], str(run2), *base[base.index("--out") + 2 :]]
        judge.control(default="500")
        r = cli(*base2, "--score-by", "judge", "--max-retries", "0", "--no-preflight")
        assert r.code == 1
        assert "judge request(s) failed" in r.err
        res2 = json.loads((run2 / "results.json").read_text())
        assert len(res2["evals"]["math"]["judge_failed_items"]) == 4
        model_sends = sum(1 for _, ev in _sends(run2) if ev != "judge")
        judge.control(answer="No")
        r = cli(*base2, "--score-by", "judge", "--no-preflight")
        assert r.code == 0, r.err
        assert sum(1 for _, ev in _sends(run2) if ev != "judge") == model_sends
        assert json.loads((run2 / "results.json").read_text())["evals"]["math"]["score"] == 0.0

        # regrade with the symbolic grader: no model or judge endpoint needed, nothing sent, result beside the run's
        stub.proc.terminate()
        stub.proc.wait(timeout=10)
        r = cli("regrade", str(run))
        assert r.code == 0, r.err
        assert len(_sends(run)) == n_sends
        (out,) = [p for p in run.iterdir() if p.name.startswith("regrade-symbolic-")]
        rg = json.loads((out / "results.json").read_text())
        for name in ("math", "gsm8k"):
            assert rg["evals"][name]["score"] == res["evals"][name]["score"]
        assert rg["regrade"]["model_requests_sent"] == 0
        assert not any("agree on" in n for n in rg["notes"])  # the run's agreement note is not carried over
        assert "grader_agreement" not in rg["evals"]["math"]
    finally:
        judge.proc.terminate()
        judge.proc.wait(timeout=10)


# -- end to end on the embedded model --------------------------------------------------------------------------------
@pytest.mark.slow
def test_math_gsm8k_symbolic_then_both_then_regrade(cli, embedded, tmp_path):
    run = tmp_path / "run"
    base = ["run", "--base-url", embedded.base_url, "--model", embedded.model, "--evals", "math,gsm8k", "--limit",
            "3", "--max-tokens", "24", "--out", str(run), "-q"]  # fmt: skip
    r = cli(*base, timeout=900)
    assert r.code == 0, r.err
    res = json.loads((run / "results.json").read_text())
    assert set(res["evals"]) == {"math", "gsm8k"}
    assert res["config"]["grading"] == {"grader": "symbolic", "score_by": "symbolic"}
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6
    assert all(s["grader"] == "unparsed" or s["grader"].startswith("symbolic:math-verify") for s in samples)
    model_sends = len(_sends(run))
    assert model_sends == 6

    # the tiny model as its own judge: the mechanism end to end (it is a poor judge)
    r = cli(
        *base,
        "--grader",
        "both",
        "--judge-url",
        embedded.base_url,
        "--judge-model",
        embedded.model,
        "--judge-max-tokens",
        "8",
        timeout=900,
    )
    assert r.code == 0, r.err
    res_both = json.loads((run / "results.json").read_text())
    sends = _sends(run)
    assert sum(1 for _, ev in sends if ev != "judge") == model_sends  # the model's answers were reused
    math_samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines() if '"math"' in x]
    # the fork asked the judge about MATH answers even when nothing was extracted ("None")
    assert sum(1 for _, ev in sends if ev == "judge") >= 1
    assert all(s["grades"]["judge"]["request_key"] for s in math_samples if s["eval"] == "math")
    for name in ("math", "gsm8k"):
        ev = res_both["evals"][name]
        assert ev["score"] == res["evals"][name]["score"]  # scored by symbolic
        assert "judge_failed_items" in ev
    assert res_both["judge"]["judge_model"] == embedded.model
    assert res_both["judge"]["judge_sampling"] == {"temperature": 0.5, "max_tokens": 8}

    # regrade: the stored run graded again, with the same grader: same scores, not one request sent
    n = len(_sends(run))
    r = cli("regrade", str(run), "--grader", "symbolic")
    assert r.code == 0, r.err
    assert len(_sends(run)) == n
    (out,) = [p for p in run.iterdir() if p.name.startswith("regrade-symbolic-")]
    rg = json.loads((out / "results.json").read_text())
    for name in ("math", "gsm8k"):
        assert rg["evals"][name]["score"] == res["evals"][name]["score"]
        assert rg["evals"][name]["n"] == res["evals"][name]["n"]
