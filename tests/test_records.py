"""The records of a run directory: every record a run, regrade and grade write validates against the models; an
unknown major version is refused in one line; a corrupt line is an error naming it; writes are atomic; two runs
against a deterministic server write byte-identical samples.jsonl; IFEval's four numbers each carry their n."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from conftest import run_cli
from scorecheck.results import (
    SCHEMA_VERSION,
    RecordError,
    Results,
    RunConfigRecord,
    read_config,
    read_results,
    read_samples,
)
from scorecheck.results.io import read_timings, write_atomic
from scorecheck.results.schema import DOCS, schema_files

CREDENTIAL = "cred-secret-7c1e9a0b"
"""Sent in a header on no list of secret-looking names: it must not land in any record or export."""
STUB_RUN = ["--model", "stub-model", "--evals", "mmlu,ifeval", "--limit", "12", "--concurrency", "8", "-q",
            "--header", f"X-Credential: {CREDENTIAL}"]  # fmt: skip


def validate_run_dir(d: Path) -> Results:
    """Every record in ``d`` through its model (raises on the first invalid one)."""
    res = read_results(d / "results.json")
    samples = read_samples(d / "samples.jsonl")
    timings = read_timings(d / "timings.jsonl")
    assert [s.order_key() for s in samples] == [(t.eval, t.item_id, t.sample_index) for t in timings]
    assert sum(e.n_items for e in res.evals.values()) == len(samples)
    if (d / "config.json").is_file():
        read_config(d / "config.json")
    return res


def test_schema_in_docs_is_up_to_date():
    files = schema_files()
    assert set(files) == {"results.schema.json", "samples.schema.json", "timings.schema.json", "config.schema.json"}
    for name, text in files.items():
        assert (DOCS / name).is_file(), f"docs/schema/{name} missing: python -m scorecheck.results.schema"
        assert (DOCS / name).read_text() == text, f"docs/schema/{name} is stale: python -m scorecheck.results.schema"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of the same command against the deterministic stub server, each on a fresh stub."""
    from conftest import start_stub

    base = tmp_path_factory.mktemp("records")
    dirs = []
    for name in ("a", "b"):
        stub = start_stub()
        try:
            r = run_cli("run", "--base-url", stub.base_url, *STUB_RUN, "--out", str(base / name), timeout=120)
            assert r.code == 0, r.err
        finally:
            stub.proc.terminate()
            stub.proc.wait(timeout=10)
        dirs.append(base / name)
    return dirs


def test_two_runs_against_a_deterministic_server_write_identical_samples(two_runs):
    a, b = two_runs
    assert (a / "samples.jsonl").read_bytes() == (b / "samples.jsonl").read_bytes()
    # the timing is kept apart, and does differ
    assert (a / "timings.jsonl").read_bytes() != (b / "timings.jsonl").read_bytes()
    samples = read_samples(a / "samples.jsonl")
    # item order: eval in --evals order, items as the data was loaded (the fork's subset order), sample index
    assert [s.eval for s in samples] == ["mmlu"] * 12 + ["ifeval"] * 12
    assert all(s.schema_version == SCHEMA_VERSION for s in samples)
    assert not any("latency" in json.loads(line) for line in (a / "samples.jsonl").read_text().splitlines())
    for d in (a, b):
        validate_run_dir(d)
        for p in d.rglob("*"):
            assert not p.is_file() or CREDENTIAL.encode() not in p.read_bytes(), p


