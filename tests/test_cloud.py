"""``scorecheck cloud``: the SkyPilot task for a study, checked by SkyPilot's own loader when SkyPilot is installed
(the ``cloud`` extra; or a Python with it in ``SCORECHECK_SKYPILOT_PYTHON``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from scorecheck import cloud, study

ROOT = Path(__file__).resolve().parent.parent


def _validate_with_skypilot(path: Path) -> None:
    try:
        import sky  # noqa: F401
    except ImportError:
        py = os.environ.get("SCORECHECK_SKYPILOT_PYTHON")
        if not py:
            pytest.skip("SkyPilot not installed (pip install 'scorecheck[cloud]')")
        p = subprocess.run([py, "-c", f"import sky; t = sky.Task.from_yaml({str(path)!r}); print(t.resources)"],
                           capture_output=True, text=True, timeout=300)  # fmt: skip
        assert p.returncode == 0, p.stderr[-2000:]
        return
    cloud.validate(path)


@pytest.mark.parametrize(("name", "args"), [("reflection-70b", ["--infra", "vast"]), ("demo", [])])
def test_cloud_task_for_each_shipped_study_loads_in_skypilot(cli, tmp_path, name, args):
    out = tmp_path / f"{name}.yaml"
    r = cli("cloud", f"studies/{name}.toml", "--out", str(out), *args, cwd=ROOT)
    assert r.code == 0, r.err
    text = out.read_text()
    assert "HF_TOKEN" in text and "scorecheck study run studies/" in text
    if name == "reflection-70b":
        assert "H100:4" in text and "vast" in text
    _validate_with_skypilot(out)


def test_cloud_checks_gpus_and_keeps_secrets_out(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_cloud_secret")
    s = study.load(ROOT / "studies" / "reflection-70b.toml")
    t = cloud.task(s, "studies/reflection-70b.toml")
    assert t["resources"]["accelerators"] == "H100:4" and t["secrets"] == {"HF_TOKEN": None}
    assert "hf_cloud_secret" not in cloud.dump(t)
    with pytest.raises(Exception, match="need 4 GPUs"):
        cloud.task(s, "studies/reflection-70b.toml", accelerators="A100:2")


def test_cloud_on_vast_runs_vllm_natively_unless_told(cli, tmp_path):
    """Vast.ai containers rarely run docker: with --infra vast the task installs the pinned vLLM and runs
    `study run --no-docker`, saying so in a comment; --docker keeps the images; other clouds keep them by default."""
    out = tmp_path / "vast.yaml"
    r = cli(
        "cloud", "studies/reflection-70b.toml", "--infra", "vast", "--out", str(out), "--", "--limit", "2", cwd=ROOT
    )
    assert r.code == 0, r.err
    text = out.read_text()
    assert "# Vast.ai containers rarely run docker: vLLM runs natively" in text  # in run; a header comment as well
    if text.startswith("#"):  # YAML (PyYAML present; without it the task is JSON, which has no comments)
        assert text.splitlines()[1].startswith("# Vast.ai containers rarely run docker")
    s = study.load(ROOT / "studies" / "reflection-70b.toml")
    t = cloud.task(s, "studies/reflection-70b.toml", infra="vast", study_args=["--limit", "2"])
    assert t["run"].rstrip().endswith("scorecheck study run studies/reflection-70b.toml --limit 2 --no-docker")
    assert "pip install -q 'vllm==0.6.1.post2'" in t["setup"]
    _validate_with_skypilot(out)
    for kwargs in ({"infra": "vast", "docker": True}, {"infra": "aws"}):
        t = cloud.task(s, "studies/reflection-70b.toml", **kwargs)  # type: ignore[arg-type]
        assert "--no-docker" not in t["run"] and "vllm==" not in t["setup"] and "Vast.ai" not in cloud.dump(t)
    t = cloud.task(s, "studies/reflection-70b.toml", infra="aws", docker=False)
    assert t["run"].rstrip().endswith("--no-docker") and "vllm==" in t["setup"]
    # no vLLM server (the embedded demo): nothing to say about docker
    t = cloud.task(study.load(ROOT / "studies" / "demo.toml"), "studies/demo.toml", infra="vast")
    assert "--no-docker" not in t["run"]
