"""``scorecheck cloud``: a SkyPilot task that runs a study on cloud GPU boxes, any cloud SkyPilot supports (Vast.ai
included: ``--infra vast``), on one node or several; ``cloud fetch CLUSTER`` brings the run directories home.

The task is a directory of its own (``scorecheck-<study>/``): ``task.yaml`` and a ``workdir/`` holding what the box
installs and runs — a wheel of this scorecheck (built here, as ``remote setup`` does), the study file, and
``constraints.txt`` pinning the versions of scorecheck's dependencies installed here — so it works from any
directory. The box gets the same layout as a ``remote setup`` box: a venv at ``~/scorecheck/venv`` (Python 3.11,
made by a pinned ``uv``), the run directories at ``~/scorecheck/runs/<study>``; native vLLM in a venv of its own
(``~/scorecheck/vllm``) so its pins and scorecheck's never meet. Every ``scorecheck remote`` command works on the
cluster by its name (SkyPilot writes ``~/.sky/generated/ssh/<cluster>`` and includes it in ``~/.ssh/config``).

``HF_TOKEN`` is declared a SkyPilot secret with no value: ``sky launch --secret HF_TOKEN`` takes it from your
environment; it is never written into the task. ``resources.autostop`` stops (``--down``: tears down) the cluster
after ``--idle-minutes`` without a job, so a box forgotten does not cost for long.

Several nodes (``num_nodes = N`` in a study's server, or ``--num-nodes``): SkyPilot starts N nodes and runs the same
``run`` on each, with ``SKYPILOT_NODE_RANK`` and ``SKYPILOT_NODE_IPS`` (one IP a line, the head first). The run is
``scorecheck cloud node``: on the head it runs the study, serving one replica itself and telling every other node's
agent (a small HTTP endpoint on ``--agent-port``) which server to start; it waits for every replica to list the
model, spreads requests over all of them (the client's least-loaded choice, as for ``replicas = N`` on one box),
reports a replica that dies and goes on on the others. Workers always exit 0 (SkyPilot cancels the whole job when a
node fails): when the head says it is done, or when it has been silent for ``HEAD_SILENT_S``.

Vast.ai containers rarely run docker, so with ``--infra vast`` the task runs vLLM natively (``--no-docker``, the
pinned vLLM installed in ``setup``) unless ``--docker`` asks for the servers' images; the YAML says so in a comment.
Vast.ai offers no multi-node clusters in SkyPilot.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from scorecheck import remote
from scorecheck import study as st
from scorecheck.errors import ScorecheckError, UsageError
from scorecheck.serving import DEFAULT_VLLM_VERSION, ServerGroup, ServerSpec
from scorecheck.study import Study

UV_VERSION = "0.8.22"
"""The uv that makes the box's venvs (a Python 3.11 whatever the image has)."""
PYTHON = "3.11"
VLLM_VENV = f"{remote.REMOTE_HOME}/vllm"
AGENT_PORT = 8079
"""The node agent's port on workers (between the cluster's nodes only; SkyPilot opens no port to the outside)."""
HEAD_SILENT_S = 900.0
"""A worker gives up (exits 0) when the head has not been heard from for this long."""


def accelerators_needed(study: Study) -> int:
    """GPUs per node the study's largest server group needs (servers run one after another)."""
    return max((s.tp * s.replicas for s in study.servers.values() if s.engine == "vllm"), default=0)


def nodes_needed(study: Study, num_nodes: int | None = None) -> int:
    return num_nodes or max(study.num_nodes.values(), default=1)


NATIVE_ON_VAST = ("Vast.ai containers rarely run docker: vLLM runs natively (study run --no-docker), installed in "
                  "setup; scorecheck cloud --docker keeps the servers' docker images")  # fmt: skip


def native_by_default(infra: str | None) -> bool:
    """Whether ``infra`` runs vLLM natively unless asked otherwise (Vast.ai: its containers rarely run docker)."""
    return (infra or "").split("/")[0].strip().lower() == "vast"


