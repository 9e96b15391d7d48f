"""Benchmark: does scorecheck keep a continuous-batching server's batch full from the first request to the last?

Starts ``bench/sim_server.py`` (one process per replica, loopback only, stops by itself) and runs the real CLI on the
full six-eval suite of glaive-2024 with the Reflection column's settings, with the real grading load (symbolic
MATH/GSM8K in the grading pool, HumanEval programs in the sandbox, IFEval's checkers)::

    python -m scorecheck run --base-url http://127.0.0.1:PORT/v1 [--base-url ...] --model sim-model \
        --system-prompt reflection --reasoning reflection --evals mmlu,gpqa,math,gsm8k,humaneval,ifeval --out TMP -q

with scorecheck's defaults (no ``--concurrency``: it finds the server's capacity). Measured per configuration:
makespan (first arrival to last answer, simulated seconds, from the simulator) / the server-bound ideal for the
requests served (all at time 0, longest first; for two replicas the requests dealt longest first to the two in
turn, the larger of the two ideals); mean batch occupancy; share of the makespan with a non-empty server queue; the
simulator's lag; the client's wall time (requests and grading) and the peak RSS of its largest process.

Usage: ``python bench/batch_throughput.py [--only NAME ...] [--write]``; ``--write`` records the table in BENCHMARKS.md
between the ``bench:batch_throughput`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from foresight_bound import no_foresight  # noqa: E402
from harness_throughput import machine, write_section  # noqa: E402
from sim_server import ideal_makespan  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIM = ROOT / "bench" / "sim_server.py"
EVALS = "mmlu,gpqa,math,gsm8k,humaneval,ifeval"
START = "<!-- bench:batch_throughput:start -->"
END = "<!-- bench:batch_throughput:end -->"


@dataclass
class Config:
    name: str
    slots: int
    speed: float
    replicas: int = 1
    no_metrics: bool = False


CONFIGS = [
    Config("defaults-6.25x", 256, 6.25),
    Config("defaults-12.5x", 256, 12.5),
    Config("64-slots-25x", 64, 25.0),
    Config("1024-slots-3.125x", 1024, 3.125),
    Config("2-replicas-6.25x", 256, 6.25, replicas=2),
    Config("no-metrics-6.25x", 256, 6.25, no_metrics=True),
    Config("defaults-25x", 256, 25.0),
]


def start_sim(c: Config) -> tuple[subprocess.Popen[str], int]:
    args = [sys.executable, str(SIM), "--port", "0", "--slots", str(c.slots), "--speed", str(c.speed),
            "--idle-exit", "600", "--max-wall", "3000", *(["--no-metrics"] if c.no_metrics else [])]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"the simulator did not start: {line!r}")
    return proc, int(line.split()[1])


def _children(pid: int) -> list[int]:
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def _hwm_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def run_client(ports: list[int], out: Path, timeout: float) -> tuple[int, float, float, float, str]:
    """(exit code, wall s, peak RSS of the main process MB, of the largest child MB, stderr)."""
    args = [sys.executable, "-m", "scorecheck", "run", *[x for p in ports for x in ("--base-url", f"http://127.0.0.1:{p}/v1")],
            "--model", "sim-model", "--system-prompt", "reflection", "--reasoning", "reflection", "--evals", EVALS,
            "--out", str(out), "-q"]  # fmt: skip
    env = dict(os.environ)
    env.setdefault("SCORECHECK_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=ROOT)
        main_mb = child_mb = 0.0
        while proc.poll() is None:
            main_mb = max(main_mb, _hwm_mb(proc.pid))
            stack = _children(proc.pid)
            while stack:
                c = stack.pop()
                child_mb = max(child_mb, _hwm_mb(c))
                stack += _children(c)
            if time.monotonic() - t0 > timeout:
                proc.kill()
            time.sleep(0.1)
        wall = time.monotonic() - t0
        err.seek(0)
        return proc.returncode, wall, main_mb, child_mb, err.read()


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats?served=1", timeout=120) as r:
        return json.loads(r.read())


def combined(sts: list[dict], speed: float, slots: int) -> dict:
    """Makespan over all replicas and the ideal for all their requests (dealt longest first in turn)."""
    if len(sts) == 1:
        return sts[0]
    first = min(s["first_arrival_wall"] for s in sts)
    last = max(s["last_done_wall"] for s in sts)
    served = sorted((tuple(r) for s in sts for r in s["served_requests"]), key=lambda r: -r[1])
    ideal = max(ideal_makespan(served[i :: len(sts)], slots) for i in range(len(sts)))  # type: ignore[arg-type]
    span = (last - first) * speed
    return {
        "served": sum(s["served"] for s in sts), "makespan_s": round(span, 3), "ideal_s": round(ideal, 3),
        "ratio": round(span / ideal, 4),
        "mean_occupancy": round(sum(s["mean_occupancy"] * s["makespan_s"] for s in sts) / sum(s["makespan_s"] for s in sts), 4),
        "queue_nonempty_share": round(max(s["queue_nonempty_share"] for s in sts), 4),
        "lag_max_s": max(s["lag_max_s"] for s in sts), "lag_mean_s": max(s["lag_mean_s"] for s in sts),
        "drain_s": round(max(s["drain_s"] or 0.0 for s in sts), 3),
        "completion_tokens": sum(s["completion_tokens"] for s in sts),
    }  # fmt: skip


def measure(c: Config, timeout: float) -> dict:
    sims = [start_sim(c) for _ in range(c.replicas)]
    out = Path(tempfile.mkdtemp(prefix="scorecheck-batch-"))
    try:
        code, wall, main_mb, child_mb, err = run_client([p for _, p in sims], out, timeout)
        if code != 0:
            raise SystemExit(f"{c.name}: scorecheck exited {code}:\n{err[-3000:]}")
        st = combined([stats(p) for _, p in sims], c.speed, c.slots)
        res = json.loads((out / "results.json").read_text())
    finally:
        for proc, _ in sims:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(out, ignore_errors=True)
    sched = res.get("schedule") or {}
    st.pop("served_requests", None)
    st.pop("timeline", None)
    return {
        "config": c.name, "slots": c.slots, "speed": c.speed, "replicas": c.replicas, **st,
        "client_wall_s": round(wall, 1), "client_wall_sim_s": round(wall * c.speed, 1),
        "peak_rss_main_mb": round(main_mb), "peak_rss_child_mb": round(child_mb),
        "concurrency": [(x["mode"], x["final"], x["max"]) for x in sched.get("concurrency", [])],
        "eta": (sched.get("eta") or {}).get("predictions"), "eta_actual_s": (sched.get("eta") or {}).get("actual_s"),
        "samples": sum(e.get("n", 0) for e in res["evals"].values()),
        "no_foresight": no_foresight(c.slots, c.replicas),
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = [
        "| configuration | requests | makespan / ideal | ideal (sim. s) | drain (sim. s) | (makespan - drain) / ideal "
        "| no-foresight reference / ideal | makespan / no-foresight "
        "| occupancy | queue non-empty | sim lag max / mean | client wall (sim. s) | concurrency (mode, final, max) "
        "| peak RSS main / worker |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        conc = "; ".join(f"{m} {f} (max {x})" for m, f, x in r["concurrency"])
        lines.append(
            f"| {r['config']} | {r['served']:,} | **{r['ratio']:.3f}** | {r['ideal_s']:,.0f} | {r['drain_s']:,.0f} "
            f"| {(r['makespan_s'] - r['drain_s']) / r['ideal_s']:.3f} "
            f"| {r['no_foresight']['mean']:.3f} ({r['no_foresight']['min']:.3f}-{r['no_foresight']['max']:.3f}) "
            f"| {r['ratio'] / r['no_foresight']['mean']:.3f} | {r['mean_occupancy']:.3f} "
            f"| {r['queue_nonempty_share']:.3f} | {r['lag_max_s']:.2f} / {r['lag_mean_s']:.3f} s "
            f"| {r['client_wall_sim_s']:,.0f} | {conc} | {r['peak_rss_main_mb']} / {r['peak_rss_child_mb']} MB |"
        )  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="configurations to run (names in CONFIGS)")
    ap.add_argument("--timeout", type=float, default=1200, help="kill a scorecheck run after this many seconds")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--write", action="store_true", help="record the table in BENCHMARKS.md")
    a = ap.parse_args()
    rows = []
    for c in CONFIGS:
        if a.only and c.name not in a.only:
            continue
        r = measure(c, a.timeout)
        print(json.dumps(r), file=sys.stderr, flush=True)
        rows.append(r)
    text = "\n".join([table(rows), "", f"Machine: {machine()}."])
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    if a.write:
        write_section(f"Measured {time.strftime('%Y-%m-%d')}.\n\n{text}", START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
