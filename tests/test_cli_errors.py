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
    assert not (tmp_path / "cache" / "data" / "mmlu").exists()


def test_model_required_with_base_url(tmp_path):
    r = run_cli("run", "--base-url", "http://127.0.0.1:1/v1", "--evals", "mmlu", "--out", str(tmp_path / "run"),
                env=ENV, timeout=60)  # fmt: skip
    assert "--model" in one_line_error(r)


def test_extra_body_not_json(tmp_path):
    line = one_line_error(run(tmp_path, "--extra-body", "{skip_special_tokens: false}"))
    assert "--extra-body" in line and "JSON" in line
