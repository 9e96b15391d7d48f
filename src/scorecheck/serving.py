"""Model servers scorecheck starts and stops itself: vLLM (native ``vllm serve`` or the ``vllm/vllm-openai`` image)
and the embedded llama.cpp model, behind one interface.

A :class:`ManagedServer` runs the engine as a child process in its own session, writes the engine's output to a log
file, waits until ``/v1/models`` lists the model (printing a progress line), fails fast with the last log lines when
the process dies before or after it is ready, and stops the whole process group on exit. Secrets (``HF_TOKEN``) go
into the child's environment only: never its command line (visible in ``ps``), the log, or ``server.json``.

The vLLM command line follows the documented CLI of the pinned version (``vllm serve MODEL --tensor-parallel-size N
--host H --port P``; the image's entrypoint is the OpenAI API server, so it takes ``--model MODEL``). The seed used
the ``vllm/vllm-openai:v0.6.1.post2`` image.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scorecheck.errors import EndpointError, UsageError
from scorecheck.procs import preexec

DEFAULT_VLLM_VERSION = "0.6.1.post2"
"""The vLLM version of the seed's run (the ``vllm/vllm-openai:v0.6.1.post2`` image)."""
VLLM_IMAGE = "vllm/vllm-openai"
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "VLLM_API_KEY")
"""Passed to the server's environment (gated models), never to its command line."""
ENGINES = ("vllm", "embedded")


@dataclass
class ServerSpec:
    """What to serve and how; a study's ``[[server]]`` table, or ``scorecheck serve``'s options."""

    engine: str = "vllm"
    model: str | None = None
    """The Hugging Face model (vLLM) or, for the embedded engine, None (SmolLM2) or a GGUF path."""
    name: str | None = None
    tp: int = 1
    port: int | None = None
    """None: a free port (the embedded engine), 8000 for vLLM."""
    host: str = "127.0.0.1"
    docker: str | None = None
    """``IMAGE:TAG`` to run vLLM in; ``True``-ish shorthand ``"default"`` means the pinned version's image."""
    version: str | None = None
    """The pinned engine version (vLLM): checked against the installed one, used for the default image tag."""
    args: list[str] = field(default_factory=list)
    """Extra engine arguments, appended as given."""
    replicas: int = 1
    """Servers of this spec on one box, each on its own GPU group of ``tp`` GPUs and its own port."""
    ready_timeout: float = 1800.0
    served_model_name: str | None = None
    parallel: int = 4
    """Embedded engine: parallel slots."""
    ctx: int = 4096
    """Embedded engine: context tokens per slot."""

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise UsageError(f"unknown engine {self.engine!r}; known: {', '.join(ENGINES)}")
        if self.engine == "vllm" and not self.model:
            raise UsageError("a vLLM server needs a model, e.g. meta-llama/Meta-Llama-3.1-70B-Instruct")
        if self.tp < 1 or self.replicas < 1:
            raise UsageError("tp and replicas must be at least 1")

    @property
    def model_name(self) -> str:
        """The name the endpoint serves the model under (what requests carry)."""
        if self.engine == "embedded":
            from scorecheck.embedded import MODEL_ALIAS

            return MODEL_ALIAS
        assert self.model is not None
        return self.served_model_name or self.model

    def image(self) -> str | None:
        if self.docker in (None, ""):
            return None
        if self.docker == "default":
            return f"{VLLM_IMAGE}:v{self.version or DEFAULT_VLLM_VERSION}"
        return self.docker


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def gpu_info() -> list[dict[str, Any]]:
    """The NVIDIA GPUs here (index, name, memory in MiB), from nvidia-smi; empty when there are none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        p = subprocess.run([exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True, timeout=20)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in p.stdout.splitlines():
        parts = [x.strip() for x in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            gpus.append({"index": int(parts[0]), "name": parts[1], "memory_mib": int(float(parts[2]))})
    return gpus


def vllm_command(spec: ServerSpec, port: int, gpus: list[int] | None = None) -> tuple[list[str], dict[str, str]]:
    """The command line that starts vLLM for ``spec`` on ``port``, and the environment additions it needs
    (secrets excluded: :func:`child_env` adds them)."""
    assert spec.model is not None
    engine_args = ["--tensor-parallel-size", str(spec.tp)]
    if spec.served_model_name:
        engine_args += ["--served-model-name", spec.served_model_name]
    engine_args += list(spec.args)
    image = spec.image()
    env: dict[str, str] = {}
    if image:
        device = f'"device={",".join(map(str, gpus))}"' if gpus is not None else "all"
        # The secrets are named, not valued: docker copies them from its own environment.
        cmd = ["docker", "run", "--rm", "--init", "--runtime", "nvidia", "--gpus", device, "--ipc=host",
               "-p", f"{spec.host}:{port}:8000", "-v", f"{Path.home() / '.cache' / 'huggingface'}:/root/.cache/huggingface"]  # fmt: skip
        for k in SECRET_ENV:
            if os.environ.get(k):
                cmd += ["--env", k]
        cmd += [image, "--model", spec.model, "--port", "8000", *engine_args]
        return cmd, env
    exe = shutil.which("vllm") or "vllm"
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    return [exe, "serve", spec.model, "--host", spec.host, "--port", str(port), *engine_args], env


def embedded_command(spec: ServerSpec, port: int) -> list[str]:
    cmd = [sys.executable, "-m", "scorecheck.embedded", "--port", str(port), "--host", spec.host,
           "--parallel", str(spec.parallel), "--ctx", str(spec.ctx)]  # fmt: skip
    if spec.model:
        cmd += ["--model-path", spec.model]
    return cmd


def installed_vllm_version() -> str | None:
    """The version of the ``vllm`` on PATH (from its own interpreter), or None."""
    exe = shutil.which("vllm")
    if exe is None:
        return None
    try:
        first = Path(exe).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        first = ""
    py = first[2:].strip().split()[0] if first.startswith("#!") else sys.executable
    try:
        p = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version('vllm'))"],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() or None


def check_vllm_here(spec: ServerSpec) -> dict[str, Any]:
    """Fail in seconds, saying why, when this machine cannot run ``spec``: no vLLM (or docker), no or too few GPUs."""
    image = spec.image()
    if image:
        if shutil.which("docker") is None:
            raise EndpointError(f"cannot serve with --docker {image}: docker is not installed on this machine")
    elif shutil.which("vllm") is None:
        raise EndpointError(
            f"vLLM is not installed on this machine (no `vllm` on PATH): pip install 'vllm=={spec.version or DEFAULT_VLLM_VERSION}'"
            f", or use --docker {VLLM_IMAGE}:v{spec.version or DEFAULT_VLLM_VERSION}"
        )
    gpus = gpu_info()
    if not gpus:
        raise EndpointError("vLLM needs NVIDIA GPUs and this machine has none (nvidia-smi finds no GPU)")
    need = spec.tp * spec.replicas
    if need > len(gpus):
        raise EndpointError(f"tp {spec.tp} x replicas {spec.replicas} needs {need} GPUs; this machine has {len(gpus)}")
    version = None if image else installed_vllm_version()
    return {"gpus": gpus, "version": version}


def child_env(extra: dict[str, str] | None = None, engine: str = "vllm") -> dict[str, str]:
    """The server's environment: ours without API keys (the server needs none), with HF tokens for vLLM."""
    env = {k: v for k, v in os.environ.items() if not re.search(r"KEY|TOKEN|SECRET|PASSW", k, re.IGNORECASE)}
    if engine == "vllm":
        env.update({k: os.environ[k] for k in SECRET_ENV if os.environ.get(k)})
    env.update(extra or {})
    return env


