"""Stops of a real run with the embedded model: SIGTERM and Ctrl-C stop it cleanly (the store flushed, a message,
exit 143 / 130), SIGKILL leaves nothing behind either: no process of scorecheck's tree (the embedded llama.cpp
server, the grading workers, their sandboxes, multiprocessing's resource tracker) is alive afterwards.

Kept small (five HumanEval items, 32 tokens, one at a time): each case is a real run up to its first graded answer.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _tree(root: int) -> dict[int, tuple[int, str]]:
    """Every live descendant of ``root``: pid -> (start time, command line)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            parents.setdefault(st[1], []).append(int(entry))
    out: dict[int, tuple[int, str]] = {}
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            st = _stat(child)
            if st is not None and child not in out:
                out[child] = (st[2], _cmdline(child))
                todo.append(child)
    return out


def _alive(pid: int, started: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z" and st[2] == started


def _kind(cmdline: str) -> str:
    if "scorecheck.embedded" in cmdline:
        return "embedded server"
    if "spawn_main" in cmdline:
        return "grading worker"
    if "resource_tracker" in cmdline:
        return "resource tracker"
    return cmdline[:60]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_signal_stops_the_run_and_every_child_dies(tmp_path, data_dir, sig):
    out = tmp_path / "run"
    # One request at a time: the grading worker starts with the first answer, the run goes on for a few more.
    args = [sys.executable, "-m", "scorecheck", "run", "--evals", "humaneval", "--limit", "5", "--max-tokens", "32",
            "--concurrency", "1", "--out", str(out), "-q"]  # fmt: skip
    # Its own process group, as a command in a terminal: Ctrl-C reaches the whole group (the grading workers too).
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         start_new_session=True)  # fmt: skip
    tree: dict[int, tuple[int, str]] = {}
    deadline = time.monotonic() + 240
    while True:
        tree.update(_tree(p.pid))
        kinds = {_kind(c) for _, c in tree.values()}
        if {"embedded server", "grading worker"} <= kinds:
            break
        assert p.poll() is None, f"the run ended before its workers were seen: {p.stderr.read() if p.stderr else ''}"
        assert time.monotonic() < deadline, f"no embedded server and grading worker seen: {kinds}"
        time.sleep(0.05)
    tree.update(_tree(p.pid))
    if sig == signal.SIGINT:
        os.killpg(p.pid, signal.SIGINT)  # what Ctrl-C does
    else:
        os.kill(p.pid, sig)
    code = p.wait(timeout=90)  # no hang in the grading pool's shutdown
    err = p.stderr.read() if p.stderr else ""

    deadline = time.monotonic() + 20
    while (left := {pid: c for pid, (t, c) in tree.items() if _alive(pid, t)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"left running after {sig.name}: {[(pid, _kind(c)) for pid, c in left.items()]}"

    con = sqlite3.connect(out / "store.sqlite")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        statuses = [s for (s,) in con.execute("SELECT status FROM sessions")]
    finally:
        con.close()
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
        assert statuses == ["running"]  # it had no chance to say otherwise
    else:
        assert code == 128 + sig, (code, err)
        assert f"stopped by {sig.name}" in err and "Traceback" not in err, err
        assert statuses == ["interrupted"]
    assert not (out / "results.json").exists()
