"""``scorecheck cloud``: write (and launch) a SkyPilot task for a study, ``cloud fetch CLUSTER``, and ``cloud node``
(what the task runs on each node). ``scorecheck cloud STUDY`` is ``scorecheck cloud task STUDY``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from scorecheck.cli_ops import (
    StudyConcurrency,
    StudyLimit,
    StudyMaxTokens,
    StudyNoDocker,
    StudyOnly,
    _fail,
    _note,
    load_study,
    out,
    run_study_to_the_end,
)
from scorecheck.errors import ScorecheckError, UsageError

if TYPE_CHECKING:
    # typer carries its own copy of click: TyperGroup.parse_args is given typer's click Context, not click's.
    from typer import _click


class _TaskByDefault(TyperGroup):
    """``cloud STUDY ...`` runs ``cloud task STUDY ...``: a first argument that is no subcommand is a study file."""

    def parse_args(self, ctx: _click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["task", *args]
        return super().parse_args(ctx, args)


cloud_app = typer.Typer(cls=_TaskByDefault, no_args_is_help=True,
                        help="A SkyPilot task for a study (any SkyPilot cloud, Vast.ai included; one node or several), "
                        "and its results brought home. `scorecheck cloud STUDY ...` is `scorecheck cloud task STUDY ...`.")  # fmt: skip


@cloud_app.command("task")
def cloud_task(
    file: Annotated[Path, typer.Argument(help="The study file (anywhere: it is copied into the task's workdir).")],
    study_args: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="STUDY_RUN_ARG", help="After --: arguments for `study run`.", show_default=False),
    ] = None,
    accelerators: Annotated[
        Optional[str],
        typer.Option(
            metavar="GPU:N",
            show_default="H100:<the study's tp x replicas>",
            help="SkyPilot accelerators per node, e.g. H100:4.",
        ),
    ] = None,
    infra: Annotated[
        Optional[str],
        typer.Option(
            metavar="INFRA",
            show_default="SkyPilot's choice",
            help="SkyPilot infra: vast, aws, gcp/us-central1, runpod, ...",
        ),
    ] = None,
    disk_size: Annotated[int, typer.Option(metavar="GB", help="Disk in GB per node (two 70B models need ~300).")] = 512,
    docker: Annotated[
        Optional[bool],
        typer.Option(
            "--docker/--no-docker",
            show_default="native on vast, docker elsewhere",
            help="vLLM from the servers' docker images, or natively.",
        ),
    ] = None,
    num_nodes: Annotated[
        Optional[int],
        typer.Option(metavar="N", show_default="the study's largest num_nodes", help="Nodes, each serving a replica."),
    ] = None,
    idle_minutes: Annotated[
        int,
        typer.Option(
            metavar="MIN",
            help="SkyPilot autostop: stop the cluster after this many idle minutes (with --down: tear it down).",
        ),
    ] = 30,
    down: Annotated[
        bool, typer.Option("--down", help="Tear the cluster down: after --launch fetched the results, and at autostop.")
    ] = False,
    task_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            envvar="SCORECHECK_CLOUD_TASK_OUT",
            metavar="DIR",
            show_default="scorecheck-<study>",
            help="The task directory.",
        ),
    ] = None,
    launch: Annotated[
        bool,
        typer.Option(
            "--launch", help="Then `sky launch` it (the logs stream here), fetch the results, and with --down end it."
        ),
    ] = False,
    cluster: Annotated[
        Optional[str],
        typer.Option(metavar="NAME", show_default="scorecheck-<study>", help="The SkyPilot cluster name."),
    ] = None,
    fetch_to: Annotated[
        Path, typer.Option(metavar="DIR", help="With --launch: where the run directories land.")
    ] = Path("runs"),
) -> None:
    """Write a SkyPilot task directory (task.yaml, and a workdir with this scorecheck's wheel and the study file)."""
    from scorecheck import cloud as cl
    from scorecheck import remote

    try:
        if num_nodes is not None and num_nodes < 1:
            raise UsageError(f"--num-nodes {num_nodes}: at least 1")
        try:
            remote.source_root()
            build = True
        except UsageError:
            build = False
            _note("no scorecheck source checkout here: the task installs scorecheck of this version from PyPI")
        td = cl.write_task(file, task_dir, build=build, accelerators=accelerators, infra=infra, disk_size=disk_size,
                           study_args=list(study_args or []), docker=docker, num_nodes=num_nodes,
                           idle_minutes=idle_minutes, down=down)  # fmt: skip
        t = td.task
        out.print(f"wrote {td.yaml} ({t.get('num_nodes', 1)} node(s), {t['resources']}); launch: "
                  f"sky launch -c {cluster or td.cluster} --secret HF_TOKEN {td.yaml}", highlight=False, soft_wrap=True)  # fmt: skip
        if launch:
            raise typer.Exit(cl.launch(td.yaml, cluster or td.cluster, fetch_to, down=down, note=_note))
    except ScorecheckError as e:
        _fail(e)


@cloud_app.command("fetch")
def cloud_fetch(
    cluster: Annotated[str, typer.Argument(help="The SkyPilot cluster (its SSH alias, as `ssh CLUSTER`).")],
    to: Annotated[
        Path, typer.Option("--to", metavar="DIR", help="Local directory for the head node's ~/scorecheck/runs.")
    ] = Path("runs"),
) -> None:
    """Copy the cluster's run directories here; only what changed since the last fetch (a cut-off fetch resumes)."""
    from scorecheck import cloud as cl

    try:
        got = cl.fetch(cluster, to, note=_note)
    except ScorecheckError as e:
        _fail(e)
    out.print(f"{len(got)} file(s) copied into {to}/", highlight=False)


@cloud_app.command("node")
def cloud_node(
    file: Annotated[Path, typer.Argument(help="The study file.")],
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", metavar="DIR", show_default="the file's `out`", help="Study directory.")
    ] = None,
    agent_port: Annotated[int, typer.Option(metavar="PORT", help="The workers' agent port.")] = 8079,  # AGENT_PORT
    only: StudyOnly = None,
    limit: StudyLimit = None,
    max_tokens: StudyMaxTokens = None,
    concurrency: StudyConcurrency = None,
    no_docker: StudyNoDocker = False,
) -> None:
    """On each node of a multi-node task (SKYPILOT_NODE_RANK, SKYPILOT_NODE_IPS): the head runs the study over every
    node's replica; a worker serves what the head asks for."""
    from scorecheck import cloud as cl

    try:
        s = load_study(file, out_dir, no_docker)
        rank, ips = cl.node_ips()
        if rank > 0:
            raise typer.Exit(cl.NodeAgent(s, ips[rank], agent_port, note=_note).run())
        overrides: dict[str, Any] = {"limit": limit, "max_tokens": max_tokens, "concurrency": concurrency}
    except ScorecheckError as e:
        _fail(e)
    run_study_to_the_end(s, lambda: cl.run_head(s, ips, agent_port, overrides, only=only, note=_note))


def register(app: typer.Typer) -> None:
    app.add_typer(cloud_app, name="cloud")