def models_listed(base_url: str, timeout: float = 3.0) -> list[str] | None:
    """The ids and aliases ``/v1/models`` lists; None when it does not answer."""
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=timeout) as r:
            data = json.loads(r.read())
    except (OSError, ValueError):
        return None
    names: list[str] = []
    for m in data.get("data") or []:
        if isinstance(m, dict):
            names += [str(m.get("id"))] + [str(a) for a in (m.get("aliases") or [])]
    return names


class ManagedServer:
    """One engine process; a context manager. ``start()`` returns once the model is listed."""

    def __init__(self, spec: ServerSpec, log_path: Path, port: int | None = None, gpus: list[int] | None = None,
                 progress: Callable[[str], None] | None = None, check_here: bool = True) -> None:  # fmt: skip
        self.spec = spec
        self.log_path = Path(log_path)
        if port is None:
            port = spec.port or (free_port(spec.host) if spec.engine == "embedded" else 8000)
        self.port = port
        self.gpus = gpus
        self.progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.check_here = check_here
        self.proc: subprocess.Popen[bytes] | None = None
        self.cmd: list[str] = []
        self.engine_version: str | None = None
        self.started: float | None = None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.spec.host in ("0.0.0.0", "") else self.spec.host
        return f"http://{host}:{self.port}/v1"

    def _command(self) -> tuple[list[str], dict[str, str]]:
        if self.spec.engine == "embedded":
            from scorecheck import embedded

            if not self.spec.model:
                embedded.gguf_path()  # a one-line error when the model package is missing
            try:
                from importlib.metadata import version

                self.engine_version = version("xllamacpp")
            except Exception:
                self.engine_version = None
            return embedded_command(self.spec, self.port), {}
        if self.check_here:
            self.engine_version = check_vllm_here(self.spec)["version"]
        if self.spec.image():
            self.engine_version = self.spec.image().rsplit(":", 1)[-1].lstrip("v")  # type: ignore[union-attr]
        return vllm_command(self.spec, self.port, self.gpus)

    def start(self) -> ManagedServer:
        if port_in_use(self.spec.host if self.spec.host != "0.0.0.0" else "127.0.0.1", self.port):
            raise EndpointError(f"port {self.port} on {self.spec.host} is already in use; choose another --port "
                                "(or point --base-url at the server already there)")  # fmt: skip
        self.cmd, extra_env = self._command()
        pinned = self.spec.version
        if self.spec.engine == "vllm" and pinned and self.engine_version and self.engine_version != pinned:
            self.progress(f"warning: the study pins vLLM {pinned}, this machine has {self.engine_version}")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n# scorecheck {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(self.cmd)}\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=child_env(extra_env, self.spec.engine), start_new_session=True,
                                         preexec_fn=preexec(signal.SIGTERM))  # dies with scorecheck  # fmt: skip
        except OSError as e:
            raise EndpointError(f"cannot start {self.cmd[0]}: {e}") from None
        finally:
            log.close()
        self.started = time.time()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, n: int = 8) -> str:
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "(no log)"
        return " | ".join(lines[-n:]) or "(empty log)"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raise, with the last log lines, when the server has died."""
        if self.proc is not None and self.proc.poll() is not None:
            raise EndpointError(f"{self.spec.engine} server ({self.spec.model_name}) died with exit code "
                                f"{self.proc.returncode}; log {self.log_path}: {self.log_tail()}")  # fmt: skip

    def _wait_ready(self) -> None:
        assert self.proc is not None
        t0 = time.monotonic()
        deadline = t0 + self.spec.ready_timeout
        next_note = t0 + 10
        want = self.spec.model_name
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise EndpointError(f"{self.spec.engine} server exited with code {code} before it was ready; "
                                    f"log {self.log_path}: {self.log_tail()}")  # fmt: skip
            names = models_listed(self.base_url)
            if names is not None and want in names:
                self.progress(f"{self.spec.engine} server ready on {self.base_url} ({want}) after "
                              f"{time.monotonic() - t0:.0f}s")  # fmt: skip
                self._query_version()
                return
            if time.monotonic() >= next_note:
                state = "loading" if names is None else f"up, model not listed yet ({', '.join(names[:3])})"
                self.progress(f"waiting for {want} on {self.base_url}: {state}, {time.monotonic() - t0:.0f}s "
                              f"of {self.spec.ready_timeout:.0f}s; log {self.log_path}")  # fmt: skip
                next_note = time.monotonic() + 30
            time.sleep(0.25)
        raise EndpointError(f"{self.spec.engine} server not ready after {self.spec.ready_timeout:.0f}s; "
                            f"log {self.log_path}: {self.log_tail()}")  # fmt: skip

    def _query_version(self) -> None:
        if self.spec.engine != "vllm":
            return
        root = self.base_url.rsplit("/v1", 1)[0]
        try:  # vLLM's OpenAI server answers GET /version
            with urllib.request.urlopen(root + "/version", timeout=3) as r:
                self.engine_version = json.loads(r.read()).get("version") or self.engine_version
        except (OSError, ValueError):
            pass

    def identity(self) -> dict[str, Any]:
        """What each run records about the server: engine, version, arguments (no secrets: none are in argv)."""
        spec = {k: v for k, v in asdict(self.spec).items() if k not in ("ready_timeout",)}
        return {"engine": self.spec.engine, "engine_version": self.engine_version, "pinned_version": self.spec.version,
                "command": self.cmd, "base_url": self.base_url, "model": self.spec.model_name, "gpus": self.gpus,
                "log": str(self.log_path), "started": self.started, "pid": self.proc.pid if self.proc else None,
                "spec": spec}  # fmt: skip

    def stop(self, grace: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace)
        except (subprocess.TimeoutExpired, ProcessLookupError, PermissionError):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(timeout=10)

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerGroup:
    """``spec.replicas`` servers of one spec, each on its own GPU group and port; started and stopped together."""

    def __init__(self, spec: ServerSpec, log_dir: Path, progress: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self.log_dir = Path(log_dir)
        self.servers: list[ManagedServer] = []
        base = spec.port
        for i in range(spec.replicas):
            port = (base + i) if base else None
            gpus = list(range(i * spec.tp, (i + 1) * spec.tp)) if spec.engine == "vllm" and spec.replicas > 1 else None
            name = spec.name or spec.engine
            log = self.log_dir / (f"{name}.log" if spec.replicas == 1 else f"{name}-{i}.log")
            self.servers.append(ManagedServer(spec, log, port=port, gpus=gpus, progress=progress))

    @property
    def base_urls(self) -> list[str]:
        return [s.base_url for s in self.servers]

    def start(self) -> ServerGroup:
        if self.spec.engine == "vllm" and self.servers and self.servers[0].check_here:
            info = check_vllm_here(self.spec)
            for s in self.servers:
                s.check_here = False
                s.engine_version = info["version"]
        try:
            for s in self.servers:
                s.start()
        except BaseException:
            self.stop()
            raise
        return self

    def check_alive(self) -> None:
        for s in self.servers:
            s.check_alive()

    def identity(self) -> list[dict[str, Any]]:
        return [s.identity() for s in self.servers]

    def stop(self) -> None:
        for s in self.servers:
            s.stop()

    def __enter__(self) -> ServerGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_identity(path: Path, identity: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(identity, indent=2) + "\n")
