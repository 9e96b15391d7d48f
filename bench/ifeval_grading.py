"""How long grading IFEval's 541 responses takes: ``scorecheck grade`` end to end, and the checker alone.

Two measures, each the median of ``--runs`` runs:

- **CLI wall time**: ``python -m scorecheck grade --eval ifeval --responses <the GPT-4 file> --input-data ifeval
  --exclude-key 2785`` (540 prompts, both checkers, strict and loose), process start to exit: imports, nltk and
  langdetect loading, reading and checking the data, writing results.json / samples.jsonl / summary.md.
- **in-process grading**: ``check_prompt`` over the 541 GPT-4 responses against the fork's input file (all match),
  both checkers, in a fresh process per run, split into loading (nltk, punkt, langdetect's profiles) and checking.

The CLI run is also checked (exit code 0, reference prompt-strict 0.772222); a wrong run exits 2.
``--write`` replaces the section between the markers in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK_START = "<!-- bench:ifeval_grading:start -->"
MARK_END = "<!-- bench:ifeval_grading:end -->"

IN_PROCESS = r"""
import json, os, sys, time
t0 = time.perf_counter()
from scorecheck.grading import ifeval as G
d = os.environ["SCORECHECK_DATA_DIR"] + "/ifeval/"
inputs = [json.loads(x) for x in open(d + "ifeval_input_data_glaive.jsonl")]
resp = {}
for x in open(d + "input_response_data_gpt4_20231107_145030.jsonl"):
    r = json.loads(x)
    resp[r["prompt"]] = r["response"]
t1 = time.perf_counter()
G.count_sentences("Warm up. Twice."), G.word_tokens("Warm up."), G.detect_language("warm up the detector")
t2 = time.perf_counter()
for row in inputs:
    G.check_prompt(row["instruction_id_list"], row["kwargs"], resp[row["prompt"]])
t3 = time.perf_counter()
print(json.dumps({"n": len(inputs), "first": t2 - t1, "rest": t3 - t2, "total": t3 - t1}))
"""


def data_dir() -> str:
    d = os.environ.get("SCORECHECK_DATA_DIR") or str(ROOT.parent / "shared" / "datasets")
    if not Path(d, "ifeval").is_dir():
        sys.exit(f"no IFEval data at {d}; set SCORECHECK_DATA_DIR")
    return d


def cli_run(d: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "scorecheck", "grade", "--eval", "ifeval", "--responses",
               f"{d}/ifeval/input_response_data_gpt4_20231107_145030.jsonl", "--input-data", "ifeval",
               "--exclude-key", "2785", "--out", tmp, "-q"]  # fmt: skip
        t = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SCORECHECK_DATA_DIR": d})
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            sys.exit(2)
        ev = json.loads(Path(tmp, "results.json").read_text())["evals"]["ifeval"]
        if round(ev["checkers"]["reference"]["prompt_strict"], 6) != 0.772222 or ev["n"] != 540:
            print("wrong result", ev["checkers"], file=sys.stderr)
            sys.exit(2)
    return wall, cpu


def in_process(d: str) -> dict[str, float]:
    p = subprocess.run([sys.executable, "-c", IN_PROCESS], capture_output=True, text=True,
                       env={**os.environ, "SCORECHECK_DATA_DIR": d}, check=True)  # fmt: skip
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    d = data_dir()
    cli = [cli_run(d) for _ in range(args.runs)]
    walls = [w for w, _ in cli]
    inproc = [in_process(d) for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in inproc) for k in ("first", "rest", "total")}
    n = inproc[0]["n"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')}; {args.runs} run(s), median; load average at the end "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| `scorecheck grade`, 540 responses, both checkers, process start to exit | {statistics.median(walls):.2f} s "
        f"(runs: {', '.join(f'{w:.2f}' for w in walls)}) | a few seconds |",
        f"| the same, CPU time (user + system) | {statistics.median(c for _, c in cli):.2f} s | |",
        f"| in-process grading of {n} responses, both checkers | {med['total']:.2f} s | |",
        f"| of which loading nltk, punkt and langdetect's profiles | {med['first']:.2f} s | |",
        f"| of which checking | {med['rest']:.2f} s ({1000 * med['rest'] / n:.1f} ms a response) | |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        path = ROOT / "BENCHMARKS.md"
        s = path.read_text()
        s = re.sub(re.escape(MARK_START) + ".*?" + re.escape(MARK_END), MARK_START + "\n" + text + "\n" + MARK_END,
                   s, flags=re.DOTALL)  # fmt: skip
        path.write_text(s)


if __name__ == "__main__":
    main()
