"""Errors a user makes or meets before a run starts: each is one line naming the problem, a non-zero exit, within
seconds. Every case runs the real CLI (``python -m scorecheck run``) in a subprocess."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from conftest import run_cli

ENV = {"COLUMNS": "400"}  # rich wraps at the terminal width; the error itself must be one line


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_line_error(r) -> str:
    assert r.code == 2, (r.code, r.err)
    assert r.seconds < 10, r.seconds
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None, base_url: str | None = None):
    base = ["run", "--base-url", base_url or f"http://127.0.0.1:{closed_port()}/v1", "--model", "m", "--evals", "mmlu",
            "--limit", "2", "--out", str(tmp_path / "run"), "-q"]  # fmt: skip
    return run_cli(*base, *args, env={**ENV, **(env or {})}, timeout=60)


def test_unknown_eval(tmp_path):
    line = one_line_error(run(tmp_path, "--evals", "mmlu,nosuch_eval"))
    assert "unknown eval 'nosuch_eval'" in line and "gsm8k" in line  # names it and lists the known ones


def test_unknown_protocol(tmp_path):
    line = one_line_error(run(tmp_path, "--protocol", "glaive-2099"))
    assert "unknown protocol 'glaive-2099'" in line and "glaive-2024" in line


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('evals = ["mmlu"\nlimit = 2\n', "invalid TOML"),
        ("concurency = 4\n", "concurency: unknown key"),
        ('concurrency = "many"\n', "concurrency"),
    ],
    ids=["syntax", "unknown-key", "bad-value"],
)
def test_bad_config_file(tmp_path, toml, expected):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    line = one_line_error(run(tmp_path, "--config", str(cfg)))
    assert expected in line and str(cfg) in line


def test_missing_config_file(tmp_path):
    line = one_line_error(run(tmp_path, "--config", str(tmp_path / "nope.toml")))
    assert "nope.toml" in line and "not found" in line


def test_unreachable_endpoint(tmp_path):
    port = closed_port()
    line = one_line_error(run(tmp_path, base_url=f"http://127.0.0.1:{port}/v1"))
    assert "unreachable" in line and f"127.0.0.1:{port}" in line


@pytest.mark.parametrize("with_endpoint", [True, False], ids=["endpoint", "embedded"])
def test_missing_data(tmp_path, with_endpoint):
    """No data dir copy, no cache copy, and a mirror that refuses connections: no download, one line.
    Without --base-url the data is checked before the embedded model would start."""
    empty = tmp_path / "empty"
    empty.mkdir()
    port = closed_port()
    env = {"SCORECHECK_DATA_DIR": str(empty), "SCORECHECK_CACHE_DIR": str(tmp_path / "cache"),
           "SCORECHECK_DATA_MIRROR": f"http://127.0.0.1:{port}"}  # fmt: skip
    if with_endpoint:
        r = run(tmp_path, env=env)
    else:
        r = run_cli("run", "--evals", "mmlu", "--limit", "2", "--out", str(tmp_path / "run"), "-q",
                    env={**ENV, **env}, timeout=120)  # fmt: skip
    line = one_line_error(r)
    assert "mmlu" in line and f"127.0.0.1:{port}" in line and "SCORECHECK_DATA_DIR" in line
    # the directories searched, in order, and the fix
    assert f"SCORECHECK_DATA_DIR={empty}, then the cache {tmp_path / 'cache' / 'data'}" in line
    assert "set SCORECHECK_DATA_DIR to a copy laid out like ../shared/datasets" in line
    assert not (tmp_path / "cache" / "data" / "mmlu").exists()


def test_model_required_with_base_url(tmp_path):
    r = run_cli("run", "--base-url", "http://127.0.0.1:1/v1", "--evals", "mmlu", "--out", str(tmp_path / "run"),
                env=ENV, timeout=60)  # fmt: skip
    assert "--model" in one_line_error(r)


def test_extra_body_not_json(tmp_path):
    line = one_line_error(run(tmp_path, "--extra-body", "{skip_special_tokens: false}"))
    assert "--extra-body" in line and "JSON" in line


def test_bad_value_names_the_flag_not_the_field_path(tmp_path):
    line = one_line_error(run(tmp_path, base_url="localhost:8000/v1"))
    assert line.startswith("error: --base-url = 'localhost:8000/v1': ") and "http://" in line
    assert "endpoints.0" not in line
    line = one_line_error(run(tmp_path, "--epochs", "0"))
    assert "--epochs = 0" in line and "greater than or equal to 1" in line


def test_bad_value_in_the_config_file_names_the_toml_key(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[[endpoint]]\nbase_url = "localhost:8000/v1"\n[[endpoint]]\nbase_url = "http://x/v1"\nkey = "v"\n')
    r = run_cli("run", "--config", str(cfg), "--model", "m", "--out", str(tmp_path / "run"), env=ENV, timeout=60)
    line = one_line_error(r)
    assert f"{cfg}: endpoints[0].base_url = 'localhost:8000/v1'" in line
    assert f"{cfg}: endpoints[1].key: unknown key" in line


def test_unknown_config_key_suggests_the_right_one(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("max_token = 10\n")
    assert "max_token: unknown key; did you mean 'max_tokens'?" in one_line_error(run(tmp_path, "--config", str(cfg)))


def test_system_prompt_typo_is_refused_with_the_names(tmp_path):
    line = one_line_error(run(tmp_path, "--system-prompt", "reflectoin"))
    assert "--system-prompt 'reflectoin'" in line and "did you mean 'reflection'" in line
    assert "reflection, default" in line and "@FILE" in line and "text:TEXT" in line


def test_header_env_of_an_unset_variable(tmp_path):
    line = one_line_error(run(tmp_path, "--header-env", "X-Token=SCORECHECK_TEST_UNSET_VAR"))
    assert "--header-env X-Token=SCORECHECK_TEST_UNSET_VAR" in line and "not set" in line


def test_data_verify_exits_1_when_files_are_missing(tmp_path):
    env = {**ENV, "SCORECHECK_DATA_DIR": str(tmp_path), "SCORECHECK_CACHE_DIR": str(tmp_path / "c")}
    r = run_cli("data", "verify", env=env, timeout=60)
    assert r.code == 1, r.err
    errors = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(errors) == 1 and "missing: mmlu" in errors[0] and f"SCORECHECK_DATA_DIR={tmp_path}" in errors[0]
    r = run_cli("data", "locate", "gsm8k", env=env, timeout=60)
    assert r.code == 1 and "gsm8k: not found" in r.out


def test_data_locate_finds_the_data_dir_copy(data_dir):
    r = run_cli("data", "locate", "gsm8k", "ifeval_gpt4_responses", env=ENV, timeout=60)
    assert r.code == 0, r.err
    assert f"gsm8k: {data_dir / 'gsm8k' / 'test.jsonl'}" in r.out


def _cmdline(proc_dir: Path) -> bytes:
    try:
        return (proc_dir / "cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def test_a_long_run_on_the_embedded_model_says_its_estimate_first(tmp_path):
    """A bare run (no --base-url, no --limit): the estimate comes before the model starts. Then Ctrl-C (SIGINT), once
    the embedded server runs (a signal inside its Popen would orphan it: it has its own session); the run stops it."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    p = subprocess.Popen([sys.executable, "-m", "scorecheck", "run", "--evals", "gsm8k", "--out", str(tmp_path / "r"),
                          "-q"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                         env={**os.environ, **ENV}, start_new_session=True)  # fmt: skip
    t0 = time.monotonic()
    log = tmp_path / "r" / "embedded.log"
    try:
        first = p.stderr.readline()
        seconds = time.monotonic() - t0
        starting = p.stderr.readline()
        while time.monotonic() - t0 < 120 and (not log.exists() or log.read_text().count("\n") < 4):
            time.sleep(0.2)  # the server writes its own lines after scorecheck's header
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
    assert seconds < 20, seconds
    assert first.startswith("estimate: 1,319 requests on the embedded CPU model"), first
    assert "up to 6000 tokens each" in first and "hours" in first and "--limit" in first
    assert p.returncode == 130
    port = re.search(r"127\.0\.0\.1:(\d+)", starting).group(1)
    left = [c for c in map(_cmdline, Path("/proc").glob("[0-9]*")) if b"scorecheck.embedded" in c and
            f"\0{port}\0".encode() in c]  # fmt: skip
    assert not left, left


