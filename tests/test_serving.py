"""Serving: vLLM's command line and preflight (no GPU here), and the server lifecycle through the embedded engine."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scorecheck.errors import EndpointError
from scorecheck.serving import ManagedServer, ServerSpec, models_listed, vllm_command

SECRET = "hf_secret_value_123"


def _fake_bin(dir: Path, name: str, body: str) -> None:
    p = dir / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


def test_vllm_command_follows_the_documented_cli(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    spec = ServerSpec(model="glaiveai/Reflection-Llama-3.1-70B", tp=4, port=5050, args=["--max-model-len", "8192"])
    cmd, env = vllm_command(spec, 5050)
    assert cmd[1:] == ["serve", "glaiveai/Reflection-Llama-3.1-70B", "--host", "127.0.0.1", "--port", "5050",
                       "--tensor-parallel-size", "4", "--max-model-len", "8192"]  # fmt: skip
    docker = ServerSpec(model="m/x", tp=4, docker="default", version="0.6.1.post2")
    cmd, _ = vllm_command(docker, 5050, gpus=[0, 1, 2, 3])
    assert cmd[:2] == ["docker", "run"] and "vllm/vllm-openai:v0.6.1.post2" in cmd
    assert cmd[cmd.index("vllm/vllm-openai:v0.6.1.post2") + 1 :][:2] == ["--model", "m/x"]
    assert ["--env", "HF_TOKEN"] == cmd[cmd.index("--env") : cmd.index("--env") + 2]  # the name, not the value
    assert not any(SECRET in a for a in cmd)


def test_serve_vllm_without_vllm_or_gpus_fails_in_seconds(cli, tmp_path):
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    r = cli("serve", "vllm", "m/x", "--tp", "4", env=env, timeout=30)
    assert r.code != 0 and "vLLM is not installed" in r.err and r.seconds < 15
    _fake_bin(tmp_path, "vllm", "exit 0\n")
    r = cli("serve", "vllm", "m/x", "--tp", "4", env=env, timeout=30)
    assert r.code != 0 and "has none" in r.err and "GPU" in r.err and r.seconds < 15


def test_vllm_crash_before_ready_shows_the_log_and_keeps_secrets_off_argv(tmp_path, monkeypatch):
    """A fake vllm and nvidia-smi: the engine dies (out of memory); the error carries its last log lines; the
    token reached its environment, not its argv or the log."""
    _fake_bin(tmp_path, "nvidia-smi", 'echo "0, NVIDIA H100, 81559"\necho "1, NVIDIA H100, 81559"\n')
    _fake_bin(tmp_path, "vllm", f'echo "argv: $*"\n[ "$HF_TOKEN" = "{SECRET}" ] && echo token-in-env\n'
                                'echo "torch.OutOfMemoryError: CUDA out of memory"\nexit 1\n')  # fmt: skip
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    spec = ServerSpec(model="m/x", tp=2, port=_free(), ready_timeout=20)
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="out of memory") as e:
        ManagedServer(spec, tmp_path / "vllm.log", progress=lambda m: None).start()
    assert time.monotonic() - t0 < 10 and "exited with code 1" in str(e.value)
    log = (tmp_path / "vllm.log").read_text()
    assert "token-in-env" in log and SECRET not in log
    with pytest.raises(EndpointError, match="needs 4 GPUs; this machine has 2"):
        ManagedServer(ServerSpec(model="m/x", tp=4), tmp_path / "v.log").start()


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_embedded_lifecycle_ready_log_crash(tmp_path):
    notes: list[str] = []
    srv = ManagedServer(ServerSpec(engine="embedded", parallel=1, ctx=512), tmp_path / "embedded.log",
                        progress=notes.append)  # fmt: skip
    with srv:
        assert srv.alive() and "smollm2-135m-instruct" in (models_listed(srv.base_url) or [])
        assert any("ready" in n for n in notes)
        ident = srv.identity()
        assert ident["engine"] == "embedded" and ident["engine_version"] and "scorecheck.embedded" in ident["command"]
        # a port already in use
        with pytest.raises(EndpointError, match="already in use"):
            ManagedServer(ServerSpec(engine="embedded", port=srv.port), tmp_path / "x.log").start()
        # a crash mid-run: the server is killed; check_alive says so with the log's last lines
        os.killpg(srv.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        srv.proc.wait(10)  # type: ignore[union-attr]
        with pytest.raises(EndpointError, match="died with exit code -9"):
            srv.check_alive()
    assert (tmp_path / "embedded.log").read_text().strip()


def test_embedded_missing_model_file_fails_fast(tmp_path):
    spec = ServerSpec(engine="embedded", model=str(tmp_path / "nope.gguf"), ready_timeout=60)
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="model file not found"):
        ManagedServer(spec, tmp_path / "embedded.log", progress=lambda m: None).start()
    assert time.monotonic() - t0 < 30


@pytest.mark.slow
@pytest.mark.parametrize("how", [["serve", "embedded"], ["serve", "--embedded"]])
def test_cli_serve_embedded_stops_cleanly(tmp_path, how):
    port = _free()
    extra = ["--out", str(tmp_path)] if how[1] == "embedded" else []
    proc = subprocess.Popen([sys.executable, "-m", "scorecheck", *how, "--port", str(port), *extra], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"127.0.0.1:{port}/v1" in line, line + (proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        ident = json.loads(((tmp_path / "runs/serve" if not extra else tmp_path) / "server.json").read_text())
        assert ident[0]["engine"] == "embedded"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the server outlived the command"
