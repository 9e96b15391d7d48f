"""No secret value on a command line: while a run with canary secrets goes on (the deprecated --api-key and a
secret --header, --header-env, a judge key), the command line of scorecheck and of every process it starts
(/proc/PID/cmdline of the whole tree: the grading pool, HumanEval's sandboxes) is read over and over. The
deprecated flags' values are moved into the environment and scorecheck restarts itself without them, so only the
command line the test itself typed, before that restart, may hold one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import start_stub

CANARIES = {"api_key": "sk-canary-api-4d1c", "header": "tok-canary-hdr-9e2f", "header_env": "tok-canary-env-77ab",
            "judge": "sk-canary-judge-c0de"}  # fmt: skip


def _tree(root: int) -> dict[int, str]:
    """pid -> command line of ``root`` and its descendants."""
    parents, cmdlines = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            cmdlines[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    tree, grew = {root}, True
    while grew:
        new = {p for p, pp in parents.items() if pp in tree} - tree
        tree |= new
        grew = bool(new)
    return {p: cmdlines[p] for p in tree if p in cmdlines}


def test_no_secret_on_any_command_line(tmp_path):
    model, judge = start_stub(), start_stub(model="judge-model")
    try:
        env = {**os.environ, "CANARY_HEADER_VAR": CANARIES["header_env"], "CANARY_JUDGE_VAR": CANARIES["judge"]}
        out = tmp_path / "run"
        p = subprocess.Popen(
            [sys.executable, "-m", "scorecheck", "run", "--base-url", model.base_url, "--model", "stub-model",
             "--api-key", CANARIES["api_key"], "--header", f"X-Api-Key: {CANARIES['header']}",
             "--header-env", "X-Token=CANARY_HEADER_VAR", "--grader", "both", "--judge-url", judge.base_url,
             "--judge-model", "judge-model", "--judge-api-key-env", "CANARY_JUDGE_VAR", "--evals", "humaneval,gsm8k",
             "--limit", "3", "--out", str(out), "-q"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        seen: dict[int, str] = {}
        hits, main = [], set()
        while p.poll() is None:
            for pid, cmd in _tree(p.pid).items():
                seen.setdefault(pid, cmd)
                if pid == p.pid:
                    main.add(cmd)
                restarted = pid == p.pid and "--api-key-env" in cmd
                if any(c in cmd for c in CANARIES.values()) and (pid != p.pid or restarted):
                    hits.append((pid, cmd))
            time.sleep(0.01)
        stdout, stderr = p.communicate()
        assert p.returncode in (0, 1), stderr
        assert not hits, hits
        # scorecheck restarted itself with the values moved into its environment (and was seen so)
        assert any("--api-key-env SCORECHECK_MOVED_API_KEY" in c and "--header-env X-Api-Key=" in c for c in main)
        assert len(seen) >= 3, seen  # scorecheck, its grading pool and sandboxes were seen
        assert "--api-key and secret --header values are visible in ps (deprecated)" in stderr
        # and the secrets were sent where they belong
        assert model.stats()["last_authorization"] == f"Bearer {CANARIES['api_key']}"
        assert judge.stats()["last_authorization"] == f"Bearer {CANARIES['judge']}"
        for f in (f for f in out.rglob("*") if f.is_file()):
            data = f.read_bytes()
            assert not any(c.encode() in data for c in CANARIES.values()), f
        assert not any(c in stdout + stderr for c in CANARIES.values())
    finally:
        for s in (model, judge):
            s.proc.terminate()
            s.proc.wait(timeout=10)


def test_scrubbed_argv_forms():
    from scorecheck.cli import scrubbed_argv

    env: dict[str, str] = {}
    argv = ["scorecheck", "run", "--api-key=sk-1", "--header", "Authorization: Bearer t-1", "--header=User-Agent: t",
            "--header", "X-Credential: c-1", "--model", "m", "--", "--api-key", "literal"]  # fmt: skip
    new = scrubbed_argv(argv, env)
    assert new is not None and not any("sk-1" in a or "t-1" in a or "c-1" in a for a in new)
    assert new[:2] == ["scorecheck", "run"] and new[-2:] == ["--api-key", "literal"]  # after --: left alone
    # only an allowlisted header stays (X-Credential matches no secret-looking name and is moved all the same)
    assert ["--header", "User-Agent: t"] == new[new.index("--header") : new.index("--header") + 2]
    moved = dict(a.split("=", 1) for a in new if a.startswith("Authorization="))
    assert env["SCORECHECK_MOVED_API_KEY"] == "sk-1" and env[moved["Authorization"]] == "Bearer t-1"
    assert scrubbed_argv(["scorecheck", "run", "--header", "Accept: text/plain"], {}) is None
    assert scrubbed_argv(["scorecheck", "serve", "vllm", "m", "--", "--api-key", "x"], {}) is None
