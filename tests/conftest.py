"""Shared fixtures: the data dir, a real embedded llama.cpp server, the scripted stub server, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _shared() -> Path:
    """../shared beside the checkout, or the parent of SCORECHECK_DATA_DIR when it is laid out like it."""
    if os.environ.get("SCORECHECK_DATA_DIR"):
        parent = Path(os.environ["SCORECHECK_DATA_DIR"]).resolve().parent
        if (parent / "protocol").is_dir():
            return parent
    return ROOT.parent / "shared"


SHARED = _shared()

if not os.environ.get("SCORECHECK_DATA_DIR") and (SHARED / "datasets").is_dir():
    os.environ["SCORECHECK_DATA_DIR"] = str(SHARED / "datasets")
# Tests never touch the user's cache.
os.environ.setdefault(
    "SCORECHECK_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"scorecheck-test-cache-{os.getpid()}")
)

DATA_DIR = Path(os.environ["SCORECHECK_DATA_DIR"]) if os.environ.get("SCORECHECK_DATA_DIR") else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if DATA_DIR is None or not DATA_DIR.is_dir():
        pytest.fail("SCORECHECK_DATA_DIR must point at the benchmark data (../shared/datasets)")
    return DATA_DIR


@dataclass
class CLIResult:
    code: int
    out: str
    err: str
    seconds: float


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None) -> CLIResult:
    e = dict(os.environ)
    e.update(env or {})
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "scorecheck", *args], capture_output=True, text=True, env=e,
                       timeout=timeout, cwd=cwd)  # fmt: skip
    return CLIResult(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


@pytest.fixture
def cli():
    return run_cli


class Stub:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def control(self, script: list[str] | None = None, default: str = "ok", answer: str = "Answer: A",
                models_script: list[str] | None = None, max_model_len: int | None = None,
                report_ctx: bool = False) -> None:  # fmt: skip
        body = json.dumps({"script": script or [], "default": default, "answer": answer,
                           "models_script": models_script or [], "max_model_len": max_model_len,
                           "report_ctx": report_ctx}).encode()  # fmt: skip
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{self.port}/control", data=body), timeout=5)

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=5) as r:
            return json.loads(r.read())


def start_stub(model: str = "stub-model") -> Stub:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "stub_server.py"), "--model", model],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PORT "), line
    return Stub(proc, int(line.split()[1]))


@pytest.fixture
def stub():
    s = start_stub()
    yield s
    s.proc.terminate()
    s.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def embedded(tmp_path_factory):
    """One real llama.cpp server (the embedded SmolLM2) for the whole session."""
    from scorecheck.embedded import MODEL_ALIAS, EmbeddedServer

    log = tmp_path_factory.mktemp("embedded") / "server.log"
    server = EmbeddedServer(log, parallel=4, ctx_per_slot=2048).start()
    server.model = MODEL_ALIAS  # type: ignore[attr-defined]
    yield server
    server.stop()