def cluster_name(study: Study) -> str:
    """A SkyPilot cluster name for the study (lowercase letters, digits and dashes, starting with a letter)."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"scorecheck-{study.name}".lower()).strip("-")
    return name[:40].rstrip("-")


# --- the task ------------------------------------------------------------------------------------------------------


def constraints() -> str:
    """``name==version`` for scorecheck's dependencies (with the embedded extra), as installed here."""
    pins: dict[str, str] = {}
    todo: list[tuple[str, tuple[str, ...]]] = [("scorecheck", ("", "embedded"))]
    while todo:
        name, extras = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = canonicalize_name(dist.metadata["Name"])
        if key in pins:
            continue
        pins[key] = dist.version
        for line in dist.requires or []:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
                todo.append((req.name, ("",)))
    pins.pop("scorecheck", None)
    return "".join(f"{k}=={v}\n" for k, v in sorted(pins.items()) if "+" not in v)


@dataclass
class TaskDir:
    path: Path
    """The task directory (``task.yaml`` and ``workdir/``)."""
    yaml: Path
    task: dict[str, Any]
    cluster: str


def task(study: Study, study_file_in_workdir: str, accelerators: str | None = None, infra: str | None = None,
         disk_size: int = 512, study_args: list[str] | None = None, workdir: str = ".",
         docker: bool | None = None, wheel: str | None = None, num_nodes: int | None = None,
         idle_minutes: int | None = 30, down: bool = False, agent_port: int = AGENT_PORT) -> dict[str, Any]:  # fmt: skip
    """The SkyPilot task as a dict (yaml.safe_dump writes it). ``docker``: serve vLLM from the servers' docker images
    (True) or natively (False, ``study run --no-docker``); None: natively on Vast.ai, the images elsewhere.
    ``wheel``: the scorecheck wheel's file name in the workdir (None: ``scorecheck==<this version>`` from PyPI)."""
    from scorecheck import __version__
    from scorecheck.remote import EMBEDDED_MODEL_PACKAGE

    need = accelerators_needed(study)
    if accelerators is None:
        accelerators = f"H100:{need}" if need else None
    elif need and ":" in accelerators and int(accelerators.rsplit(":", 1)[1]) < need:
        raise UsageError(f"--accelerators {accelerators}: the study's servers need {need} GPUs (tp x replicas)")
    nodes = nodes_needed(study, num_nodes)
    if nodes > 1 and native_by_default(infra):
        raise UsageError("num_nodes > 1: SkyPilot has no multi-node clusters on Vast.ai; choose another --infra")
    study_args = list(study_args or [])
    has_vllm = any(s.engine == "vllm" for s in study.servers.values())
    vast_native = docker is None and has_vllm and native_by_default(infra) and "--no-docker" not in study_args
    native = docker is False or vast_native or "--no-docker" in study_args
    if native and "--no-docker" not in study_args:
        study_args.append("--no-docker")
    versions = {
        s.version or DEFAULT_VLLM_VERSION
        for s in study.servers.values()
        if s.engine == "vllm" and (native or not s.docker)
    }
    docker_only = not native and all(s.docker for s in study.servers.values() if s.engine == "vllm")
    engines = {s.engine for s in study.servers.values()}
    venv = f"~/{remote.VENV}"
    uv_pip = f"uv pip install -q --python {venv}/bin/python"
    extras = "[embedded]" if "embedded" in engines else ""
    package = f"./{wheel}{extras}" if wheel else f"scorecheck{extras}=={__version__}"
    setup = ["set -e", f"python3 -m pip install -q --user 'uv=={UV_VERSION}' || pip install -q 'uv=={UV_VERSION}'",
             'export PATH="$HOME/.local/bin:$PATH"',
             f"uv venv -q --allow-existing --python {PYTHON} {venv}",
             f"{uv_pip} -c constraints.txt '{package}'"]  # fmt: skip
    if "embedded" in engines:
        setup.append(f"{uv_pip} --no-deps '{EMBEDDED_MODEL_PACKAGE}'")
    if "vllm" in engines and not docker_only:
        if len(versions) > 1:
            raise UsageError(f"the study pins several vLLM versions ({', '.join(sorted(versions))}); one box, one venv")
        setup += [f"uv venv -q --allow-existing --python {PYTHON} ~/{VLLM_VENV}",
                  f"uv pip install -q --python ~/{VLLM_VENV}/bin/python 'vllm=={versions.pop()}'"]  # fmt: skip
    out = f'"$HOME"/{remote.REMOTE_HOME}/runs/{shlex.quote(study.name)}'  # the box's home, where `remote` looks
    if nodes > 1:
        head = ["scorecheck", "cloud", "node", study_file_in_workdir]
        study_args = ["--agent-port", str(agent_port), *study_args]
    else:
        head = ["scorecheck", "study", "run", study_file_in_workdir]
    run = ["set -e", f"source {venv}/bin/activate", f'export PATH="$PATH:$HOME/{VLLM_VENV}/bin"',
           f"{shlex.join(head)} --out {out} {shlex.join(study_args)}".rstrip()]  # fmt: skip
    resources: dict[str, Any] = {"disk_size": disk_size}
    if accelerators:
        resources["accelerators"] = accelerators
    if infra:
        resources["infra"] = infra
    if idle_minutes is not None:
        resources["autostop"] = {"idle_minutes": idle_minutes, "down": down}
    t: dict[str, Any] = {"name": f"scorecheck-{study.name}", "workdir": workdir}
    if nodes > 1:
        t["num_nodes"] = nodes
    t.update({
        "resources": resources,
        "envs": {"SCORECHECK_STUDY": study_file_in_workdir},
        "secrets": {"HF_TOKEN": None},
        "setup": "\n".join(setup) + "\n",
        "run": "\n".join(run) + "\n",
    })  # fmt: skip
    if vast_native:
        t["run"] = f"# {NATIVE_ON_VAST}\n" + t["run"]
    return t


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (setup, run) as literal blocks, as people write SkyPilot tasks."""


_Dumper.add_representer(
    str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None)
)


def dump(t: dict[str, Any]) -> str:
    header = "# SkyPilot task written by scorecheck cloud; launch: sky launch --secret HF_TOKEN THIS.yaml\n"
    if t.get("run", "").startswith(f"# {NATIVE_ON_VAST}"):
        header += f"# {NATIVE_ON_VAST}\n"
    return header + yaml.dump(t, Dumper=_Dumper, sort_keys=False, width=1000)


def write_task(study_file: Path, dest: Path | None = None, *, build: bool = True, wheel: Path | None = None,
               **kwargs: Any) -> TaskDir:  # fmt: skip
    """The task directory for ``study_file``: ``task.yaml`` and ``workdir/`` (the wheel, the study file,
    ``constraints.txt``). ``wheel``: one built already; ``build=False`` (no source checkout): scorecheck of this
    version from PyPI instead."""
    s = st.load(study_file)
    dest = Path(dest or f"scorecheck-{s.name}").resolve()
    work = dest / "workdir"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    name = None
    if wheel is not None:
        shutil.copy(wheel, work / wheel.name)
        name = wheel.name
    elif build:
        with tempfile.TemporaryDirectory() as d:
            built = remote.build_wheel(Path(d))
            shutil.copy(built, work / built.name)
            name = built.name
    shutil.copy(study_file, work / study_file.name)
    (work / "constraints.txt").write_text(constraints())
    t = task(s, study_file.name, workdir=str(work), wheel=name, **kwargs)
    path = dest / "task.yaml"
    path.write_text(dump(t))
    return TaskDir(dest, path, t, cluster_name(s))


def validate(path: Path) -> None:
    """Load the task with SkyPilot's own loader (``sky.Task.from_yaml``); needs the ``cloud`` extra."""
    try:
        import sky
    except ImportError:
        raise ScorecheckError("SkyPilot is not installed: pip install 'scorecheck[cloud]'") from None
    sky.Task.from_yaml(str(path))


