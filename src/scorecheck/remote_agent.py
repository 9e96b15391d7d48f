"""The box side of ``scorecheck remote``: ``python -m scorecheck.remote_agent COMMAND`` in the box's scorecheck venv.

It starts jobs (a server, a study) detached in their own session, so they survive the SSH connection; secrets
arrive as one JSON line on stdin and go into the job's environment only (never argv, files or logs). Everything
lives under ``~/scorecheck`` (``SCORECHECK_REMOTE_HOME``): ``logs/``, ``jobs/`` (one JSON per job), ``studies/``,
``runs/``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any


def home() -> Path:
    return Path(os.environ.get("SCORECHECK_REMOTE_HOME") or Path.home() / "scorecheck")


def _job_file(name: str) -> Path:
    return home() / "jobs" / f"{name}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def job_state(name: str) -> dict[str, Any] | None:
    try:
        job = json.loads(_job_file(name).read_text())
    except (OSError, ValueError):
        return None
    job["alive"] = _alive(job["pid"])
    rc_file = home() / "jobs" / f"{name}.rc"
    job["exit_code"] = int(rc_file.read_text().strip()) if rc_file.is_file() and rc_file.read_text().strip() else None
    return job


def start(name: str, argv: list[str]) -> dict[str, Any]:
    """Start ``argv`` detached (new session, no terminal), unless a job of this name is already running."""
    cur = job_state(name)
    if cur and cur["alive"]:
        return {**cur, "already_running": True}
    secrets = {}
    line = sys.stdin.readline()
    if line.strip():
        secrets = {str(k): str(v) for k, v in json.loads(line).items()}
    (home() / "logs").mkdir(parents=True, exist_ok=True)
    (home() / "jobs").mkdir(parents=True, exist_ok=True)
    log = home() / "logs" / f"{name}.log"
    rc_file = home() / "jobs" / f"{name}.rc"
    rc_file.unlink(missing_ok=True)
    env = {**os.environ, **secrets, "PYTHONUNBUFFERED": "1"}
    if argv and argv[0] == "scorecheck":  # this venv's scorecheck, the version `remote setup` installed
        argv = [sys.executable, "-m", "scorecheck", *argv[1:]]
    # A tiny wrapper records the exit code; argv is passed as arguments, not through a shell string.
    wrapper = ("import subprocess, sys\n"
               "r = subprocess.call(sys.argv[2:])\n"
               "open(sys.argv[1], 'w').write(str(r))\n")  # fmt: skip
    with open(log, "ab") as f:
        offset = f.tell()  # where this job's lines begin: the log keeps earlier jobs of the same name
        f.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} start {name}: {' '.join(argv)}\n".encode())
        f.flush()
        p = subprocess.Popen([sys.executable, "-c", wrapper, str(rc_file), *argv], stdout=f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env, cwd=home(), start_new_session=True)  # fmt: skip
    job = {"name": name, "pid": p.pid, "argv": argv, "log": str(log), "log_offset": offset, "started": time.time()}
    _job_file(name).write_text(json.dumps(job))
    return {**job, "alive": True, "already_running": False}


def stop(name: str, grace: float = 60.0) -> dict[str, Any]:
    job = job_state(name)
    if not job or not job["alive"]:
        return {"name": name, "stopped": False, "was_running": False}
    try:
        os.killpg(job["pid"], signal.SIGINT)  # a study saves what finished and stops its servers
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while _alive(job["pid"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(job["pid"]):
        try:
            os.killpg(job["pid"], signal.SIGKILL)
        except ProcessLookupError:
            pass
    return {"name": name, "stopped": True, "was_running": True}


def jobs() -> list[dict[str, Any]]:
    d = home() / "jobs"
    return [j for p in sorted(d.glob("*.json")) if (j := job_state(p.stem))] if d.is_dir() else []


def info() -> dict[str, Any]:
    from scorecheck import __version__
    from scorecheck.serving import gpu_info, installed_vllm_version

    return {"scorecheck": __version__, "python": sys.version.split()[0], "gpus": gpu_info(),
            "vllm": installed_vllm_version(), "home": str(home())}  # fmt: skip


def manifest(rel: str) -> dict[str, list[float]]:
    root = home() / rel
    out: dict[str, list[float]] = {}
    if root.is_dir():
        for p in root.rglob("*"):
            if p.is_file() and not p.name.endswith((".lock", "-wal", "-shm")):
                st = p.stat()
                out[str(p.relative_to(home()))] = [st.st_size, st.st_mtime]
    return out


def pack(paths: list[str]) -> None:
    """A tar of ``paths`` (relative to home) on stdout. SQLite files are copied through the backup API, so a run
    still writing gives a consistent copy."""
    buf = sys.stdout.buffer
    with tarfile.open(fileobj=buf, mode="w|") as tar:
        for rel in paths:
            p = home() / rel
            if not p.is_file():
                continue
            if p.suffix == ".sqlite":
                import sqlite3
                import tempfile

                with tempfile.NamedTemporaryFile(suffix=".sqlite") as tmp:
                    src = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
                    dst = sqlite3.connect(tmp.name)
                    src.backup(dst)
                    dst.close()
                    src.close()
                    data = Path(tmp.name).read_bytes()
                ti = tarfile.TarInfo(rel)
                ti.size = len(data)
                ti.mtime = int(p.stat().st_mtime)
                tar.addfile(ti, io.BytesIO(data))
            else:
                tar.add(str(p), arcname=rel)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m scorecheck.remote_agent info|start|stop|jobs|manifest|pack ...", file=sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "pack":
        pack(rest)
        return 0
    if cmd == "info":
        res: Any = info()
    elif cmd == "start":
        sep = rest.index("--")
        res = start(rest[0], rest[sep + 1 :])
    elif cmd == "stop":
        names = [j["name"] for j in jobs() if j["alive"]] if rest == ["all"] else rest
        res = [stop(n) for n in names]
    elif cmd == "jobs":
        res = jobs()
    elif cmd == "manifest":
        res = manifest(rest[0] if rest else "runs")
    else:
        print(f"unknown command {cmd}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
