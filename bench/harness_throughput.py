"""Benchmark of the harness itself: how fast scorecheck drives a server that answers instantly, and its peak memory.

Starts ``tests/stub_server.py`` (answers "Answer: A" at once, loopback only) as its own process, then runs the real
CLI against it as a child process::

    python -m scorecheck run --base-url http://127.0.0.1:PORT/v1 --model stub-model --evals mmlu \
        --limit 10000 --epochs 2 --concurrency 256 --out TMPDIR -q

(20,000 samples, each its own request), and then the same command again on the same directory (the resume path:
nothing is re-sent). Measured:

- requests/s sustained: rows of the ``sends`` table of the first session / (last ``t`` - first ``t``);
- peak RSS of the scorecheck process: the kernel's high-water mark (``VmHWM`` polled from ``/proc/PID/status``,
  and ``ru_maxrss`` from ``wait4``, whichever is larger);
- wall time of each run, process start to exit (imports, data loading and output files included), and the CPU time
  of the scorecheck process (less sensitive than wall time to other work on the machine).

The run is checked too: exit code 0, every sample graded, one send per request, nothing re-sent on resume.
Bounded: each run is killed after ``--timeout`` seconds; the stub is stopped at the end.

Usage: ``python bench/harness_throughput.py [--write] [--runs N]``; ``--write`` puts the numbers into the section
of BENCHMARKS.md between the ``bench:harness_throughput`` markers (appended when missing).
"""

from __future__ import annotations

import argparse
import os
import platform
import select
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUB = ROOT / "tests" / "stub_server.py"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
START = "<!-- bench:harness_throughput:start -->"
END = "<!-- bench:harness_throughput:end -->"
TARGET_RPS = 1000.0
TARGET_RSS_MB = 300.0


@dataclass
class RunResult:
    code: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stderr: str


@dataclass
class Measurement:
    samples: int
    requests: int
    sends: int
    rps: float
    request_phase_s: float
    first: RunResult
    resume: RunResult
    problems: list[str]


def start_stub(timeout: float = 30.0) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(STUB), "--port", "0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"the stub server did not start: {line!r}")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _vm_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_cli(args: list[str], timeout: float) -> RunResult:
    """Run ``python -m scorecheck ARGS``, polling its peak RSS; killed after ``timeout`` seconds."""
    env = dict(os.environ)
    env.setdefault("SCORECHECK_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "scorecheck", *args], stdout=subprocess.DEVNULL, stderr=err,
                                env=env, cwd=ROOT)  # fmt: skip
        hwm_kb = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            hwm_kb = max(hwm_kb, _vm_hwm_kb(proc.pid))
            if time.monotonic() - t0 > timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
        err.seek(0)
        stderr = err.read()
    # Linux reports ru_maxrss in KiB.
    return RunResult(proc.returncode, wall, usage.ru_utime + usage.ru_stime, max(hwm_kb, usage.ru_maxrss) / 1024,
                     stderr)  # fmt: skip


