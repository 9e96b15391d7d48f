"""Protocols as data: the simple-evals profile pinned to openai/simple-evals @ ee3b031, each profile defining exactly
its evals, glaive-2024's default reasoning, `protocols diff`, and the requests a simple-evals run sends compared
with the upstream prompts byte for byte (a local recording server)."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
from pathlib import Path

import pandas
import pytest

from conftest import SHARED, run_cli
from recording_server import RecordingServer, user_text
from scorecheck.benchmarks import get_benchmarks
from scorecheck.errors import UsageError
from scorecheck.protocols import GLAIVE_2024, PROFILES, REFERENCE, SIMPLE_EVALS, eval_protocol
from scorecheck.protocols import simple_evals as S

SE_DIR = SHARED / "protocol" / "simple-evals"


def sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


# sha256 of each string as openai/simple-evals @ ee3b031 defines it, computed from the files at that commit
# (common.py, math_eval.py, humaneval_eval.py, sampler/chat_completion_sampler.py; the triple-quoted templates after
# their .strip(); the normalisers as the JSON list of their str.replace pairs in order).
UPSTREAM_SHA256 = {
    "QUERY_TEMPLATE_MULTICHOICE": "d4d85337bbd54659d12c8da7edc8b854d151b7327cf7574dc1062d753b03c8a6",
    "ANSWER_PATTERN_MULTICHOICE": "4da9ff20cdd50f37113e072ba88d58dd4f7db9ded3f5a9ef9adaa3514653fed3",
    "ANSWER_PATTERN": "ed1c98f10197d6781bac25f824e0bfd932e93512596a61966dfeb8b88134ec5b",
    "MULTILINGUAL_ANSWER_PATTERN_TEMPLATE": "f582d208a6064fd647b8c2d44624d89e0053a93f6ad5dfa1eca830328e9e39b8",
    "EQUALITY_TEMPLATE": "c9385e2f8120f01b098ea7c3b265535f797a65d8d7b37df4833fa38b51f50d2f",
    "QUERY_TEMPLATE_MATH": "231d269274b6a04711d192c935b7a4785da99e6823afbc817972a1d51f48425e",
    "INSTRUCTION_HUMANEVAL": "92936abf07c2712e71f79d1d158fd0389351886bbd7c2ceca245e689d566f4d0",
    "CODE_PATTERN_HUMANEVAL": "957f15fd9d85e90bc5cd43b9929ab90676950591a539c3b0a8eacb8388765813",
    "HTTP_400_TEXT": "405f69339d24c817e2e8cb4f67fbcad9c746f953196e1e2cbb276daa029701f8",
}
UPSTREAM_REGEXES_SHA256 = "8b2c98c2c6bb39b5a4203e7f476cb9baf4d0e60a9b9088a26ede0b20ba8c82f9"  # "\n".join(list)
UPSTREAM_NORMALIZE_RESPONSE_SHA256 = "f41274fb4056d6529620edc28d24bf17263ad69edf310757076393abd36e8704"
UPSTREAM_NORMALIZE_EXTRACTED_SHA256 = "47d89e6ec3382eaa45607ede884e82874e14c22cf41052faa3ff5a20b8feff40"


@pytest.mark.parametrize("name,digest", sorted(UPSTREAM_SHA256.items()))
def test_simple_evals_string_equals_upstream_by_sha256(name, digest):
    value = S.EQUALITY_TEMPLATE if name == "EQUALITY_TEMPLATE" else getattr(S, name)
    assert sha(value) == digest


def test_simple_evals_lists_equal_upstream_by_sha256():
    assert len(S.MULTILINGUAL_ANSWER_REGEXES) == 42
    assert sha("\n".join(S.MULTILINGUAL_ANSWER_REGEXES)) == UPSTREAM_REGEXES_SHA256
    pairs = lambda t: json.dumps([list(p) for p in t], ensure_ascii=False)  # noqa: E731
    assert sha(pairs(S.NORMALIZE_RESPONSE)) == UPSTREAM_NORMALIZE_RESPONSE_SHA256
    assert sha(pairs(S.NORMALIZE_EXTRACTED_ANSWER)) == UPSTREAM_NORMALIZE_EXTRACTED_SHA256
    assert S.SYSTEM_DEFAULT == "You are a helpful assistant."
    assert (S.TEMPERATURE, S.MAX_TOKENS, S.REPEATS_MATH, S.REPEATS_GPQA) == (0.5, 1024, 10, 10)


@pytest.mark.parametrize("filename,constant", [("prompt_multichoice.txt", "QUERY_TEMPLATE_MULTICHOICE"),
                                               ("prompt_math.txt", "QUERY_TEMPLATE_MATH"),
                                               ("equality_judge.txt", "EQUALITY_TEMPLATE")])  # fmt: skip
def test_simple_evals_strings_equal_the_shared_files(filename, constant):
    assert sha(getattr(S, constant)) == hashlib.sha256((SE_DIR / filename).read_bytes()).hexdigest()


def test_simple_evals_regexes_equal_the_shared_file():
    shared = json.loads((SE_DIR / "regexes.json").read_text())
    assert shared["ANSWER_PATTERN_MULTICHOICE"] == S.ANSWER_PATTERN_MULTICHOICE
    assert shared["ANSWER_PATTERN"] == S.ANSWER_PATTERN
    assert shared["MULTILINGUAL_ANSWER_PATTERN_TEMPLATE"] == S.MULTILINGUAL_ANSWER_PATTERN_TEMPLATE
    assert shared["MULTILINGUAL_ANSWER_REGEXES"] == list(S.MULTILINGUAL_ANSWER_REGEXES)


# -- extraction as the upstream functions document it -----------------------------------------------------------
def _se(name: str):
    return get_benchmarks([name], SIMPLE_EVALS)[0]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Thinking...\nAnswer: C", "C"),
        ("**Answer:** B", "B"),  # normalize_response drops the bold markers
        ("Answer: $\\boxed{D}$", "D"),  # and the LaTeX around the letter
        ("Answer: \\text{A}", "A"),
        ("Antwort: D", "D"),
        ("答案：C", "C"),  # full-width colon
        ("答え: B", "B"),
        ("Réponse : A", "A"),
        ("الإجابة: ب", "B"),  # an Arabic letter, normalised to " B" and stripped
        ("উত্তর: ঢ", "D"),  # Bengali
        ("Answer: Ｃ", "C"),  # full-width Latin
        ("answer: b", "b"),  # (?i) matches, the letter keeps its case and scores 0
        ("Answer:\nB", None),  # after the colon only spaces and tabs
        ("Answer\n: B", "B"),  # before it, any whitespace
        ("The answer is B", None),
        ("Respuesta: A\nAnswer: B", "B"),  # the regexes are tried in order, not the positions
    ],
)
def test_simple_evals_mmlu_extraction(text, expected):
    assert _se("mmlu").extract(text) == expected


def test_simple_evals_mmlu_grade_is_exact():
    from scorecheck.benchmarks import Item

    b = _se("mmlu")
    item = Item("0", "q", "B", {"subject": "anatomy", "category": "other"})
    assert b.grade(item, b.extract("**Answer:** B")).score == 1.0
    assert b.grade(item, b.extract("answer: b")).score == 0.0


@pytest.mark.parametrize(
    "text,expected",
    [("Answer: $C$", "C"), ("Answer :\tD", "D"), ("Answer:\nB", None), ("**Answer:** B", None), ("answer: a", "a")],
)
def test_simple_evals_gpqa_regex(text, expected):
    assert _se("gpqa_diamond").extract(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("```python\ndef f(x):\n    return x + 1\n```", "    return x + 1\n"),  # signature stripped
        ("Here:\n```python\nimport math\ndef f(x):\n    return 1\n```\n```python\nx\n```", "    return 1\n"),
        ("    return 1\n", "   return 1\n"),  # no ":\n    ": find() is -1, so upstream drops the first character
    ],
)
def test_simple_evals_humaneval_signature_stripping(text, expected):
    assert _se("humaneval").extract(text) == expected


def test_glaive_humaneval_keeps_the_signature():
    assert get_benchmarks(["humaneval"])[0].extract("```python\ndef f(x):\n    return 1\n```") == (
        "def f(x):\n    return 1\n"
    )


def test_simple_evals_repeats_and_samples_without_a_subset():
    gpqa, math, he, mmlu = (_se(n) for n in ("gpqa_diamond", "math", "humaneval", "mmlu"))
    items, _ = gpqa.load(None)
    assert len(items) == 198 * 10 and len({i.id for i in items}) == 1980  # each repeat its own permutation
    rows = pandas.read_csv(_data("gpqa/gpqa_diamond.csv"))
    rng = random.Random(0)
    perms = [rng.sample(range(4), 4) for _ in range(10 * len(rows))]
    assert [i.meta["permutation"] for i in items] == perms
    assert (math.default_samples(None), math.default_samples(5)) == (10, 1)
    assert (he.default_samples(None), he.default_samples(5)) == (5, 5)
    assert (mmlu.default_samples(None), gpqa.default_samples(None)) == (1, 1)


def _data(rel: str) -> Path:
    import os

    return Path(os.environ["SCORECHECK_DATA_DIR"]) / rel


# -- a profile defines exactly its evals -----------------------------------------------------------------------------
def test_each_profile_defines_exactly_its_evals():
    assert set(REFERENCE.evals) == {"ifeval"}
    assert set(SIMPLE_EVALS.evals) == {"mmlu", "gpqa_diamond", "math", "math_500", "humaneval"}
    assert set(GLAIVE_2024.evals) >= {"mmlu", "gpqa_main", "math", "gsm8k", "humaneval", "ifeval"}
    with pytest.raises(UsageError) as e:
        eval_protocol("reference", "mmlu")
    assert "glaive-2024, simple-evals" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UsageError) as e:
        eval_protocol("simple-evals", "gsm8k")
    assert "defined by glaive-2024" in str(e.value)
    assert eval_protocol("simple-evals", "gpqa").eval == "gpqa_diamond"  # its runner's "gpqa" is diamond
    assert eval_protocol("glaive-2024", "gpqa").eval == "gpqa_main"
    for p in PROFILES.values():
        for name, spec in p.evals.items():
            assert spec.eval == name and spec.source and spec.subset


def test_reference_mmlu_fails_in_seconds_naming_the_profiles(tmp_path):
    r = run_cli("run", "--protocol", "reference", "--evals", "mmlu,gpqa,gsm8k", "--base-url", "http://127.0.0.1:9/v1",
                "--model", "m", "--out", str(tmp_path / "r"))  # fmt: skip
    assert r.code != 0 and r.seconds < 15
    assert "glaive-2024, simple-evals" in r.err and "Traceback" not in r.err


def test_protocols_lists_profiles_and_their_evals():
    r = run_cli("protocols")
    assert r.code == 0
    for p in PROFILES.values():
        assert f"{p.name}: " in r.out
    assert "math_500" in r.out and "[not byte-verified]" in r.out


def test_protocols_diff_mmlu_shows_prompt_diff_regexes_and_match_rules():
    r = run_cli("protocols", "diff", "glaive-2024", "simple-evals", "--eval", "mmlu")
    assert r.code == 0, r.err
    out = r.out
    assert "--- glaive-2024" in out and "+++ simple-evals" in out
    assert "-{Question}." in out and "+Answer the following multiple choice question." in out
    assert "glaive-2024: (?i)Answer\\s*:\\s*([A-D])" in out
    assert "simple-evals: (?i)Antwort\\s*:" in out
    assert "match rule (same):\n  first match; no match: unparsed" in out
    assert '"temperature": 0.5' in out and "No response (bad request)." in out
    r = run_cli("protocols", "diff", "glaive-2024", "reference", "--eval", "mmlu")
    assert r.code == 0 and "only glaive-2024 defines mmlu" in r.out


# -- the requests a simple-evals run sends, against the upstream prompts ------------------------------------------
def _upstream_prompts(limit: int) -> dict[str, list[str]]:
    """The user messages openai/simple-evals @ ee3b031 sends with num_examples=limit (n_repeats 1), rebuilt here from
    the data and the pinned strings with its subset rule, independently of scorecheck's loaders."""
    out: dict[str, list[str]] = {}
    mmlu = [r.to_dict() for _, r in pandas.read_csv(_data("mmlu/mmlu.csv")).iterrows()]
    out["mmlu"] = [S.QUERY_TEMPLATE_MULTICHOICE.format(**r) for r in random.Random(0).sample(mmlu, limit)]
    gpqa = [r.to_dict() for _, r in pandas.read_csv(_data("gpqa/gpqa_diamond.csv")).iterrows()]
    rng = random.Random(0)
    gpqa = [ex | {"permutation": rng.sample(range(4), 4)} for ex in rng.sample(gpqa, limit)]
    prompts = []
    for row in gpqa:
        base = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
        ch = [base[i] for i in row["permutation"]]
        prompts.append(
            S.QUERY_TEMPLATE_MULTICHOICE.format(A=ch[0], B=ch[1], C=ch[2], D=ch[3], Question=row["Question"])
        )
    out["gpqa_diamond"] = prompts
    math = [r.to_dict() for _, r in pandas.read_csv(_data("math/math_test.csv")).iterrows()]
    out["math"] = [S.QUERY_TEMPLATE_MATH.format(**r) for r in random.Random(0).sample(math, limit)]
    with gzip.open(_data("humaneval/HumanEval.jsonl.gz"), "rt") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    sample = random.Random(0).sample(problems, limit)
    out["humaneval"] = [S.INSTRUCTION_HUMANEVAL + p["prompt"] for p in sample for _ in range(S.HUMANEVAL_SAMPLES)]
    return out


