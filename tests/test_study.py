"""Studies: loading and checking study files, the table, and the demo study end to end on the embedded model
(one server shared by two configurations, the server killed mid-run, the study run again: it resumes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scorecheck import study as st
from scorecheck.errors import UsageError
from scorecheck.results import read_config, read_results, read_samples

ROOT = Path(__file__).resolve().parent.parent


def test_reflection_study_is_the_seeds_three_columns():
    s = st.load(ROOT / "studies" / "reflection-70b.toml")
    assert [c.name for c in s.configurations] == [
        "Reflection 70B",
        "Llama 3.1 70B (reflection prompt)",
        "Llama 3.1 70B",
    ]
    got = [(s.servers[c.server].model, c.options["system_prompt"], c.options["reasoning"]) for c in s.configurations]
    assert got == [("glaiveai/Reflection-Llama-3.1-70B", "reflection", "reflection"),
                   ("meta-llama/Meta-Llama-3.1-70B-Instruct", "reflection", "reflection"),
                   ("meta-llama/Meta-Llama-3.1-70B-Instruct", "default", "reflection")]  # fmt: skip
    for spec in s.servers.values():
        assert (spec.engine, spec.tp, spec.port, spec.version) == ("vllm", 4, 5050, "0.6.1.post2")
    v = s.run_values(s.configurations[0])
    assert (v["temperature"], v["max_tokens"], v["protocol"], v.get("limit")) == (0.0, 6000, "glaive-2024", None)
    assert v["evals"] == ["mmlu", "gpqa", "humaneval", "math", "gsm8k", "ifeval"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


SERVER = '[[server]]\nname = "e"\nengine = "embedded"\n'


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (SERVER + '[[configuration]]\nname = "a"\nserver = "nope"\n', "server 'nope' is not one of e"),
        (SERVER + '[[configuration]]\nname = "a"\nmodel = "x"\n', "model come from the server"),
        (SERVER + '[[configuration]]\nname = "a"\ntemprature = 0\n', "temprature: unknown key"),
        ('[[server]]\nengine = "tgi"\n[[configuration]]\nname = "a"\n', "unknown engine 'tgi'"),
        (SERVER + '[[configuration]]\nname = "A b"\n[[configuration]]\nname = "a-B"\n', "must differ"),
    ],
)
def test_bad_study_files_are_one_line_errors(tmp_path, body, match):
    with pytest.raises(UsageError, match=match):
        st.load(_write(tmp_path, body))


def test_unknown_eval_fails_before_any_server_starts(tmp_path, cli):
    p = _write(tmp_path, SERVER + '[run]\nevals = ["mmlu", "nosuch"]\n[[configuration]]\nname = "a"\n')
    st.load(p)  # eval names are checked lazily: a study may name evals this install does not have yet
    r = cli("study", "run", str(p), "--out", str(tmp_path / "out"), timeout=60)
    assert r.code == 2 and "unknown eval 'nosuch'" in r.err and "starting" not in r.err and r.seconds < 30


def test_table_is_benchmarks_by_configurations_to_4_decimals():
    res = {"A": {"evals": {"gsm8k": {"score": 0.9446550416}, "mmlu": {"score": 0.9227}}},
           "B": {"evals": {"mmlu": {"score": 0.8}, "gpqa_main": {"score": None}}}}  # fmt: skip
    assert st.study_table(res).splitlines() == [
        "| benchmark | A | B |", "|---|---:|---:|", "| mmlu | 0.9227 | 0.8000 |", "| gpqa_main | — | — |",
        "| gsm8k | 0.9447 | — |",
    ]  # fmt: skip


def _port_closed(url: str) -> bool:
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


@pytest.mark.slow
def test_demo_study_end_to_end_with_a_crash_and_resume(tmp_path, data_dir):
    out = tmp_path / "study"
    args = [sys.executable, "-m", "scorecheck", "study", "run", str(ROOT / "studies" / "demo.toml"), "--out", str(out),
            "--limit", "2", "--max-tokens", "16"]  # fmt: skip
    # 1: the server is killed mid-run: the study says so, with the server's log, and keeps what finished
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    ident = out / "reflection-prompt" / "server.json"
    deadline = time.monotonic() + 120
    while not ident.is_file() and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.2)
    pid = json.loads(ident.read_text())[0]["pid"]
    time.sleep(1)
    os.killpg(pid, signal.SIGKILL)
    _, err1 = p.communicate(timeout=120)
    assert p.returncode != 0 and "died with exit code -9" in err1 and "run the same command to resume" in err1, err1
    state = json.loads((out / "study.json").read_text())
    assert {v["status"] for v in state.values()} <= {"interrupted", "aborted", "failed", "incomplete"}
    # 2: the same command: both configurations finish against one server, and the seed-shaped table
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=500)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("starting embedded") == 1 and r.stderr.count(": done (exit 0)") == 2
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("|")]
    assert lines[0] == "| benchmark | reflection prompt | default prompt |"
    assert [ln.split("|")[1].strip() for ln in lines[2:]] == ["mmlu", "gpqa_main", "gsm8k"]
    assert all(len(c.strip().split(".")[-1]) == 4 for ln in lines[2:] for c in ln.split("|")[2:4])
    for slug in ("reflection-prompt", "default-prompt"):
        res = json.loads((out / slug / "results.json").read_text())
        assert all(e["n"] == 2 for e in res["evals"].values())
        # every record the study's runs wrote validates against the record models
        assert read_results(out / slug / "results.json").evals["mmlu"].n == 2
        assert len(read_samples(out / slug / "samples.jsonl")) == 6 and read_config(out / slug / "config.json")
        srv = json.loads((out / slug / "server.json").read_text())[0]
        assert srv["engine"] == "embedded" and srv["engine_version"] and srv["command"]
    assert _port_closed(srv["base_url"])
    assert (out / "servers" / "embedded.log").read_text().strip()
    # the study ends with the compare report: both configurations, paired, in every format
    html = (out / "report.html").read_text()
    assert "reflection prompt" in html and "default prompt" in html
    assert (out / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert "reflection prompt" in json.dumps(report) and "paired" in json.dumps(report).lower()
    # and with the study's references, audit's verdicts: the demo caps max_tokens, so no claim is comparable
    findings = json.loads((out / "audit.json").read_text())["findings"]
    assert findings and {f["verdict"] for f in findings} == {"not comparable"}
    assert all("max_tokens 16" in " ".join(f["reasons"]) for f in findings)
    assert "**not comparable**" in (out / "audit.md").read_text()
    # 3: again: nothing to do, no server started
    r = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "starting" not in r.stderr and r.stderr.count("skipped") == 2
