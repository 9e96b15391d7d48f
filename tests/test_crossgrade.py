"""`scorecheck regrade RUN_DIR --protocol P`: another protocol's grading of the stored responses, where P's requests
are byte-identical to the run's; refused (naming the fields) otherwise, or forced and marked with --force-scoring."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli
from recording_server import RecordingServer


def _samples(d: Path) -> dict[tuple[str, int], dict]:
    return {
        (s["item_id"], s["sample_index"]): s for s in map(json.loads, (d / "samples.jsonl").read_text().splitlines())
    }


def _only(run_dir: Path, prefix: str) -> Path:
    (d,) = [p for p in run_dir.iterdir() if p.name.startswith(prefix)]
    return d


def test_ifeval_glaive_run_regraded_under_reference_equals_a_reference_run(tmp_path):
    g, ref = tmp_path / "glaive", tmp_path / "reference"
    with RecordingServer() as srv:  # the same answer to the same request, different answers to different prompts
        common = ("--base-url", srv.base_url, "--model", "rec-model", "--evals", "ifeval", "-q")
        r = run_cli("run", *common, "--system-prompt", "none", "--extra-body", "{}", "--out", str(g))
        assert r.code == 0, r.err
        r = run_cli("run", *common, "--protocol", "reference", "--out", str(ref))
        assert r.code == 0, r.err
    r = run_cli("regrade", str(g), "--protocol", "reference")
    assert r.code == 0, r.err
    assert "2785" in r.err and "user prompt" in r.err  # reported, not hidden
    out = _only(g, "regrade-reference-")
    regraded, fresh = _samples(out), _samples(ref)
    assert set(fresh) - set(regraded) == {("2785", 0)} and len(regraded) == 540
    for k, s in regraded.items():
        assert (s["score"], s["grade_info"]) == (fresh[k]["score"], fresh[k]["grade_info"]), k
    res = json.loads((out / "results.json").read_text())
    ev = res["evals"]["ifeval"]
    assert ev["checker"] == "reference" and res["protocol"]["name"] == "reference"
    assert ev["protocol"]["regrade"]["not_regradable_samples"] == [
        {"item_id": "2785", "sample_index": 0, "fields": ["user prompt"]}
    ]
    assert res["regrade"]["protocol"] == {"from": "glaive-2024", "to": "reference", "force_scoring": False}
    assert res["regrade"]["model_requests_sent"] == 0
    # the glaive run's own numbers are its checker's, untouched
    assert json.loads((g / "results.json").read_text())["evals"]["ifeval"]["checker"] == "glaive-2024"


def test_mmlu_glaive_run_under_simple_evals_is_refused_then_forced(tmp_path):
    run = tmp_path / "run"
    with RecordingServer(lambda body: (200, "**Answer:** B")) as srv:
        r = run_cli("run", "--base-url", srv.base_url, "--model", "rec-model", "--evals", "mmlu", "--limit", "4",
                    "--out", str(run), "-q")  # fmt: skip
        assert r.code == 0, r.err
        n_sent = len(srv.bodies)
        r = run_cli("regrade", str(run), "--protocol", "simple-evals")
        assert r.code != 0 and "refused" in r.err and "Traceback" not in r.err
        for field in ("user prompt", "temperature", "max_tokens", "skip_special_tokens"):
            assert field in r.err, field
        assert not any(p.name.startswith("regrade-") for p in run.iterdir())
        r = run_cli("regrade", str(run), "--protocol", "simple-evals", "--force-scoring")
        assert r.code == 0, r.err
        assert len(srv.bodies) == n_sent  # not a single request to the model
    before = _samples(run)
    assert all(s["extracted"] is None for s in before.values())  # glaive's regex does not see through the bold
    out = _only(run, "regrade-simple-evals-")
    after = _samples(out)
    assert set(after) == set(before)
    assert all(s["extracted"] == "B" and s["flags"]["forced_scoring"] for s in after.values())
    assert all("user prompt" in s["forced_fields"] for s in after.values())
    res = json.loads((out / "results.json").read_text())
    assert res["evals"]["mmlu"]["scoring_forced"] is True
    assert res["regrade"]["protocol"]["force_scoring"] is True
    assert res["evals"]["mmlu"]["protocol"]["regrade"]["forced"] == 4
    assert [s["prompt"] for s in after.values()] == [s["prompt"] for s in before.values()]  # what the model was asked