# --- launch, fetch, down -------------------------------------------------------------------------------------------


def _sky() -> str:
    exe = shutil.which("sky")
    if exe is None:
        raise ScorecheckError("`sky` not found: pip install 'scorecheck[cloud]' and run `sky check` once")
    return exe


def launch(path: Path, cluster: str, fetch_to: Path | None = None, down: bool = False,
           note: Any = print) -> int:  # fmt: skip
    """``sky launch`` (its logs stream here until the study ends), then fetch the run directories into
    ``fetch_to``, then, with ``down``, ``sky down`` — also when the launch failed (SkyPilot keeps a cluster whose
    setup failed, for debugging: it would go on costing)."""
    sky = _sky()
    code = subprocess.call([sky, "launch", "-y", "-c", cluster, "--secret", "HF_TOKEN", str(path)])
    note(f"sky launch exited {code}")
    try:
        if fetch_to is not None:
            try:
                got = fetch(cluster, fetch_to, note=note)
                note(f"{len(got)} file(s) fetched from {cluster} into {fetch_to}/")
            except ScorecheckError as e:
                note(f"fetch from {cluster} failed: {e}")
                code = code or 1
    finally:
        if down:
            note(f"tearing down {cluster} (sky down)")
            code = subprocess.call([sky, "down", "-y", cluster]) or code
        else:
            note(f"{cluster} stays up until its autostop; `sky down {cluster}` ends it now")
    return code


