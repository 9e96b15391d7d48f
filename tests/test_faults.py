"""Endpoint faults, driven through the real CLI against the scripted stub server.

The stub stands in for what a real server will not do on demand (429/5xx, resets, hangs, malformed bodies, HTTP 400
for every request). Every run goes through ``python -m scorecheck run``; the assertions read what a user reads: the
exit code, stderr, ``results.json``, ``samples.jsonl`` and the store.

The stub's script is consumed in order by every chat request, the preflight request included (it comes first and
alone, so scripts start with its ``ok``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli, start_stub

MODEL = "stub-model"
LIMIT = 6
ENV = {"COLUMNS": "400"}


def run(base_urls: str | list[str], out: Path, *extra: str, env: dict[str, str] | None = None, limit: int = LIMIT):
    urls = [base_urls] if isinstance(base_urls, str) else base_urls
    args = ["run", *(a for u in urls for a in ("--base-url", u)), "--model", MODEL, "--evals", "mmlu",
            "--limit", str(limit), "--concurrency", "4", "--retry-wait", "0.01", "--out", str(out), "-q", *extra]  # fmt: skip
    return run_cli(*args, env={**ENV, **(env or {})}, timeout=120)


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["evals"]["mmlu"]


def samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def query(out: Path, sql: str, *params) -> list[tuple]:
    db = sqlite3.connect(out / "store.sqlite")
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def sessions(out: Path) -> list[str]:
    return [r[0] for r in query(out, "SELECT id FROM sessions ORDER BY started")]


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


TRANSIENT = ["429", "500", "503", "reset", "malformed", "nochoices"]


def test_transient_faults_are_retried_and_scored(stub, tmp_path):
    """Each kind of transient fault once, then success: every item is scored, the attempts are counted."""
    stub.control(script=["ok", *TRANSIENT], default="ok")
    out = tmp_path / "run"
    r = run(stub.base_url, out, "--max-retries", "6")
    assert r.code == 0, r.err
    res = results(out)
    assert res["n"] == LIMIT
    assert res["counts"]["failed"] == 0 and res["failed_items"] == []
    st = stub.stats()
    for fault in TRANSIENT:
        assert st[fault] == 1, st
    assert st["total"] == 1 + LIMIT + len(TRANSIENT)
    rows = query(out, "SELECT status, attempts, finish_reason, prompt_tokens, completion_tokens, latency, request "
                      "FROM requests")  # fmt: skip
    assert len(rows) == LIMIT
    assert all(r[0] == "ok" for r in rows)
    assert sum(r[1] for r in rows) == LIMIT + len(TRANSIENT)
    assert max(r[1] for r in rows) >= 2
    # finish_reason, usage and latency of every response are kept
    assert all(r[2] == "stop" and r[3] == 10 and r[4] == 5 and r[5] is not None and r[5] >= 0 for r in rows)
    # glaive-2024 (the default protocol) sends skip_special_tokens: false
    assert all(json.loads(r[6])["skip_special_tokens"] is False for r in rows)
    # one row in `sends` per HTTP attempt
    assert query(out, "SELECT COUNT(*) FROM sends")[0][0] == LIMIT + len(TRANSIENT)
    recs = samples(out)
    assert len(recs) == LIMIT
    assert all(s["status"] == "ok" and s["score"] is not None and s["finish_reason"] == "stop"
               and s["completion_tokens"] == 5 and "latency" not in s for s in recs)  # fmt: skip
    # timing lives apart, in timings.jsonl, line for line with samples.jsonl
    timings = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()]
    assert [(t["eval"], t["item_id"]) for t in timings] == [(s["eval"], s["item_id"]) for s in recs]
    assert all(t["latency"] is not None and t["latency"] >= 0 for t in timings)


def test_hang_times_out_and_is_retried(stub, tmp_path):
    stub.control(script=["ok", "hang"], default="ok")
    out = tmp_path / "run"
    t0 = time.monotonic()
    r = run(stub.base_url, out, "--timeout", "1")
    assert r.code == 0, r.err
    assert time.monotonic() - t0 < 30
    assert results(out)["n"] == LIMIT
    assert stub.stats()["hang"] == 1
    attempts = sorted(a for (a,) in query(out, "SELECT attempts FROM requests"))
    assert attempts == [1] * (LIMIT - 1) + [2]


def test_retries_exhausted_then_rerun_retries_exactly_those(stub, tmp_path):
    # The preflight and the first 5 first-attempts get ok; whatever is sent later gets 500: exactly one request
    # exhausts its retries.
    stub.control(script=["ok"] * LIMIT, default="500")
    out = tmp_path / "run"
    r = run(stub.base_url, out, "--max-retries", "2")
    assert r.code == 1, (r.code, r.err)
    res = results(out)
    assert res["n"] == LIMIT - 1
    assert res["n_items"] == LIMIT
    assert res["counts"]["failed"] == 1
    assert json.loads((out / "results.json").read_text())["requests_this_session"] == {"ok": LIMIT - 1, "failed": 1}
    [failed_item] = res["failed_items"]
    assert f"mmlu/{failed_item}" in r.err
    assert "failed after retries" in r.err
    assert stub.stats()["500"] == 3  # max_retries 2: three attempts
    failed = query(out, "SELECT key, attempts, error FROM requests WHERE status = 'failed'")
    assert len(failed) == 1
    failed_key, attempts, error = failed[0]
    assert attempts == 3 and "500" in error
    [rec] = [s for s in samples(out) if s["item_id"] == failed_item]
    assert rec["status"] == "failed" and rec["score"] is None and rec["flags"]["failed"]

    stub.control(default="ok")
    r2 = run(stub.base_url, out, "--max-retries", "2")
    assert r2.code == 0, r2.err
    res2 = results(out)
    assert res2["n"] == LIMIT and res2["counts"]["failed"] == 0 and res2["failed_items"] == []
    second = sessions(out)[-1]
    resent = [k for (k,) in query(out, "SELECT key FROM sends WHERE session = ?", second)]
    assert resent == [failed_key]
    assert stub.stats()["total"] == 2  # the preflight and the one failed request
    assert query(out, "SELECT status FROM requests WHERE key = ?", failed_key) == [("ok",)]


def test_http_400_is_graded_as_the_empty_answer(stub, tmp_path):
    stub.control(script=["ok", "400"], default="ok")
    out = tmp_path / "run"
    r = run(stub.base_url, out)
    assert r.code == 1, r.err  # 1 of 6 is more than 1% of the cell: flagged, non-zero exit
    assert "mmlu: HTTP 400 for 1 of 6 samples" in r.err
    res = results(out)
    assert res["n"] == LIMIT  # graded, not left out
    assert res["http_400_items"] and len(res["warnings"]) == 1 and not res["incomplete"]
    assert "HTTP 400 for 1 of 6" in (out / "summary.md").read_text()
    assert res["counts"]["http_400"] == 1 and res["counts"]["unparsed"] == 1 and res["counts"]["failed"] == 0
    [rec] = [s for s in samples(out) if s["status"] == "http_400"]
    assert rec["score"] == 0 and rec["response"] == "" and rec["extracted"] is None and rec["flags"]["unparsed"]
    assert stub.stats()["total"] == 1 + LIMIT  # not retried
    assert query(out, "SELECT attempts, error FROM requests WHERE status = 'http_400'")[0][0] == 1
    assert run(stub.base_url, out).code == 1  # the session ran to its end: its 400 is final, not sent again
    assert stub.stats()["total"] == 2 + LIMIT  # and the rerun's preflight only


def test_preflight_model_not_listed(stub, tmp_path):
    out = tmp_path / "run"
    r = run_cli("run", "--base-url", stub.base_url, "--model", "no-such-model", "--evals", "mmlu", "--limit", "6",
                "--out", str(out), "-q", env=ENV, timeout=60)  # fmt: skip
    assert r.code not in (0, 1), r.err
    line = one_line(r.err)
    assert "'no-such-model'" in line and MODEL in line
    assert r.seconds < 10
    assert stub.stats().get("total", 0) == 0


def test_preflight_400_hints_at_skip_special_tokens(stub, tmp_path):
    stub.control(default="400")
    out = tmp_path / "run"
    r = run(stub.base_url, out)
    assert r.code not in (0, 1), r.err
    line = one_line(r.err)
    assert "skip_special_tokens" in line and "--extra-body" in line
    assert stub.stats()["total"] == 1  # the preflight only; no run
    assert query(out, "SELECT COUNT(*) FROM requests") == [(0,)]


@pytest.mark.parametrize("fault", ["400", "500"])
def test_early_abort_keeps_what_finished(stub, tmp_path, fault):
    cfg = tmp_path / "run.toml"
    cfg.write_text("abort_after = 4\nretry_wait = 0.01\nmax_retries = 1\n")
    stub.control(script=["ok"], default=fault)
    out = tmp_path / "run"
    r = run(stub.base_url, out, "--config", str(cfg), limit=24)
    assert r.code == 3, (r.code, r.err)
    assert "stopped early" in r.err
    status = "http_400" if fault == "400" else "failed"
    rows = query(out, "SELECT status FROM requests")
    assert 4 <= len(rows) < 24
    assert all(s == status for (s,) in rows)
    assert len(samples(out)) == len(rows)
    assert query(out, "SELECT status FROM sessions") == [("aborted",)]
    # The server is fixed: the rerun sends again what the stopped session got as errors, 400s included (they are
    # not final in a session that stopped early), and scores them.
    stub.control(default="ok")
    r2 = run(stub.base_url, out, "--config", str(cfg), limit=24)
    assert r2.code == 0, r2.err
    res = results(out)
    assert res["n"] == 24 and res["counts"]["http_400"] == 0 and res["counts"]["failed"] == 0
    assert stub.stats()["total"] == 1 + 24  # the preflight and all 24: the stopped session got only errors


def test_api_key_is_sent_and_never_written(stub, tmp_path):
    secret = "sk-secret-5f0e1d2c3b4a"
    out = tmp_path / "run"
    r = run(stub.base_url, out, "--api-key-env", "MY_KEY", env={"MY_KEY": secret})
    assert r.code == 0, r.err
    assert stub.stats()["last_authorization"] == f"Bearer {secret}"
    assert secret not in r.out + r.err
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"config.json", "results.json", "samples.jsonl", "store.sqlite"} <= {p.name for p in files}
    for p in files:
        assert secret.encode() not in p.read_bytes(), p


def test_api_key_flag_and_auth_header_are_never_written(stub, tmp_path):
    """--api-key and --header put secrets in argv and in the configuration; the run directory keeps neither. A
    header's value is recorded only when the header is on the short allowlist (X-Credential is on no list of secret
    names, and is redacted all the same)."""
    secret, token, cred = "sk-secret-9a8b7c6d5e4f", "tok-secret-0a1b2c3d", "cred-4e5f6a7b8c9d"
    out = tmp_path / "run"
    r = run(stub.base_url, out, "--api-key", secret, "--header", f"X-Api-Key: {token}", "--header",
            f"X-Credential: {cred}", "--header", "User-Agent: scorecheck-test/1")  # fmt: skip
    assert r.code == 0, r.err
    assert stub.stats()["last_authorization"] == f"Bearer {secret}"
    for p in (p for p in out.rglob("*") if p.is_file()):
        data = p.read_bytes()
        assert secret.encode() not in data and token.encode() not in data and cred.encode() not in data, p
    for name in ("config.json", "results.json"):
        rec = json.loads((out / name).read_text())
        ep = (rec.get("config") or rec)["endpoints"][0]
        # the deprecated flag's values moved to the environment (the CLI's scrub): only the variables' names recorded
        assert ep["headers"] == {"User-Agent": "scorecheck-test/1"} and set(ep["header_env"]) == {
            "X-Api-Key",
            "X-Credential",
        }, name


def test_several_base_urls_share_the_load(stub, tmp_path):
    other = start_stub()
    try:
        out = tmp_path / "run"
        r = run([stub.base_url, other.base_url], out, limit=16)
        assert r.code == 0, r.err
        assert results(out)["n"] == 16
        a, b = stub.stats()["total"], other.stats()["total"]
        assert a > 0 and b > 0 and a + b == 16 + 1
        used = {e for (e,) in query(out, "SELECT DISTINCT endpoint FROM requests")}
        assert used == {stub.base_url, other.base_url}
    finally:
        other.proc.terminate()
        other.proc.wait(timeout=10)


def test_second_run_on_the_same_directory_is_refused(stub, tmp_path):
    stub.control(default="hang")
    out = tmp_path / "run"
    args = ["run", "--base-url", stub.base_url, "--model", MODEL, "--evals", "mmlu", "--limit", "6",
            "--timeout", "60", "--out", str(out), "-q"]  # fmt: skip
    first = subprocess.Popen([sys.executable, "-m", "scorecheck", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, **ENV}, cwd=ROOT)  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while stub.stats().get("total", 0) < 1:  # the first run holds the lock and waits on its preflight
            assert first.poll() is None, "the first run exited early"
            assert time.monotonic() < deadline, "the first run never sent a request"
            time.sleep(0.1)
        r = run_cli(*args, env=ENV, timeout=30)
        assert r.code not in (0, 1), r.err
        line = one_line(r.err)
        assert "in use" in line and str(out) in line and str(first.pid) in line
        assert r.seconds < 10
        assert first.poll() is None  # the first run is untouched
    finally:
        first.kill()
        first.wait(timeout=10)
