"""Reliability through the real CLI: one configuration per run directory, durable answers, robust decoding,
``/v1/models`` retried, one-line errors for bad run directories, data files and a full disk.

Faults a real server will not produce on demand come from the scripted stub (tests/stub_server.py); the signal test
with the real embedded model is in tests/test_signals.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli
from test_faults import ENV, LIMIT, MODEL, one_line, query, results, run, samples, sessions


def _ok_rows(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM requests WHERE status = 'ok'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


# -- /v1/models and decoding -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["502", "cut"])
def test_models_fault_once_is_retried_and_the_run_proceeds(stub, tmp_path, fault):
    stub.control(models_script=[fault])
    out = tmp_path / "run"
    r = run(stub.base_url, out)
    assert r.code == 0, r.err
    assert results(out)["n"] == LIMIT
    assert stub.stats()[f"models_{fault}"] == 1


def test_models_502_that_persists_is_one_line_without_html(stub, tmp_path):
    stub.control(models_script=["502"] * 10)
    r = run(stub.base_url, tmp_path / "run", "--max-retries", "2")
    assert r.code not in (0, 1), r.err
    line = one_line(r.err)
    assert "HTTP 502: 502 Bad Gateway" in line and "after 3 attempts" in line, line
    assert "<" not in line
    assert stub.stats()["models_502"] == 3
    assert stub.stats().get("total", 0) == 0  # no chat request was sent
    assert r.seconds < 20


def test_chat_502_page_is_summarised_in_one_line(stub, tmp_path):
    stub.control(default="502")
    r = run(stub.base_url, tmp_path / "run", "--max-retries", "0")
    assert r.code not in (0, 1), r.err
    line = one_line(r.err)
    assert "HTTP 502: 502 Bad Gateway" in line and "<html" not in line, line


def test_invalid_utf8_and_lone_surrogate_are_replaced_and_flagged(stub, tmp_path):
    stub.control(script=["ok", "badutf8", "surrogate"], default="ok")
    out = tmp_path / "run"
    r = run(stub.base_url, out)
    assert r.code == 0, r.err
    assert results(out)["n"] == LIMIT
    recs = samples(out)
    flagged = [s for s in recs if s["flags"]["decode_replaced"]]
    assert len(flagged) == 2
    assert all("\ufffd" in s["response"] and s["score"] is not None and s["extracted"] == "A" for s in flagged)
    assert sum(s["flags"]["decode_replaced"] is False for s in recs) == LIMIT - 2
    errors = sorted(e for (e,) in query(out, "SELECT error FROM requests WHERE error IS NOT NULL"))
    assert errors == ["response decoding: invalid UTF-8 replaced by U+FFFD",
                      "response decoding: lone surrogate replaced by U+FFFD"]  # fmt: skip
    # a rerun reads them back from the store, flags included, and sends nothing
    stub.control(script=["ok"], default="500")  # the preflight, then nothing else may be asked
    r2 = run(stub.base_url, out)
    assert r2.code == 0, r2.err
    assert stub.stats()["total"] == 1  # the preflight
    assert sum(s["flags"]["decode_replaced"] for s in samples(out)) == 2


# -- one configuration per run directory -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--system-prompt", "reflection"], "system_prompt: none -> reflection"),
        (["--model", "other-model"], "model: stub-model -> other-model"),
        (["--max-tokens", "77"], "max_tokens: 6000 -> 77"),
    ],
)
def test_rerun_with_another_configuration_is_refused_store_untouched(stub, tmp_path, flags, named):
    out = tmp_path / "run"
    assert run(stub.base_url, out).code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix in (".json", ".jsonl", ".md")}
    db_before = (
        query(out, "SELECT * FROM sessions"),
        query(out, "SELECT * FROM requests"),
        query(out, "SELECT * FROM meta"),
    )
    stub.control()
    args = ["run", "--base-url", stub.base_url, "--model", MODEL, "--evals", "mmlu", "--limit", str(LIMIT),
            "--out", str(out), "-q"]  # fmt: skip
    if flags[0] == "--model":
        args[args.index("--model") + 1] = flags[1]
    else:
        args += flags
    r = run_cli(*args, env=ENV, timeout=60)
    assert r.code == 2, (r.code, r.err)
    line = one_line(r.err)
    assert named in line and "--new-run" in line and str(out) in line, line
    assert r.seconds < 15
    assert stub.stats().get("total", 0) == 0 and stub.stats().get("models_ok", 0) == 0  # nothing was asked
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name in before} == before
    assert (query(out, "SELECT * FROM sessions"), query(out, "SELECT * FROM requests"),
            query(out, "SELECT * FROM meta")) == db_before  # fmt: skip


def test_new_run_sets_the_old_run_aside(stub, tmp_path):
    out = tmp_path / "run"
    assert run(stub.base_url, out).code == 0
    old_config = (out / "config.json").read_text()
    stub.control()
    r = run(stub.base_url, out, "--max-tokens", "77", "--new-run")
    assert r.code == 0, r.err
    [aside] = [p for p in out.iterdir() if p.name.startswith("previous-")]
    assert f"moved to {aside}" in r.err.replace("\n", "")
    assert {"store.sqlite", "config.json", "results.json", "samples.jsonl", "summary.md"} <= {
        p.name for p in aside.iterdir()
    }
    assert (aside / "config.json").read_text() == old_config
    assert json.loads((aside / "config.json").read_text())["sampling"]["max_tokens"] == 6000
    assert json.loads((out / "config.json").read_text())["sampling"]["max_tokens"] == 77
    assert len(sessions(out)) == 1 and len(query(aside, "SELECT id FROM sessions")) == 1
    assert stub.stats()["total"] == 1 + LIMIT  # the new run asked everything again
    assert {json.loads(r)["max_tokens"] for (r,) in query(out, "SELECT request FROM requests")} == {77}
    # the run aside is a run directory of its own: it can be regraded
    rg = run_cli("regrade", str(aside), env=ENV, timeout=120)
    assert rg.code == 0, rg.err


def test_same_configuration_may_grow_and_config_json_follows_the_results(stub, tmp_path):
    out = tmp_path / "run"
    assert run(stub.base_url, out, "--concurrency", "2").code == 0
    stub.control()
    r = run(stub.base_url, out, limit=LIMIT + 3)  # more items, other concurrency: the same run
    assert r.code == 0, r.err
    assert stub.stats()["total"] == 1 + 3  # the preflight and the three new items
    assert json.loads((out / "config.json").read_text())["limit"] == LIMIT + 3
    assert results(out)["n"] == LIMIT + 3
    # a failed invocation (the endpoint is down) leaves config.json describing the results it sits beside
    stub.proc.terminate()
    stub.proc.wait(timeout=10)
    r2 = run(stub.base_url, out, "--max-retries", "0", limit=LIMIT + 6)
    assert r2.code not in (0, 1)
    assert json.loads((out / "config.json").read_text())["limit"] == LIMIT + 3


# -- durable answers -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_stop_resends_only_what_was_in_flight(stub, tmp_path, sig):
    """Against the stub (instant answers, ~1,000/s): every answer the server gave before the stop is in the store
    except those still in flight (at most --concurrency); the rerun sends exactly the rest, once each."""
    concurrency, limit = 8, 3000
    out = tmp_path / "run"
    args = [sys.executable, "-m", "scorecheck", "run", "--base-url", stub.base_url, "--model", MODEL, "--evals", "mmlu",
            "--limit", str(limit), "--concurrency", str(concurrency), "--out", str(out), "-q"]  # fmt: skip
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **ENV}, cwd=ROOT)  # fmt: skip
    deadline = time.monotonic() + 120
    while _ok_rows(out / "store.sqlite") < 200:
        assert p.poll() is None, p.stderr.read() if p.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)  # a moment unrelated to any commit (the old 0.5 s flush lost up to 0.5 s of answers)
    os.kill(p.pid, sig)
    code = p.wait(timeout=60)
    err = p.stderr.read() if p.stderr else ""
    answered = stub.stats()["total"] - 1  # less the preflight
    con = sqlite3.connect(out / "store.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {k for (k,) in con.execute("SELECT key FROM requests WHERE status = 'ok'")}
    con.close()
    if sig == signal.SIGTERM:
        assert code == 143, err
        assert "stopped by SIGTERM" in err and "Traceback" not in err
        assert query(out, "SELECT status FROM sessions") == [("interrupted",)]
    else:
        assert code == -signal.SIGKILL
    assert len(stored) < limit - 300, "the stop must land mid-run"
    assert 0 <= answered - len(stored) <= concurrency, (answered, len(stored))

    stub.control()
    r = run_cli(*args[3:], env=ENV, timeout=120)
    assert r.code == 0, r.err
    second = sessions(out)[-1]
    resent = [k for (k,) in query(out, "SELECT key FROM sends WHERE session = ?", second)]
    assert not set(resent) & stored, "a finished answer was sent again"
    assert len(resent) == len(set(resent))
    distinct = query(out, "SELECT COUNT(DISTINCT key) FROM requests")[0][0]
    assert len(stored) + len(resent) == distinct
    assert results(out)["n"] == limit


# -- one-line errors -------------------------------------------------------------------------------------------------
def test_out_that_is_a_file_is_one_line(stub, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    r = run(stub.base_url, f)
    assert r.code == 2, r.err
    assert "is a file" in one_line(r.err) and "--out" in r.err
    assert f.read_text() == "x"


def _private_mounts() -> list[str]:
    """A command prefix giving the child a mount namespace of its own (the host's mounts stay as they are)."""
    for prefix in (["unshare", "--mount", "--propagation", "private"],
                   ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]):  # fmt: skip
        if shutil.which(prefix[0]) and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    pytest.skip("no private mount namespace here (unshare --mount refused): cannot make a read-only or full disk")