def test_regrade_and_grade_records_validate(two_runs, tmp_path, data_dir):
    run = two_runs[0]
    r = run_cli("regrade", str(run), "--grader", "symbolic", timeout=120)
    assert r.code == 0, r.err
    (rg,) = [p for p in run.iterdir() if p.name.startswith("regrade-")]
    res = validate_run_dir(rg)
    before = read_results(run / "results.json")
    assert res.regrade and res.regrade["previous_scores"] == {k: v.score for k, v in before.evals.items()}
    assert {k: v.score for k, v in res.evals.items()} == {k: v.score for k, v in before.evals.items()}
    assert (rg / "samples.jsonl").read_bytes() == (run / "samples.jsonl").read_bytes()  # same grades, same bytes

    # grade: IFEval responses graded offline; its four numbers each with its own n, consistent with the headline
    rows = [json.loads(x) for x in (data_dir / "ifeval" / "input_data.jsonl").read_text().splitlines()][:20]
    responses = tmp_path / "responses.jsonl"
    responses.write_text("".join(json.dumps({"prompt": x["prompt"], "response": "yes " * 30}) + "\n" for x in rows))
    keys = [str(x["key"]) for x in rows]
    others = [str(json.loads(x)["key"]) for x in (data_dir / "ifeval" / "input_data.jsonl").read_text().splitlines()]
    out = tmp_path / "graded"
    excl = [a for k in others if k not in keys for a in ("--exclude-key", k)]
    r = run_cli("grade", "--eval", "ifeval", "--responses", str(responses), "--out", str(out), "-q", *excl)
    assert r.code == 0, r.err
    res = validate_run_dir(out)
    ev = res.evals["ifeval"]
    assert ev.correct is None  # the headline is not a proportion of one count
    four = [ev.metrics[m] for m in ("prompt_strict", "instruction_strict", "prompt_loose", "instruction_loose")]
    assert [m.n for m in four][::2] == [20, 20] and four[1].n == four[3].n > 20
    for m in four:
        assert m.value == m.correct / m.n
    assert ev.score == pytest.approx(sum(m.value for m in four) / 4)
    assert [s.item_id for s in read_samples(out / "samples.jsonl")] == keys


def test_a_run_from_before_versioned_records_is_regraded_into_versioned_ones(two_runs, tmp_path):
    """compare refuses a record without schema_version (one line, naming the fix); regrade reads it and writes
    versioned records with the same scores."""
    import shutil

    old = tmp_path / "old"
    shutil.copytree(two_runs[1], old, ignore=shutil.ignore_patterns("regrade-*", "export-*"))
    for name in ("results.json", "config.json"):
        rec = json.loads((old / name).read_text())
        del rec["schema_version"]
        (old / name).write_text(json.dumps(rec))
    r = run_cli("compare", str(old))
    assert r.code != 0 and "no schema_version" in r.err and "regrade" in r.err and len(r.err.strip().splitlines()) == 1
    r = run_cli("regrade", str(old), timeout=120)
    assert r.code == 0, r.err
    (rg,) = old.glob("regrade-*")
    res = validate_run_dir(rg)
    assert res.schema_version == SCHEMA_VERSION
    assert {k: v.score for k, v in res.evals.items()} == {
        k: v.score for k, v in read_results(two_runs[1] / "results.json").evals.items()
    }


def _results_record() -> dict:
    return {"schema_version": SCHEMA_VERSION, "scorecheck": {"version": "0"}, "protocol": {"name": "p"},
            "model": "m", "config": {"system_prompt": {"name": "none"}},
            "evals": {"mmlu": {"score": 0.5, "n": 2, "n_items": 2}}}  # fmt: skip


def test_versions_and_corrupt_lines_are_one_line_errors(tmp_path):
    p = tmp_path / "results.json"
    rec = _results_record()
    write_atomic(p, json.dumps({**rec, "schema_version": "1.7.2", "field_added_later": {"x": 1}}))
    got = read_results(p)  # another minor of a known major: read, and the field it added is kept
    assert got.model_dump()["field_added_later"] == {"x": 1}
    for bad, msg in (("2.0.0", re.escape("schema_version 2.0.0 is not readable by this scorecheck (it reads 1.x)")),
                     ("1.0", "not a semver string")):  # fmt: skip
        write_atomic(p, json.dumps({**rec, "schema_version": bad}))
        with pytest.raises(RecordError, match=msg) as e:
            read_results(p)
        assert "\n" not in str(e.value) and str(p) in str(e.value)
    write_atomic(p, json.dumps({**rec, "evals": {"mmlu": {"score": "high"}}}))
    with pytest.raises(RecordError, match=r"evals\.mmlu\.") as e:
        read_results(p)
    assert "\n" not in str(e.value)

    s = tmp_path / "samples.jsonl"
    good = json.dumps({"schema_version": SCHEMA_VERSION, "eval": "mmlu", "item_id": "1", "status": "ok"})
    for lines, where in (([good, '{"eval": "mmlu", "item_id'], "line 2: not valid JSON"),
                         ([good, "", good], "line 2: empty line"),
                         ([good, good, good.replace('"1.', '"3.')], "line 3: schema_version 3\\.\\d+\\.\\d+ is not readable"),
                         ([good, json.dumps({"schema_version": SCHEMA_VERSION, "eval": "mmlu"})], "line 2: not a valid"),
                         ([json.dumps({"eval": "mmlu", "item_id": "1", "status": "ok"})], "line 1: no schema_version")):  # fmt: skip
        s.write_text("\n".join(lines) + "\n")
        with pytest.raises(RecordError, match=where) as e:
            read_samples(s)
        assert "\n" not in str(e.value) and str(s) in str(e.value)

    r = run_cli("compare", str(tmp_path))  # the CLI says it in one line and exits non-zero
    assert r.code != 0 and len(r.err.strip().splitlines()) == 1 and "results.json" in r.err


