"""Benchmark loading as the glaive fork does it: GPQA permutations, MMLU prompts and NaN quirk, subsets, GSM8K."""

from __future__ import annotations

import csv
import json
import random

import pytest

from scorecheck.benchmarks import Item, fork_subset, get_benchmarks
from scorecheck.benchmarks.gpqa import GPQA
from scorecheck.benchmarks.gsm8k import GSM8K
from scorecheck.benchmarks.mmlu import MMLU, SUBJECT_TO_CATEGORY, subject_averages
from scorecheck.errors import UsageError
from scorecheck.protocols import glaive_2024 as P


def csv_rows(path) -> list[dict[str, str]]:
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------- GPQA


@pytest.fixture(scope="module")
def gpqa_rows(data_dir):
    return csv_rows(data_dir / "gpqa" / "gpqa_main.csv")


@pytest.fixture(scope="module")
def gpqa_full():
    items, hashes = GPQA("main").load(None)
    return items, hashes


def independent_perms(n_rows: int, limit: int | None = None) -> tuple[list[int], list[list[int]]]:
    """The fork's GPQAEval.__init__: rng = Random(0); subset first (if any), then one perm per example."""
    rng = random.Random(0)
    idx = list(range(n_rows))
    if limit:
        idx = rng.sample(idx, limit)
    return idx, [rng.sample(range(4), 4) for _ in idx]


def gold_of(row: dict[str, str], perm: list[int]) -> str:
    base = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
    return "ABCD"[[base[i] for i in perm].index(row["Correct Answer"])]


def test_gpqa_first_row_perm_literal(gpqa_full):
    items, _ = gpqa_full
    assert len(items) == 448
    assert items[0].meta["permutation"] == [3, 1, 0, 2]
    assert items[0].gold == "C"
    # literal pins of the first five (computed once with random.Random(0))
    assert [it.meta["permutation"] for it in items[:5]] == [
        [3, 1, 0, 2],
        [3, 1, 2, 0],
        [2, 3, 0, 1],
        [2, 0, 3, 1],
        [1, 3, 0, 2],
    ]
    assert [it.gold for it in items[:5]] == ["C", "D", "C", "B", "C"]


def test_gpqa_full_run_perms_and_golds(gpqa_full, gpqa_rows):
    items, hashes = gpqa_full
    idx, perms = independent_perms(len(gpqa_rows))
    assert [it.meta["permutation"] for it in items] == perms
    assert [it.gold for it in items] == [gold_of(gpqa_rows[i], p) for i, p in zip(idx, perms, strict=True)]
    assert [it.id for it in items] == [r["Record ID"] for r in gpqa_rows]
    for it, row, perm in zip(items, gpqa_rows, perms, strict=True):
        base = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
        shown = [base[i] for i in perm]
        fields = dict(A=shown[0], B=shown[1], C=shown[2], D=shown[3], Question=row["Question"])
        assert it.prompt == P.QUERY_TEMPLATE_MULTICHOICE.format(**fields), it.id
    assert set(hashes) == {"gpqa_main"}


def test_gpqa_prompt_of_first_item(gpqa_full, gpqa_rows):
    items, _ = gpqa_full
    row, perm = gpqa_rows[0], [3, 1, 0, 2]
    base = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
    shown = [base[i] for i in perm]
    expected = P.QUERY_TEMPLATE_MULTICHOICE.format(
        Question=row["Question"], A=shown[0], B=shown[1], C=shown[2], D=shown[3]
    )
    assert items[0].prompt == expected
    assert f"C) {row['Correct Answer']}\n" in items[0].prompt


@pytest.mark.parametrize("limit", [1, 5, 20])
def test_gpqa_limit_draws_subset_from_the_same_rng(gpqa_rows, limit):
    items, _ = GPQA("main").load(limit)
    idx, perms = independent_perms(len(gpqa_rows), limit)
    assert len(items) == limit
    assert [it.id for it in items] == [gpqa_rows[i]["Record ID"] for i in idx]
    assert [it.meta["permutation"] for it in items] == perms
    assert [it.gold for it in items] == [gold_of(gpqa_rows[i], p) for i, p in zip(idx, perms, strict=True)]