def test_simple_evals_requests_equal_upstream_prompts_byte_for_byte(tmp_path):
    limit = 3
    expected = _upstream_prompts(limit)
    first_mmlu = expected["mmlu"][0]

    def respond(body):
        text = user_text(body)
        if text == first_mmlu:
            return 400, "context length exceeded"
        return 200, "**Answer:** B" if "Answer the following multiple" in text else "```python\n    return 1\n```"

    with RecordingServer(respond) as srv:
        r = run_cli("run", "--base-url", srv.base_url, "--model", "rec-model", "--protocol", "simple-evals",
                    "--evals", "mmlu,gpqa_diamond,math,math_500,humaneval", "--limit", str(limit),
                    "--max-tokens", "256", "--concurrency", "4", "--out", str(tmp_path / "run"), "-q")  # fmt: skip
        bodies = srv.model_requests()
        preflight = [b for b in srv.bodies if b not in bodies]
    assert r.code == 1, r.err  # the one HTTP 400 is more than 1% of MMLU's 3 samples: flagged
    assert "mmlu: HTTP 400 for 1 of 3 samples" in " ".join(r.err.split())
    # The preflight sent the run's real sampling, streamed (closed after the first chunk).
    assert [{k: v for k, v in b.items() if k != "messages"} for b in preflight] == [
        {"model": "rec-model", "temperature": 0.5, "max_tokens": 256, "stream": True}
    ]
    sent = [user_text(b) for b in bodies]
    for name, prompts in expected.items():
        got = sorted(s for s in sent if s in set(prompts))
        assert got == sorted(prompts), name  # every upstream prompt, as many times as upstream sends it
    assert len(sent) == sum(len(v) for v in expected.values()) + limit  # + MATH-500's
    for b in bodies:  # ChatCompletionSampler's sampling (max_tokens as given), no system message, no extra body
        assert set(b) == {"model", "messages", "temperature", "max_tokens"}
        assert b["temperature"] == 0.5 and b["max_tokens"] == 256 and len(b["messages"]) == 1

    res = json.loads((tmp_path / "run" / "results.json").read_text())
    ev = res["evals"]
    assert ev["humaneval"]["samples_per_task"] == 5 and set(ev["humaneval"]["pass_at_k"]) == {
        "pass@1",
        "pass@2",
        "pass@5",
    }
    assert ev["mmlu"]["protocol"]["name"] == "simple-evals" and ev["mmlu"]["protocol"]["reasoning"] == "none"
    assert ev["mmlu"]["protocol"]["strings_sha256"]["user_template"] == UPSTREAM_SHA256["QUERY_TEMPLATE_MULTICHOICE"]
    assert ev["math_500"]["protocol"]["byte_verified"] is False and ev["math"]["protocol"]["byte_verified"] is True
    assert any("math_500 (not byte-verified)" in n for n in res["notes"])
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    bad = [s for s in samples if s["eval"] == "mmlu" and s["flags"]["http_400"]]
    assert len(bad) == 1 and bad[0]["response"] == "No response (bad request)." and bad[0]["extracted"] is None
    ok = [s for s in samples if s["eval"] == "mmlu" and not s["flags"]["http_400"]]
    assert ok and all(s["extracted"] == "B" for s in ok)  # normalize_response before the regexes