def fetch(cluster: str, dest: Path, note: Any = None) -> list[str]:
    """The head node's ``~/scorecheck/runs`` into ``dest``, incrementally (``remote fetch`` over the cluster's SSH
    alias; SkyPilot 0.14 has no ``sky rsync-down``, its docs point at rsync/scp to that alias). Not rsync: a run's
    SQLite store is copied through SQLite's backup API, consistent even while the run writes to it."""
    t = remote.Target.from_env(host=cluster)
    return remote.fetch(t, dest, stamp=f".scorecheck-fetch-{re.sub(r'[^A-Za-z0-9_.-]', '_', cluster)}.json",
                        note=note)  # fmt: skip


# --- many nodes: the head and the workers ----------------------------------------------------------------------------


def node_ips(env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """This node's rank and every node's IP (the head first), from SkyPilot's variables; one node without them."""
    env = dict(os.environ if env is None else env)
    ips = [ln.strip() for ln in env.get("SKYPILOT_NODE_IPS", "").splitlines() if ln.strip()]
    rank = int(env.get("SKYPILOT_NODE_RANK") or 0)
    if ips and not 0 <= rank < len(ips):
        raise UsageError(f"SKYPILOT_NODE_RANK={rank} but SKYPILOT_NODE_IPS lists {len(ips)} node(s)")
    return rank, ips or ["127.0.0.1"]


def _token() -> str:
    """Shared by the nodes of one SkyPilot job without being written anywhere: its task id."""
    return os.environ.get("SKYPILOT_TASK_ID", "")


def node_port(spec: ServerSpec) -> int:
    """The port every node serves ``spec`` on (the study's ``port``; vLLM's 8000 without one)."""
    return spec.port or 8000


def _agent_call(ip: str, port: int, path: str, body: dict[str, Any] | None = None, timeout: float = 5) -> Any:
    req = urllib.request.Request(f"http://{ip}:{port}{path}", data=json.dumps(body or {}).encode() if body is not None
                                 else None, headers={"X-Scorecheck-Token": _token()})  # fmt: skip
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


class Head:
    """The head node's side: before each server, the workers start their replicas of it; at the end, they stop."""

    def __init__(self, study: Study, workers: list[str], agent_port: int, note: Any) -> None:
        self.study = study
        self.workers = workers
        self.agent_port = agent_port
        self.note = note
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)

    def before_server(self, sname: str) -> None:
        spec = self.study.servers[sname]
        k = min(self.study.num_nodes.get(sname, 1), len(self.workers) + 1) - 1
        serving = self.workers[:k]
        for ip in self.workers:
            try:
                _agent_call(ip, self.agent_port, "/serve", {"server": sname if ip in serving else None})
            except OSError as e:
                if ip in serving:
                    self.note(f"node {ip}: no agent on port {self.agent_port} ({e}); expecting a server there anyway")
        self.study.node_urls[sname] = [f"http://{ip}:{node_port(spec)}/v1" for ip in serving]

    def _heartbeat(self) -> None:
        while not self._stop.wait(30):
            for ip in self.workers:
                try:
                    _agent_call(ip, self.agent_port, "/state")
                except OSError:
                    pass

    def __enter__(self) -> Head:
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for ip in self.workers:
            try:
                _agent_call(ip, self.agent_port, "/done", {})
            except OSError:
                pass


