"""How often scorecheck's symbolic grader agrees with published correctness labels (results in docs/graders.md).

- MATH: ``math/qwen25math_math_cot_100_graded.jsonl``, 100 MATH test problems x 8 Qwen2.5-Math responses, each with
  Qwen's extracted answer (``pred``) and Qwen's rule-based verdict (``score``). The symbolic grader sees what
  scorecheck's MATH eval would give it: gold = math_test.csv's ``Answer`` for that problem, answer = ``pred``.
- GSM8K: ``gsm8k/example_model_solutions.jsonl``, 1,319 problems x 4 GPT-3 solutions ending in ``A: <number>``, each
  with ``is_correct`` from OpenAI's GSM8K scripts. Gold = test.jsonl's answer after ``####`` (stripped, ``%``
  removed, as scorecheck's GSM8K eval does); answer = the text after the last ``A:`` (``%`` removed); a solution
  without one is unparsed and scores 0, as in a run.
- forms: ``tests/data/answer_forms.jsonl``, answer lines in the forms models write (markdown, trailing periods,
  ``\\$18``, ``14{,}000``, ``eighteen``, ...) and near misses in the same forms, each labelled by hand; graded by the
  MATH or GSM8K eval's grader as the line says.

Grades go through the same function the runner's worker pool calls (a 2-process spawn pool). Agreement is counted
against the label; a false positive is "symbolic says correct, label says wrong", a false negative the reverse.
Disagreements are grouped by gold and answer so each kind is shown once with its count.

Run: ``SCORECHECK_DATA_DIR=../shared/datasets python bench/grader_study.py [--json out.json]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from scorecheck import data  # noqa: E402
from scorecheck.benchmarks import Item  # noqa: E402
from scorecheck.benchmarks.gsm8k import grade_symbolic  # noqa: E402
from scorecheck.benchmarks.math_eval import grade_symbolic_math  # noqa: E402

GSM_ANSWER = re.compile(r"A:\s*([^\n]+)")
FORMS = ROOT / "tests" / "data" / "answer_forms.jsonl"


def _data_path(rel: str) -> Path:
    d = data.data_dir()
    if d is None or not (d / rel).is_file():
        raise SystemExit(f"needs $SCORECHECK_DATA_DIR/{rel} (the validation files of ../shared/datasets)")
    return d / rel


def math_cases() -> list[dict]:
    csv_rows = list(csv.DictReader(io.StringIO(data.resolve("math").read_bytes().decode("utf-8"), newline="")))
    gold_of = {r["Question"]: r["Answer"] for r in csv_rows}
    cases = []
    for line in _data_path("math/qwen25math_math_cot_100_graded.jsonl").read_text().splitlines():
        rec = json.loads(line)
        gold = gold_of[rec["question"]]
        for k, (pred, label) in enumerate(zip(rec["pred"], rec["score"], strict=True)):
            cases.append({"id": f"{rec['idx']}/{k}", "gold": gold, "qwen_gold": rec["gt"], "answer": pred,
                          "label": bool(label)})  # fmt: skip
    return cases


def gsm8k_cases() -> list[dict]:
    golds = [json.loads(x)["answer"].split("####")[1].strip().replace("%", "")
             for x in data.resolve("gsm8k").read_bytes().decode("utf-8").splitlines() if x.strip()]  # fmt: skip
    cases = []
    lines = _data_path("gsm8k/example_model_solutions.jsonl").read_text().splitlines()
    for i, line in enumerate(lines):
        rec = json.loads(line)
        for model in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
            sol = rec[model]
            m = GSM_ANSWER.findall(sol["solution"])
            cases.append({"id": f"{i}/{model}", "gold": golds[i], "answer": m[-1].replace("%", "") if m else None,
                          "label": bool(sol["is_correct"])})  # fmt: skip
    return cases


def forms_cases(eval_name: str) -> list[dict]:
    rows = [json.loads(x) for x in FORMS.read_text().splitlines() if x.strip()]
    return [{"id": f"{eval_name}/{i}", "gold": r["gold"], "answer": r["answer"], "label": r["correct"]}
            for i, r in enumerate(rows) if r["eval"] == eval_name]  # fmt: skip


def grade(cases: list[dict], fn) -> float:  # noqa: ANN001
    t0 = time.perf_counter()
    todo = [c for c in cases if c["answer"] is not None]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        graded = pool.map(fn, [Item(c["id"], "", c["gold"]) for c in todo], [c["answer"] for c in todo],
                          chunksize=16)  # fmt: skip
        for c, g in zip(todo, graded, strict=True):
            c["symbolic"], c["detail"] = g.score == 1.0, g.detail
    for c in cases:
        if c["answer"] is None:
            c["symbolic"], c["detail"] = False, "unparsed"
    return time.perf_counter() - t0


def summarise(cases: list[dict]) -> dict:
    fp = [c for c in cases if c["symbolic"] and not c["label"]]
    fn = [c for c in cases if not c["symbolic"] and c["label"]]
    agree = len(cases) - len(fp) - len(fn)

    def kinds(rows: list[dict]) -> list[dict]:
        groups: dict[tuple, dict] = {}
        for c in rows:
            g = groups.setdefault((c["gold"], c["answer"]), {"gold": c["gold"], "answer": c["answer"], "count": 0,
                                                              "detail": c["detail"], "ids": []})  # fmt: skip
            g["count"] += 1
            g["ids"].append(c["id"])
        return sorted(groups.values(), key=lambda g: -g["count"])

    return {
        "n": len(cases),
        "label_correct": sum(c["label"] for c in cases),
        "symbolic_correct": sum(c["symbolic"] for c in cases),
        "agree": agree,
        "agreement": agree / len(cases),
        "false_positives": len(fp),
        "false_negatives": len(fn),
        "unparsed": sum(1 for c in cases if c["answer"] is None),
        "fp_kinds": kinds(fp),
        "fn_kinds": kinds(fn),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out = {}
    for name, cases, fn in (("math", math_cases(), grade_symbolic_math), ("gsm8k", gsm8k_cases(), grade_symbolic),
                            ("forms", forms_cases("math") + forms_cases("gsm8k"), None)):  # fmt: skip
        if fn is None:  # the forms set: each line graded by its own eval's grader
            secs = sum(grade([c for c in cases if c["id"].startswith(e)], f)
                       for e, f in (("math/", grade_symbolic_math), ("gsm8k/", grade_symbolic)))  # fmt: skip
        else:
            secs = grade(cases, fn)
        s = summarise(cases)
        s["seconds"] = round(secs, 1)
        if name == "math":
            s["gold_differs_from_qwen_gt"] = sorted({(c["gold"], c["qwen_gold"]) for c in cases
                                                     if c["gold"] != c["qwen_gold"]})  # fmt: skip
        out[name] = s
        print(f"{name}: {s['n']} answers, labels correct {s['label_correct']}, symbolic correct "
              f"{s['symbolic_correct']}, agree {s['agree']} ({100 * s['agreement']:.2f}%), false positives "
              f"{s['false_positives']}, false negatives {s['false_negatives']}, unparsed {s['unparsed']} "
              f"({secs:.1f} s)")  # fmt: skip
        for label, kinds in (("FP", s["fp_kinds"]), ("FN", s["fn_kinds"])):
            for k in kinds:
                print(f"  {label} x{k['count']}: gold {k['gold']!r} answer {k['answer']!r} {k['detail']}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