def test_glaive_default_reasoning_is_the_output_split(tmp_path):
    answer = "<thinking>\nAnswer: A\n</thinking>\n<output>\nAnswer: C\n</output>"
    with RecordingServer(lambda body: (200, answer)) as srv:
        r = run_cli("run", "--base-url", srv.base_url, "--model", "rec-model", "--evals", "mmlu,ifeval", "--limit", "2",
                    "--system-prompt", "default", "--out", str(tmp_path / "run"), "-q")  # fmt: skip
    assert r.code == 0, r.err
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    mmlu = [s for s in samples if s["eval"] == "mmlu"]
    assert mmlu and all(s["extracted"] == "C" and s["reasoning_format"] == "reflection" for s in mmlu)
    # IFEval keeps the fork's rule: its split only with the Reflection system prompt
    assert all(s["reasoning_format"] == "none" for s in samples if s["eval"] == "ifeval")
    ev = json.loads((tmp_path / "run" / "results.json").read_text())["evals"]
    assert ev["mmlu"]["protocol"]["reasoning"] == "reflection"
    assert ev["mmlu"]["protocol"]["reasoning_rule"] == "default reflection"
    assert ev["ifeval"]["protocol"]["reasoning"] == "none"
    assert "reflection-ifeval with system prompt reflection" in ev["ifeval"]["protocol"]["reasoning_rule"]
    assert "system_prompt" in ev["ifeval"]["protocol"]["strings_sha256"]


def test_benchmarks_are_parameterised_not_bound_to_a_protocol():
    from conftest import ROOT

    for f in (ROOT / "src" / "scorecheck" / "benchmarks").glob("*.py"):
        src = f.read_text()
        assert "glaive_2024" not in src and "simple_evals" not in src, f.name
    a, b = get_benchmarks(["mmlu"], GLAIVE_2024)[0], get_benchmarks(["mmlu"], SIMPLE_EVALS)[0]
    assert a.prompt_template != b.prompt_template and a.spec is GLAIVE_2024.evals["mmlu"]
    assert a.extract("**Answer:** B") is None and b.extract("**Answer:** B") == "B"