def test_gpqa_limit_perms_differ_from_full_run(gpqa_full, gpqa_rows):
    full = {it.id: it.meta["permutation"] for it in gpqa_full[0]}
    sub, _ = GPQA("main").load(20)
    assert any(full[it.id] != it.meta["permutation"] for it in sub)


def test_gpqa_repeated_correct_text_gold_is_first_shown_match(gpqa_full, gpqa_rows):
    dup = [
        i
        for i, r in enumerate(gpqa_rows)
        if r["Correct Answer"] in (r["Incorrect Answer 1"], r["Incorrect Answer 2"], r["Incorrect Answer 3"])
    ]
    assert len(dup) == 1  # PROTOCOL.md: one row repeats the correct text
    i = dup[0]
    row = gpqa_rows[i]
    item = gpqa_full[0][i]
    assert item.id == row["Record ID"]
    perm = item.meta["permutation"]
    base = [row["Correct Answer"], row["Incorrect Answer 1"], row["Incorrect Answer 2"], row["Incorrect Answer 3"]]
    shown = [base[j] for j in perm]
    positions = [k for k, s in enumerate(shown) if s == row["Correct Answer"]]
    assert len(positions) == 2
    assert item.gold == "ABCD"[positions[0]]


def test_gpqa_alias():
    assert [b.name for b in get_benchmarks(["gpqa"])] == ["gpqa_main"]
    with pytest.raises(UsageError):
        get_benchmarks(["gpqa_extended"])


# ---------------------------------------------------------------- MMLU

NONE_CELLS = {
    1006: "A",
    1090: "A",
    1104: "A",
    1117: "A",
    1156: "A",
    1429: "D",
    1961: "D",
    1988: "D",
    2027: "D",
    2037: "D",
}


@pytest.fixture(scope="module")
def mmlu_rows(data_dir):
    return csv_rows(data_dir / "mmlu" / "mmlu.csv")


@pytest.fixture(scope="module")
def mmlu_full():
    return MMLU().load(None)


def test_mmlu_count_and_hash(mmlu_full):
    items, hashes = mmlu_full
    assert len(items) == 14042
    assert [it.id for it in items[:3]] == ["0", "1", "2"]
    assert set(hashes) == {"mmlu"} and len(hashes["mmlu"]) == 64


def test_mmlu_none_cells_shown_as_nan(mmlu_full, mmlu_rows):
    items, _ = mmlu_full
    literal_none = {(i, c) for i, r in enumerate(mmlu_rows) for c in "ABCD" if r[c] == "None"}
    assert literal_none == set(NONE_CELLS.items())
    for i, col in NONE_CELLS.items():
        assert f"\n{col}) nan\n" in items[i].prompt, i
        assert "None" not in items[i].prompt.split("Options:")[1]
    assert "A) nan\n" in items[1006].prompt


def test_mmlu_every_prompt_is_the_filled_template(mmlu_full, mmlu_rows):
    """pandas defaults change nothing but the 10 None cells (no other NA strings, numbers stay text)."""
    items, _ = mmlu_full
    for i, (it, r) in enumerate(zip(items, mmlu_rows, strict=True)):
        fields = {c: ("nan" if NONE_CELLS.get(i) == c else r[c]) for c in "ABCD"}
        assert it.prompt == P.QUERY_TEMPLATE_MULTICHOICE.format(Question=r["Question"], **fields), i


def test_mmlu_prompt_of_item_0(mmlu_full, mmlu_rows):
    items, _ = mmlu_full
    r = mmlu_rows[0]
    expected = (
        f"{r['Question']}.\n\nOptions:\n\nA) {r['A']}\nB) {r['B']}\nC) {r['C']}\nD) {r['D']}\n"
        "The last line of your response should be of the following format: 'Answer: $option'"
    )
    assert items[0].prompt == expected
    assert items[0].prompt == P.QUERY_TEMPLATE_MULTICHOICE.format(
        Question=r["Question"], A=r["A"], B=r["B"], C=r["C"], D=r["D"]
    )
    assert items[0].prompt.startswith(
        "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q..\n"
    )
    assert items[0].gold == r["Answer"] == "B"