def measure(port: int, limit: int, samples: int, concurrency: int, timeout: float) -> Measurement:
    out = Path(tempfile.mkdtemp(prefix="scorecheck-bench-"))
    try:
        args = ["run", "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "stub-model", "--evals", "mmlu",
                "--limit", str(limit), "--epochs", str(samples), "--concurrency", str(concurrency),
                "--out", str(out), "-q"]  # fmt: skip
        first = run_cli(args, timeout)
        if first.code != 0:
            raise SystemExit(f"first run failed (exit {first.code}):\n{first.stderr[-3000:]}")
        resume = run_cli(args, timeout)
        if resume.code != 0:
            raise SystemExit(f"resumed run failed (exit {resume.code}):\n{resume.stderr[-3000:]}")
        db = sqlite3.connect(out / "store.sqlite")
        try:
            sessions = [s for (s,) in db.execute("SELECT id FROM sessions ORDER BY started")]
            n, t_first, t_last = db.execute("SELECT COUNT(*), MIN(t), MAX(t) FROM sends WHERE session = ?",
                                            (sessions[0],)).fetchone()  # fmt: skip
            resume_sends = db.execute("SELECT COUNT(*) FROM sends WHERE session = ?", (sessions[1],)).fetchone()[0]
            n_samples = db.execute("SELECT COUNT(*) FROM samples WHERE score IS NOT NULL").fetchone()[0]
            n_ok = db.execute("SELECT COUNT(*) FROM requests WHERE status = 'ok'").fetchone()[0]
            # MMLU repeats a few questions word for word: identical requests are sent once and shared.
            n_keys = db.execute("SELECT COUNT(DISTINCT request_key) FROM samples").fetchone()[0]
        finally:
            db.close()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    expected = limit * samples
    problems = []
    if n_samples != expected:
        problems.append(f"{n_samples} graded samples, expected {expected}")
    if n_ok != n_keys or n != n_keys:
        problems.append(f"{n_ok} ok requests and {n} sends, expected {n_keys} (one per distinct request) of each")
    if resume_sends:
        problems.append(f"the resumed run sent {resume_sends} requests, expected none")
    span = max(t_last - t_first, 1e-9)
    return Measurement(n_samples, n_keys, n, n / span, span, first, resume, problems)


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def table(ms: list[Measurement], limit: int, samples: int, concurrency: int) -> str:
    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    rps = [m.rps for m in ms]
    rss = [m.first.peak_rss_mb for m in ms]
    rows = [
        ("requests/s sustained (request phase)", f"{med(rps):,.0f}", f">= {TARGET_RPS:,.0f}",
         "ok" if med(rps) >= TARGET_RPS else "MISSED"),
        ("peak RSS, first run", f"{max(rss):,.0f} MB", f"< {TARGET_RSS_MB:,.0f} MB",
         "ok" if max(rss) < TARGET_RSS_MB else "MISSED"),
        ("request phase", f"{med([m.request_phase_s for m in ms]):.2f} s", "", ""),
        ("wall time, first run", f"{med([m.first.wall_s for m in ms]):.2f} s", "", ""),
        ("CPU time of scorecheck, first run", f"{med([m.first.cpu_s for m in ms]):.2f} s", "", ""),
        ("wall time, resumed run (nothing re-sent)", f"{med([m.resume.wall_s for m in ms]):.2f} s", "", ""),
        ("peak RSS, resumed run", f"{max(m.resume.peak_rss_mb for m in ms):,.0f} MB", "", ""),
    ]  # fmt: skip
    lines = [
        f"{ms[0].samples:,} samples (mmlu --limit {limit} --epochs {samples}; {ms[0].requests:,} distinct requests), "
        f"--concurrency {concurrency}; "
        f"{len(ms)} run(s), median (peak RSS: max)" + (f"; requests/s per run: {', '.join(f'{r:,.0f}' for r in rps)}"
                                                         if len(ms) > 1 else ""),
        "",
        "| measure | value | target | |",
        "|---|---:|---:|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
    ]  # fmt: skip
    return "\n".join(lines)


def write_section(text: str) -> None:
    section = f"{START}\n{text}\n{END}"
    old = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    if START in old and END in old:
        head, rest = old.split(START, 1)
        new = head + section + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    BENCHMARKS_MD.write_text(new)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=10000, help="MMLU items [10000]")
    ap.add_argument("--samples", type=int, default=2, help="samples per item [2]")
    ap.add_argument("--concurrency", type=int, default=256, help="requests in flight [256]")
    ap.add_argument("--runs", type=int, default=1, help="repeat the measurement, report the median [1]")
    ap.add_argument("--timeout", type=float, default=300, help="kill a scorecheck run after this many seconds [300]")
    ap.add_argument("--write", action="store_true", help="record the numbers in BENCHMARKS.md")
    a = ap.parse_args()

    stub, port = start_stub()
    try:
        ms = []
        for i in range(a.runs):
            m = measure(port, a.limit, a.samples, a.concurrency, a.timeout)
            ms.append(m)
            print(f"run {i + 1}/{a.runs}: {m.rps:,.0f} requests/s, peak RSS {m.first.peak_rss_mb:,.0f} MB, "
                  f"wall {m.first.wall_s:.2f} s, resume {m.resume.wall_s:.2f} s", file=sys.stderr)  # fmt: skip
            for p in m.problems:
                print(f"run {i + 1}: WRONG: {p}", file=sys.stderr)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
            stub_stats = r.read().decode()
    finally:
        stop(stub)
    text = "\n".join([table(ms, a.limit, a.samples, a.concurrency), "", f"Machine: {machine()}.",
                      f"Stub server counts: `{stub_stats}`."])  # fmt: skip
    print(text)
    if a.write and not any(m.problems for m in ms):
        write_section(f"Measured {time.strftime('%Y-%m-%d')}.\n\n{text}")
        print(f"written to {BENCHMARKS_MD}", file=sys.stderr)
    if any(m.problems for m in ms):
        print("the harness did not do the run correctly; numbers not recorded", file=sys.stderr)
        return 2
    ok = statistics.median(m.rps for m in ms) >= TARGET_RPS and max(m.first.peak_rss_mb for m in ms) < TARGET_RSS_MB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