def _in_mounts(
    setup: str, *cli_args: str, teardown: str = "", timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``setup`` (mount commands), ``python -m scorecheck CLI_ARGS``, ``teardown``, in a private mount namespace;
    the exit code is scorecheck's."""
    script = f'set -e\n{setup}\nset +e\n"$@"\nrc=$?\n{teardown}\nexit $rc'
    return subprocess.run([*_private_mounts(), "sh", "-c", script, "sh", sys.executable, "-m", "scorecheck", *cli_args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **ENV}, cwd=ROOT)  # fmt: skip


def test_read_only_out_is_one_line_for_run_and_regrade(stub, tmp_path):
    out = tmp_path / "run"
    assert run(stub.base_url, out).code == 0
    before = query(out, "SELECT COUNT(*) FROM requests")
    ro = f"mount --bind {out} {out}\nmount -o remount,bind,ro {out}"
    args = ["--base-url", stub.base_url, "--model", MODEL, "--evals", "mmlu", "--limit", str(LIMIT), "-q"]
    for cli_args in (["run", *args, "--out", str(out)], ["run", *args, "--out", str(out / "new")],
                     ["regrade", str(out)]):  # fmt: skip
        t0 = time.monotonic()
        r = _in_mounts(ro, *cli_args)
        assert r.returncode == 2, (cli_args, r.returncode, r.stderr)
        line = one_line(r.stderr)
        assert str(out) in line and ("read-only" in line.lower() or "readonly" in line.lower()), line
        assert time.monotonic() - t0 < 20
    assert query(out, "SELECT COUNT(*) FROM requests") == before


def test_disk_full_is_one_line_and_keeps_what_was_committed(stub, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "run"
    args = ["run", "--base-url", stub.base_url, "--model", MODEL, "--evals", "mmlu", "--concurrency", "4",
            "--out", str(out), "-q"]  # fmt: skip
    # One namespace per step; the tmpfs lives in tmp_path's image between them (copied in and out).
    image = tmp_path / "image"
    image.mkdir()
    mount = f"mount -t tmpfs -o size=600k tmpfs {disk}\ncp -a {image}/. {disk}/"
    save = f"rm -rf {image}/run && cp -a {disk}/run {image}/"
    r = _in_mounts(mount, *args, "--limit", "5", teardown=save)
    assert r.returncode == 0, r.stderr
    first = json.loads((image / "run" / "results.json").read_text())["evals"]["mmlu"]
    assert first["n"] == 5
    # fill the disk, then ask for more
    fill = f"{mount}\nhead -c 10000000 /dev/zero > {disk}/filler 2>/dev/null || true"
    t0 = time.monotonic()
    r = _in_mounts(fill, *args, "--limit", "400", teardown=save)
    assert r.returncode == 2, (r.returncode, r.stderr)
    line = one_line(r.stderr)
    assert "space" in line.lower() or "full" in line.lower(), line
    assert "cannot rollback" not in line and "Traceback" not in r.stderr
    assert time.monotonic() - t0 < 60
    saved = image / "run"
    con = sqlite3.connect(saved / "store.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert con.execute("SELECT COUNT(*) FROM requests WHERE status = 'ok'").fetchone()[0] >= 5
    con.close()
    assert json.loads((saved / "results.json").read_text())["evals"]["mmlu"] == first


@pytest.mark.parametrize("key", ["mmlu", "gsm8k"])
def test_truncated_data_file_is_one_line_for_run_and_data_verify(stub, tmp_path, data_dir, key):
    data = tmp_path / "data"
    data.mkdir()
    for entry in data_dir.iterdir():
        (data / entry.name).symlink_to(entry)
    rel = {"mmlu": "mmlu/mmlu.csv", "gsm8k": "gsm8k/test.jsonl"}[key]
    src = data_dir / rel
    (data / rel.split("/")[0]).unlink()
    (data / rel.split("/")[0]).mkdir()
    (data / rel).write_bytes(src.read_bytes()[: src.stat().st_size // 2])  # cut mid-row
    env = {**ENV, "SCORECHECK_DATA_DIR": str(data), "SCORECHECK_CACHE_DIR": str(tmp_path / "cache")}
    r = run_cli("run", "--base-url", stub.base_url, "--model", MODEL, "--evals", key, "--limit", "3",
                "--out", str(tmp_path / "run"), "-q", env=env, timeout=60)  # fmt: skip
    assert r.code == 2, r.err
    line = one_line(r.err)
    assert str(data / rel) in line and f"scorecheck data fetch {key}" in line, line
    v = run_cli("data", "verify", env=env, timeout=60)
    assert v.code == 1, v.err
    assert "Traceback" not in v.out + v.err and "corrupt" in v.out


def test_malformed_results_json_in_compare_is_one_line(stub, tmp_path):
    good = tmp_path / "good"
    assert run(stub.base_url, good).code == 0
    for n, content in enumerate(['{"evals": ', "[1, 2]", '{"evals": 3}', '{"evals": {"mmlu": 1}}', "", "\xff"]):
        bad = tmp_path / f"bad{n}"
        shutil.copytree(good, bad)
        (bad / "results.json").write_text(content, encoding="latin-1")
        r = run_cli("compare", str(good), str(bad), env=ENV, timeout=60)
        assert r.code == 2, (content, r.code, r.err)
        assert str(bad / "results.json") in one_line(r.err), r.err


# -- preflight with the run's real sampling; the context length ------------------------------------------------------
def test_preflight_sends_the_real_max_tokens_and_refuses_what_cannot_fit(stub, tmp_path):
    """A server with a 4,096-token context rejects max_tokens 6000 with HTTP 400 (vLLM does): the preflight sends
    the run's real sampling (streamed), so the run stops before its first request instead of storing a 400 storm."""
    stub.control(max_model_len=4096)
    out = tmp_path / "run"
    r = run(stub.base_url, out, "--max-tokens", "6000")
    assert r.code not in (0, 1), r.err
    line = one_line(r.err)
    assert "rejects this run's request parameters" in line and "HTTP 400" in line
    assert stub.stats()["total"] == 1  # the preflight alone
    assert query(out, "SELECT COUNT(*) FROM requests") == [(0,)]
    # The same server reporting its context length in /v1/models: refused before any request, naming the fix.
    stub.control(max_model_len=4096, report_ctx=True)
    r = run(stub.base_url, out, "--max-tokens", "6000")
    line = one_line(r.err)
    assert r.code not in (0, 1) and "context length 4096" in line and "--max-tokens" in line, r.err
    assert stub.stats().get("total", 0) == 0
    # max_tokens that fits: the run proceeds (the preflight is one streamed request, closed after its first chunk).
    r = run(stub.base_url, out, "--max-tokens", "1000")
    assert r.code == 0, r.err
    assert results(out)["n"] == LIMIT and stub.stats()["total"] == 1 + LIMIT


def test_prompts_that_may_not_fit_the_context_are_noted(stub, tmp_path):
    stub.control(max_model_len=1100, report_ctx=True)
    out = tmp_path / "run"
    r = run(stub.base_url, out, "--max-tokens", "1000")
    assert r.code == 0, r.err
    notes = json.loads((out / "results.json").read_text())["notes"]
    assert any("may not fit" in n and "context length 1100" in n for n in notes), notes


# -- the circuit breaker over the whole run ----------------------------------------------------------------------------
def test_an_endpoint_that_dies_mid_run_stops_the_run_within_bounded_time(stub, tmp_path):
    """After 40 answers the endpoint drops every connection. The early abort (first 32 answers) has passed; with
    retries that would take hours (50 retries, backoff to 60 s), the circuit breaker pauses, probes and stops."""
    cfg = tmp_path / "run.toml"
    cfg.write_text("max_retries = 50\nretry_wait = 0.05\nbreaker_seconds = 1.5\n")
    stub.control(script=["ok"] * 41, default="reset")
    out = tmp_path / "run"
    r = run(stub.base_url, out, "--config", str(cfg), limit=80)
    assert r.code == 3, (r.code, r.err)
    assert "stopped: no answer from the model for" in r.err and "rerun the same command" in r.err, r.err
    assert r.seconds < 40, r.seconds
    assert query(out, "SELECT status, COUNT(*) FROM requests GROUP BY status") == [("ok", 40)]
    assert query(out, "SELECT status FROM sessions") == [("aborted",)]
    stub.control(default="ok")  # the endpoint is back: the rerun sends the other 40 and nothing else
    r = run(stub.base_url, out, "--config", str(cfg), limit=80)
    assert r.code == 0, r.err
    assert results(out)["n"] == 80 and stub.stats()["total"] == 1 + 40


# -- readers of unfinished or torn records ---------------------------------------------------------------------------
def test_regrade_of_an_unfinished_run_says_how_much_it_covers(stub, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("abort_after = 4\nretry_wait = 0.01\nmax_retries = 0\n")
    stub.control(script=["ok", "ok"], default="500")  # the preflight, one answer, then errors: stopped early
    out = tmp_path / "run"
    assert run(stub.base_url, out, "--config", str(cfg), limit=24).code == 3
    answered = query(out, "SELECT COUNT(*) FROM requests WHERE status = 'ok'")[0][0]
    r = run_cli("regrade", str(out), env=ENV, timeout=120)
    assert r.code == 0, r.err
    assert answered == 1 and "this regrade covers 1 of its 24 samples (4%)" in " ".join(r.err.split()), r.err
    [regraded] = list(out.glob("regrade-*"))
    notes = json.loads((regraded / "results.json").read_text())["notes"]
    assert any("unfinished" in n and "1 of its 24" in n for n in notes), notes


def test_compare_refuses_samples_that_do_not_cover_the_results(stub, tmp_path):
    good = tmp_path / "good"
    assert run(stub.base_url, good).code == 0
    torn = tmp_path / "torn"
    shutil.copytree(good, torn)
    lines = (torn / "samples.jsonl").read_text().splitlines(keepends=True)
    (torn / "samples.jsonl").write_text("".join(lines[:2]))  # a kill while writing, with a complete results.json
    for cmd in (["compare", str(good), str(torn)], ["explain", str(good), str(torn)]):
        r = run_cli(*cmd, env=ENV, timeout=60)
        assert r.code == 2, (cmd, r.code, r.err)
        line = one_line(r.err)
        assert "does not cover results.json" in line and f"mmlu: 2 samples for {LIMIT}" in line, line


def test_a_judge_that_dies_stops_the_run_within_bounded_time(stub, tmp_path):
    """The judge's requests have their own breaker: a dead judge stops the run (exit 3) instead of every queued grade
    retrying it to exhaustion; the model's answers are kept and a rerun sends only judge requests."""
    from conftest import start_stub

    judge = start_stub("judge-model")
    try:
        cfg = tmp_path / "run.toml"
        cfg.write_text("max_retries = 50\nretry_wait = 0.05\nbreaker_seconds = 1.5\n")
        stub.control(answer="Work.\nAnswer: 18")
        judge.control(script=["ok"], default="reset", answer="Yes")  # the preflight, then the judge is gone
        out = tmp_path / "run"
        args = ["run", "--base-url", stub.base_url, "--model", MODEL, "--evals", "gsm8k", "--limit", "12",
                "--concurrency", "4", "--out", str(out), "-q", "--config", str(cfg), "--grader", "judge",
                "--judge-url", judge.base_url, "--judge-model", "judge-model"]  # fmt: skip
        r = run_cli(*args, env=ENV, timeout=120)
        assert r.code == 3, (r.code, r.err)
        assert "no verdict from the judge for" in r.err and r.seconds < 40, (r.seconds, r.err)
        answers = query(out, "SELECT COUNT(*) FROM requests WHERE eval = 'gsm8k' AND status = 'ok'")[0][0]
        assert answers > 0
        judge.control(answer="Yes")
        r = run_cli(*args, env=ENV, timeout=120)
        assert r.code == 0, r.err
        assert json.loads((out / "results.json").read_text())["evals"]["gsm8k"]["n"] == 12
        assert query(out, "SELECT COUNT(*) FROM requests WHERE eval = 'gsm8k'")[0][0] == 12
        model_sends = "SELECT COUNT(*) FROM sends s JOIN requests r ON r.key = s.key WHERE r.eval = 'gsm8k'"
        assert query(out, model_sends)[0][0] == 12  # no model answer sent twice: the rerun asked only the judge
    finally:
        judge.proc.terminate()
        judge.proc.wait(timeout=10)