def test_mmlu_golds_and_categories(mmlu_full, mmlu_rows):
    items, _ = mmlu_full
    assert [it.gold for it in items] == [r["Answer"] for r in mmlu_rows]
    assert {r["Subject"] for r in mmlu_rows} == set(SUBJECT_TO_CATEGORY)
    assert len(SUBJECT_TO_CATEGORY) == 57
    assert set(SUBJECT_TO_CATEGORY.values()) == {"stem", "humanities", "social_sciences", "other"}
    for it, r in zip(items, mmlu_rows, strict=True):
        assert it.meta["subject"] == r["Subject"]
        assert it.meta["category"] == SUBJECT_TO_CATEGORY[r["Subject"]]
    assert SUBJECT_TO_CATEGORY["abstract_algebra"] == "stem"
    assert SUBJECT_TO_CATEGORY["anatomy"] == "other"
    assert SUBJECT_TO_CATEGORY["professional_law"] == "humanities"
    assert SUBJECT_TO_CATEGORY["econometrics"] == "social_sciences"


@pytest.mark.parametrize("limit", [1, 100])
def test_mmlu_limit_is_fork_sample(mmlu_full, limit):
    full, _ = mmlu_full
    sub, _ = MMLU().load(limit)
    expected = random.Random(0).sample(full, limit)
    assert [it.id for it in sub] == [it.id for it in expected]
    assert [it.prompt for it in sub] == [it.prompt for it in expected]


def test_fork_subset():
    xs = list(range(50))
    assert fork_subset(xs, None) is xs
    assert fork_subset(xs, 0) is xs
    assert fork_subset(xs, 7) == random.Random(0).sample(xs, 7)
    assert sorted(fork_subset(xs, 500)) == xs  # clipped to the data


def _rec(subject: str, score: float | None) -> dict:
    return {"score": score, "meta": {"subject": subject, "category": SUBJECT_TO_CATEGORY[subject]}}


def test_subject_averages_macro_vs_micro():
    records = (
        [_rec("anatomy", 1.0)] * 3  # anatomy 1.0 (other)
        + [_rec("abstract_algebra", 0.0)] * 1  # abstract_algebra 0.0 (stem)
        + [_rec("astronomy", 1.0), _rec("astronomy", 0.0)]  # astronomy 0.5 (stem)
        + [_rec("anatomy", None)]  # ungraded: ignored
    )
    out = subject_averages(records)
    assert out["per_subject"] == {"abstract_algebra": 0.0, "anatomy": 1.0, "astronomy": 0.5}
    assert out["macro"] == pytest.approx(0.5)
    assert out["macro_subjects"] == 3
    assert out["per_category"] == {"other": 1.0, "stem": pytest.approx(1 / 3)}
    micro = sum(r["score"] for r in records if r["score"] is not None) / 6
    assert micro == pytest.approx(4 / 6) and micro != out["macro"]
    lo, hi = out["macro_ci95"]
    assert lo <= out["macro"] <= hi


def test_subject_averages_empty():
    out = subject_averages([])
    assert out["macro"] is None and out["macro_subjects"] == 0


def test_mmlu_aggregate_uses_subject_averages():
    records = [_rec("anatomy", 1.0), _rec("virology", 0.0)]
    assert MMLU().aggregate(records)["macro"] == 0.5


# ---------------------------------------------------------------- GSM8K


def test_gsm8k_load(data_dir):
    items, hashes = GSM8K().load(None)
    assert len(items) == 1319
    assert items[0].gold == "18"
    row0 = json.loads((data_dir / "gsm8k" / "test.jsonl").read_text().splitlines()[0])
    assert items[0].prompt == P.QUERY_TEMPLATE_GSM8K.format(question=row0["question"])
    assert items[0].prompt.endswith("answer to the problem.")
    assert set(hashes) == {"gsm8k"}


def test_gsm8k_limit_is_fork_sample():
    full, _ = GSM8K().load(None)
    sub, _ = GSM8K().load(25)
    assert [it.id for it in sub] == [it.id for it in random.Random(0).sample(full, 25)]


def test_item_type():
    assert isinstance(GSM8K().load(1)[0][0], Item)
