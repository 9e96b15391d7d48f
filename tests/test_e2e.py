"""End to end through the CLI against the real embedded llama.cpp server (SmolLM2-135M on CPU)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from scorecheck.embedded import MODEL_ALIAS, EmbeddedServer

pytestmark = pytest.mark.slow


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_run_starts_embedded_model_and_writes_outputs(cli, tmp_path, data_dir):
    out = tmp_path / "run"
    r = cli("run", "--evals", "mmlu,gpqa,gsm8k", "--limit", "2", "--max-tokens", "24", "--out", str(out), "-q")
    assert r.code == 0, r.err
    res = _results(out)
    assert set(res["evals"]) == {"mmlu", "gpqa_main", "gsm8k"}
    for name, ev in res["evals"].items():
        assert ev["n"] == 2, name
        assert 0.0 <= ev["score"] <= 1.0
        assert ev["ci95"][0] <= ev["score"] <= ev["ci95"][1]
    # what the run was
    assert res["protocol"]["name"] == "glaive-2024"
    assert res["model"] == MODEL_ALIAS
    assert res["model_identity"]["embedded"]["model_sha256"]
    assert res["config"]["sampling"] == {"temperature": 0.0, "max_tokens": 24, "skip_special_tokens": False}
    assert set(res["data_sha256"]) == {"mmlu", "gpqa_main", "gsm8k"}
    assert res["tokens"]["completion"] > 0
    assert "macro" in res["evals"]["mmlu"]
    samples = _samples(out)
    assert len(samples) == 6
    assert all(s["finish_reason"] in ("stop", "length") for s in samples)
    timings = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()]
    assert len(timings) == 6 and all(t["latency"] > 0 for t in timings)
    gsm = [s for s in samples if s["eval"] == "gsm8k"]
    assert all(s["grader"] in (None, "unparsed") or s["grader"].startswith("symbolic:math-verify") for s in gsm)
    summary = (out / "summary.md").read_text()
    assert "| mmlu |" in summary and "| gsm8k |" in summary
    assert "embedded server listening" in (out / "embedded.log").read_text()
    # the server was stopped afterwards
    port = int(res["endpoints"][0].rsplit(":", 1)[1].split("/")[0])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_reasoning_format_and_system_prompt_against_running_server(cli, embedded, tmp_path):
    out = tmp_path / "run"
    r = cli("run", "--base-url", embedded.base_url, "--model", MODEL_ALIAS, "--evals", "mmlu", "--limit", "3",
            "--max-tokens", "24", "--system-prompt", "reflection", "--reasoning", "reflection", "--out", str(out), "-q")  # fmt: skip
    assert r.code == 0, r.err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["system_prompt"]["name"] == "reflection"
    assert len(cfg["system_prompt"]["text"]) == 940
    samples = _samples(out)
    # The tiny model does not write <output> tags: every sample is flagged, and the whole response is graded.
    for s in samples:
        if "<output>" not in (s["response"] or ""):
            assert s["flags"]["missing_tag"] is True
            assert s["answer_text"] == s["response"]
    assert _results(out)["evals"]["mmlu"]["counts"]["missing_tag"] == sum(s["flags"]["missing_tag"] for s in samples)


def test_serve_embedded_until_interrupted(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([sys.executable, "-m", "scorecheck", "serve", "--embedded", "--port", str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        models = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    models = json.loads(r.read())
                    break
            except OSError:
                time.sleep(0.3)
        assert models is not None, "server never answered"
        assert any(MODEL_ALIAS in (m.get("aliases") or []) for m in models["data"])
        body = json.dumps({"model": MODEL_ALIAS, "messages": [{"role": "user", "content": "Say hi."}],
                           "max_tokens": 8, "temperature": 0}).encode()  # fmt: skip
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(req, timeout=60) as r:
            reply = json.loads(r.read())
        assert reply["choices"][0]["message"]["content"]
    finally:
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=20) == 0


# -- resume after SIGKILL -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def serial_server(tmp_path_factory):
    """One slot, so every request is computed alone and greedy outputs are reproducible run to run."""
    server = EmbeddedServer(tmp_path_factory.mktemp("serial") / "server.log", parallel=1, ctx_per_slot=2048).start()
    yield server
    server.stop()


def _ok_keys(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {k for (k,) in con.execute("SELECT key FROM requests WHERE status = 'ok'")}
    except sqlite3.OperationalError:
        return set()
    finally:
        con.close()


def _answered(log: Path) -> int:
    """Requests the llama.cpp server has finished, from its log."""
    return sum("stop processing" in line for line in log.read_text(errors="replace").splitlines())


def test_sigkill_mid_run_then_rerun_resends_nothing_finished(serial_server, tmp_path):
    args = ["run", "--base-url", serial_server.base_url, "--model", MODEL_ALIAS, "--evals", "mmlu,gsm8k",
            "--limit", "4", "--max-tokens", "24", "--concurrency", "2", "-q",
            "--extra-body", json.dumps({"skip_special_tokens": False, "cache_prompt": False})]  # fmt: skip
    cmd = [sys.executable, "-m", "scorecheck", *args]

    # The uninterrupted reference run.
    ref = tmp_path / "ref"
    assert subprocess.run([*cmd, "--out", str(ref)], capture_output=True, timeout=900).returncode == 0

    # The same run, killed with SIGKILL once a few requests are stored.
    out = tmp_path / "killed"
    answered_before = _answered(serial_server.log_path)
    p = subprocess.Popen([*cmd, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = out / "store.sqlite"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and len(_ok_keys(db) if db.exists() else ()) < 3:
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    survived = _ok_keys(db)
    assert 3 <= len(survived) < 8, "the kill must land mid-run"
    assert not (out / "results.json").exists()
    # Every answer the server finished is in the store but those still in flight (--concurrency 2): answers are
    # committed before they count as finished. The preflight is one more answer, not stored.
    time.sleep(1)  # the server finishes what it was computing for the dead client
    answered = _answered(serial_server.log_path) - answered_before - 1
    assert 0 <= answered - len(survived) <= 2, (answered, len(survived))

    r = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr

    con = sqlite3.connect(db)
    sessions = [s for (s,) in con.execute("SELECT id FROM sessions ORDER BY started")]
    assert len(sessions) == 2
    resent = {k for (k,) in con.execute("SELECT key FROM sends WHERE session = ?", (sessions[1],))}
    sent_before = {k for (k,) in con.execute("SELECT key FROM sends WHERE session = ?", (sessions[0],))}
    con.close()
    assert resent, "the rerun had work left"
    assert not (resent & survived), "a finished request was sent again"
    assert len(resent & sent_before) <= 2, "re-sent: more than what was in flight"
    assert len(resent) + len(survived) == 8

    a, b = _results(ref), _results(out)
    for name in ("mmlu", "gsm8k"):
        assert b["evals"][name]["n"] == a["evals"][name]["n"] == 4
        assert b["evals"][name]["score"] == a["evals"][name]["score"]
    key = lambda s: (s["eval"], s["item_id"])  # noqa: E731
    sa = {key(s): (s["response"], s["score"]) for s in _samples(ref)}
    sb = {key(s): (s["response"], s["score"]) for s in _samples(out)}
    assert sa == sb