def run_head(study: Study, ips: list[str], agent_port: int, overrides: dict[str, Any] | None = None,
             only: list[str] | None = None, note: Any = print) -> int:  # fmt: skip
    """Rank 0: the study across every node's replica (this node's started here, the others' by their agents)."""
    for sname, n in study.num_nodes.items():
        if n > len(ips):
            note(f"server {sname}: num_nodes = {n} but this cluster has {len(ips)} node(s); using {len(ips)}")
    note(f"head of {len(ips)} node(s): {', '.join(ips)}")
    with Head(study, ips[1:], agent_port, note) as head:
        return st.run_study(study, overrides, only=only, note=note, before_server=head.before_server)


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


class NodeAgent:
    """A worker node: serves the server the head asks for (``POST /serve``), reports (``GET /state``), ends on
    ``POST /done`` or when the head has been silent for ``silent_s``."""

    def __init__(self, study: Study, host: str, port: int, note: Any = print, silent_s: float = HEAD_SILENT_S) -> None:
        self.study = study
        self.host = host
        self.port = port
        self.note = note
        self.silent_s = silent_s
        self.group: ServerGroup | None = None
        self.state: dict[str, Any] = {"server": None, "state": "idle", "error": None}
        self.last_heard = time.monotonic()
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.serve_requests: queue.Queue[str | None] = queue.Queue()
        """Servers the head asked for (``POST /serve``), started by ``run`` on the main thread."""

    def _serve(self, sname: str | None) -> None:
        with self._lock:
            if self.group is not None and self.state["server"] == sname and self.state["state"] != "failed":
                return
            if self.group is not None:
                self.note(f"stopping {self.state['server']}")
                self.group.stop()
                self.group = None
            state = self.state = {"server": sname, "state": "idle" if sname is None else "starting", "error": None}
            if sname is None:
                return
            spec = replace(self.study.servers[sname], host=self.host, port=node_port(self.study.servers[sname]))
            group = self.group = ServerGroup(spec, self.study.out / "servers", progress=self.note)
        try:
            group.start()
            state["state"] = "ready"
        except ScorecheckError as e:  # this start's own state: a later /serve may have replaced it
            state.update(state="failed", error=str(e))
            self.note(f"server {sname} failed to start: {e}")

    def handler(self) -> type[BaseHTTPRequestHandler]:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if self.headers.get("X-Scorecheck-Token", "") != _token():
                    self._answer(403, {"error": "wrong token"})
                    return False
                agent.last_heard = time.monotonic()
                return True

            def do_GET(self) -> None:  # noqa: N802
                if self._authorised():
                    self._answer(200, agent.state)

            def do_POST(self) -> None:  # noqa: N802
                if not self._authorised():
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.path == "/done":
                    agent.done.set()
                    self._answer(200, {"done": True})
                elif self.path == "/serve":
                    sname = body.get("server")
                    if sname is not None and sname not in agent.study.servers:
                        self._answer(404, {"error": f"no server {sname!r}"})
                        return
                    agent.serve_requests.put(sname)  # started by the main thread (run): see there
                    self._answer(202, {"server": sname})
                else:
                    self._answer(404, {"error": "unknown path"})

        return Handler

    def run(self) -> int:
        """Serve until done; always 0 (a failing node would make SkyPilot cancel the head's study)."""
        signal.signal(signal.SIGTERM, _raise_interrupt)  # stopped: its server stops too
        httpd = ThreadingHTTPServer((self.host, self.port), self.handler())
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        self.note(f"node agent on {self.host}:{self.port}, waiting for the head")
        reported = False
        try:
            while not self.done.is_set():
                try:
                    sname = self.serve_requests.get(timeout=1.0)
                except queue.Empty:
                    pass
                else:
                    # Servers start on this thread, which outlives them: a child's parent-death signal (procs.py)
                    # fires when the thread that started it ends, so a short-lived request thread would kill it.
                    self._serve(sname)
                    continue
                if time.monotonic() - self.last_heard > self.silent_s:
                    self.note(f"no word from the head for {self.silent_s:.0f}s: stopping")
                    break
                g = self.group
                if g is not None and self.state["state"] == "ready":
                    try:
                        g.check_alive()
                        reported = False
                    except ScorecheckError as e:
                        self.state.update(state="lost", error=str(e))
                        if not reported:
                            self.note(f"server {self.state['server']} died: {e}")
                            reported = True
        except KeyboardInterrupt:
            pass
        finally:
            httpd.shutdown()
            if self.group is not None:
                self.group.stop()
        self.note("node agent: done")
        return 0