def test_writes_are_atomic(tmp_path, monkeypatch):
    p = tmp_path / "results.json"
    write_atomic(p, "old\n")

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        write_atomic(p, "new\n")
    assert p.read_text() == "old\n"  # the old record, whole
    assert [x.name for x in tmp_path.iterdir()] == ["results.json"]  # no temporary file left behind
    monkeypatch.undo()
    plain = tmp_path / "plain"
    plain.write_text("x")
    write_atomic(p, "new\n")
    assert p.read_text() == "new\n" and p.stat().st_mode == plain.stat().st_mode  # the mode open() would give


# --- exports ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def inspect_logs(two_runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect")
    r = run_cli("export", str(two_runs[0]), "--to", "inspect", "--out", str(out))
    assert r.code == 0, r.err
    return out


def test_inspect_export_reads_back_with_inspect(two_runs, inspect_logs):
    log_mod = pytest.importorskip("inspect_ai.log", reason="inspect_ai is a dev dependency (pip install -e .[dev])")
    res = read_results(two_runs[0] / "results.json")
    files = sorted(inspect_logs.glob("*.json"))
    assert len(files) == 2 and not any(CREDENTIAL in f.read_text() for f in files)
    samples = read_samples(two_runs[0] / "samples.jsonl")
    for f in files:
        log = log_mod.read_eval_log(str(f))
        name = log.eval.task.removeprefix("scorecheck/")
        ev = res.evals[name]
        assert log.status == "success" and log.eval.model == "openai-api/stub-model"
        assert len(log.samples) == ev.n_items == 12 and log.results.total_samples == 12
        (score,) = log.results.scores
        assert score.metrics["accuracy"].value == pytest.approx(ev.score)
        assert log.eval.metadata["protocol"]["name"] == res.protocol.name == "glaive-2024"
        assert log.eval.model_generate_config.max_tokens == res.config.sampling["max_tokens"]
        mine = [s for s in samples if s.eval == name]
        assert [str(s.id) for s in log.samples] == [s.item_id for s in mine]
        for got, want in zip(log.samples, mine, strict=True):
            assert got.scores["scorecheck"].value == want.score
            assert got.messages[-1].role == "assistant" and got.messages[-1].text == want.response
            assert got.messages[-2].role == "user" and got.messages[-2].text  # the message sent, from the store
        if name == "ifeval":
            assert {k: score.metrics[k].value for k in ev.metrics} == {k: m.value for k, m in ev.metrics.items()}


