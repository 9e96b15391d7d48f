"""Benchmark of HumanEval execution: the 164 canonical solutions, each its own sandboxed program.

Runs in a fresh process: the isolation probe (once), then all 164 programs (``prompt + canonical_solution + "\\n" +
test + "\\n" + check(entry_point)``) through ``scorecheck.sandbox.run_programs`` with the glaive-2024 limits (3 s),
one program executing per core and four times as many sandboxes being set up. Measured: wall time from the first
launch to the last outcome, the CPU time of the sandboxes (children), the slowest programs. Checked: all 164 pass.

Target (issue #3): under 30 s on the 2-core development machine.

Usage: ``python bench/humaneval_canonical.py [--runs N] [--write]``; ``--write`` puts the numbers into the section of
BENCHMARKS.md between the ``bench:humaneval_canonical`` markers (appended when missing). Without
``SCORECHECK_DATA_DIR`` it looks for the data in ``../shared/datasets``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START = "<!-- bench:humaneval_canonical:start -->"
END = "<!-- bench:humaneval_canonical:end -->"


def one_run() -> dict:
    from scorecheck import sandbox
    from scorecheck.benchmarks.humaneval import program, read_problems
    from scorecheck.data import resolve
    from scorecheck.protocols import glaive_2024 as P

    problems = read_problems(str(resolve("humaneval").path))
    progs = [program(p["prompt"], p["canonical_solution"], p["test"], p["entry_point"]) for p in problems]
    t0 = time.monotonic()
    iso = sandbox.isolation()
    probe = time.monotonic() - t0
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t1 = time.monotonic()
    outs = sandbox.run_programs(progs, sandbox.Limits(timeout=P.HUMANEVAL_TIMEOUT))
    wall = time.monotonic() - t1
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    failed = [p["task_id"] for p, o in zip(problems, outs, strict=True) if not o.passed]
    slowest = sorted(((o.seconds, p["task_id"]) for p, o in zip(problems, outs, strict=True)), reverse=True)[:3]
    return {
        "wall": wall,
        "probe": probe,
        "cpu": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime),
        "passed": len(problems) - len(failed),
        "failed": failed,
        "slowest": slowest,
        "isolation": iso.description,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not os.environ.get("SCORECHECK_DATA_DIR") and (ROOT.parent / "shared" / "datasets").is_dir():
        os.environ["SCORECHECK_DATA_DIR"] = str(ROOT.parent / "shared" / "datasets")
    if args.one:
        import json

        print(json.dumps(one_run()))
        return 0
    import json
    import subprocess

    runs = []
    for i in range(args.runs):  # each run in a fresh process: the probe and the imports count once each
        p = subprocess.run([sys.executable, __file__, "--one"], capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        r = json.loads(p.stdout)
        runs.append(r)
        print(f"run {i + 1}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU, {r['passed']}/164 passed", flush=True)
    ok = all(r["passed"] == 164 for r in runs)
    med = statistics.median(r["wall"] for r in runs)
    last = runs[-1]
    load = os.getloadavg()[0]
    walls = ", ".join(f"{w:.2f}" for w in (r["wall"] for r in runs))
    text = "\n".join([
        f"Measured {date.today().isoformat()}; {len(runs)} run(s), median; load average at the end {load:.1f} on "
        f"{os.cpu_count()} cores; isolation: {last['isolation']}.",
        "",
        "| measure | value | target |",
        "|---|---:|---|",
        f"| 164 canonical solutions, first launch to last outcome | {med:.2f} s (runs: "
        f"{walls}) | under 30 s |",
        f"| CPU time of the sandboxes (user + system) | {statistics.median(r['cpu'] for r in runs):.2f} s | |",
        f"| passed | {last['passed']}/164 | 164 |",
        f"| isolation probe (once per process) | {statistics.median(r['probe'] for r in runs):.2f} s | |",
        "| slowest programs (last run) | "
        + ", ".join(f"{t} {s:.2f} s" for s, t in last["slowest"]) + " | |",
    ])  # fmt: skip
    print(text)
    if args.write:
        path = ROOT / "BENCHMARKS.md"
        doc = path.read_text()
        block = f"{START}\n{text}\n{END}"
        if START in doc and END in doc:
            doc = doc[: doc.index(START)] + block + doc[doc.index(END) + len(END) :]
        else:
            doc = doc.rstrip("\n") + "\n\n" + block + "\n"
        path.write_text(doc)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