def test_serve_vllm_takes_vllms_flag_names(tmp_path):
    """-tp/--tensor-parallel-size and --max-model-len reach vLLM's command line (a fake vllm prints it and dies);
    --tp still works, with a warning; vLLM's --api-key after -- is refused (it would be in ps)."""
    import stat

    for name, body in (("nvidia-smi", 'echo "0, NVIDIA H100, 81559"\necho "1, NVIDIA H100, 81559"\n'),
                       ("vllm", 'echo "argv: $*"\nexit 1\n')):  # fmt: skip
        (tmp_path / name).write_text("#!/bin/sh\n" + body)
        (tmp_path / name).chmod(0o755 | stat.S_IEXEC)
    env = {**ENV, "PATH": f"{tmp_path}:/usr/bin:/bin"}
    out = str(tmp_path / "serve")
    r = run_cli("serve", "vllm", "m/x", "-tp", "2", "--max-model-len", "8192", "--out", out, env=env, timeout=60)
    assert (
        r.code == 2
        and "argv: serve m/x --host 127.0.0.1 --port 5050 --tensor-parallel-size 2 --max-model-len 8192" in r.err
    )
    r = run_cli("serve", "vllm", "m/x", "--tp", "3", "--out", out, env=env, timeout=60)
    assert "--tp is deprecated" in r.err and "needs 3 GPUs; this machine has 2" in r.err
    line = one_line_error(run_cli("serve", "vllm", "m/x", "--", "--api-key", "sk-x", env=env, timeout=60))
    assert "VLLM_API_KEY" in line and "sk-x" not in line