def test_inspect_view_serves_the_export(inspect_logs, tmp_path):
    """``inspect view`` on the export directory, in headless Chromium: the log is listed, its sample list shows."""
    import shutil
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    chromium = Path(os.environ.get("SCORECHECK_CHROMIUM", "/usr/bin/chromium"))
    if not chromium.exists():
        pytest.skip(f"{chromium} is absent: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the dev extra)")
    inspect_bin = Path(sys.executable).parent / "inspect"
    if not inspect_bin.exists():
        inspect_bin = Path(shutil.which("inspect") or "inspect")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(inspect_bin), "view", "--log-dir", str(inspect_logs), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, "inspect view exited"
                assert time.monotonic() < deadline, "inspect view did not start in 90 s"
                time.sleep(0.5)
        with sync_api.sync_playwright() as p:
            from test_html_browser import ARGS

            browser = p.chromium.launch(executable_path=str(chromium), args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(f"http://127.0.0.1:{port}/")
                page.get_by_text("scorecheck/mmlu").first.click(timeout=30_000)
                sync_api.expect(page.get_by_text("12 Samples", exact=True)).to_be_visible(timeout=30_000)
                first = read_samples(next(iter(inspect_logs.parent.glob("records*/a/samples.jsonl"))))[0]
                sync_api.expect(page.get_by_text(first.item_id, exact=True).first).to_be_visible()
                page.get_by_text(re.compile(r"^info$", re.IGNORECASE)).first.click()  # the task configuration, metadata
                page.wait_for_timeout(500)
                assert CREDENTIAL not in page.content()
                page.screenshot(path=str(tmp_path / "inspect-view.png"))
                assert errors == []
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_lm_eval_export_reads_back_with_lm_eval_helpers(two_runs, tmp_path):
    utils = pytest.importorskip("lm_eval.utils", reason="lm-eval is a dev dependency (make install-dev)")
    r = run_cli("export", str(two_runs[0]), "--to", "lm-eval", "--out", str(tmp_path))
    assert r.code == 0, r.err
    files = [str(p) for p in tmp_path.rglob("*") if p.is_file()]
    (results_file,) = utils.get_results_filenames(files)
    sample_files = utils.get_sample_results_filenames(files)
    tasks = sorted(utils.get_file_task_name(Path(f).name) for f in sample_files)
    assert tasks == ["ifeval", "mmlu"]
    stamp = Path(results_file).stem.removeprefix("results_")
    assert {utils.get_file_datetime(Path(f).name) for f in sample_files} == {stamp}
    assert Path(results_file).parent.name == utils.sanitize_model_name("stub-model")
    agg = json.loads(Path(results_file).read_text())
    res = read_results(two_runs[0] / "results.json")
    assert agg["results"]["mmlu"]["acc,none"] == res.evals["mmlu"].score
    ifeval = res.evals["ifeval"].metrics
    assert agg["results"]["ifeval"]["prompt_level_strict_acc,none"] == ifeval["prompt_strict"].value
    assert agg["results"]["ifeval"]["inst_level_loose_acc,none"] == ifeval["instruction_loose"].value
    assert agg["n-samples"]["mmlu"] == {"original": 12, "effective": 12}
    for f in sample_files:
        lines = [json.loads(x) for x in Path(f).read_text().splitlines()]
        assert len(lines) == 12 and [x["doc_id"] for x in lines] == list(range(12))


def test_export_errors_are_one_line(tmp_path, two_runs):
    r = run_cli("export", str(tmp_path), "--to", "inspect")
    assert r.code != 0 and len(r.err.strip().splitlines()) == 1 and "no results.json" in r.err
    r = run_cli("export", str(two_runs[0]), "--to", "helm", "--out", str(tmp_path / "x"))
    assert r.code != 0 and len(r.err.strip().splitlines()) == 1 and "inspect, lm-eval" in r.err


def test_header_values_are_recorded_only_for_allowlisted_headers():
    """A header given in a config file's [[endpoint]] headers: its value is recorded only when the header is on the
    allowlist (X-Credential matches no secret-looking name and is redacted all the same)."""
    from scorecheck.config import Endpoint, Resolved, RunConfig

    ep = Endpoint(base_url="http://127.0.0.1:1/v1", headers={"X-Credential": "c-1", "user-agent": "ua/1",
                                                             "Content-Type": "application/json", "X-Route": "blue"})  # fmt: skip
    described = RunConfigRecord.model_validate(
        Resolved(RunConfig(endpoints=[ep], model="m", evals=["mmlu"])).describe()
    )
    assert described.endpoints[0].headers == {"X-Credential": "***", "user-agent": "ua/1",
                                              "Content-Type": "application/json", "X-Route": "***"}  # fmt: skip


def test_timing_fields_go_to_timings_only():
    """Latency and HumanEval's sandbox seconds (nested in grade_info) leave the sample; the stored record is intact."""
    from scorecheck.results import split_timing

    stored = {"eval": "humaneval", "item_id": "HumanEval/0", "sample_index": 1, "status": "ok", "latency": 0.5,
              "grade_info": {"seconds": 0.25, "outcome": "passed"}}  # fmt: skip
    sample, timing = split_timing(stored)
    assert "latency" not in sample.model_dump() and sample.grade_info == {"outcome": "passed"}
    assert (timing.latency, timing.grade_seconds, timing.sample_index) == (0.5, 0.25, 1)
    assert stored["grade_info"]["seconds"] == 0.25 and stored["latency"] == 0.5
