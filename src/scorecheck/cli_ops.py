"""Operations commands: ``serve`` (vLLM, the embedded model), ``study``, ``remote`` (``cloud``: cli_cloud.py).

``register(app)`` adds them to the main Typer app (cli.py calls it), so these commands live apart from the
evaluation commands.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from scorecheck.errors import ScorecheckError, UsageError

err = Console(stderr=True)
out = Console()


def _fail(e: ScorecheckError) -> None:
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    raise typer.Exit(e.exit_code)


def _note(msg: str) -> None:
    err.print(msg, highlight=False, soft_wrap=True)


serve_app = typer.Typer(
    rich_markup_mode=None,
    help="Serve a model behind an OpenAI-compatible API until Ctrl-C: vLLM or the embedded model.",
)


def _raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _serve_until_stopped(spec, out_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from scorecheck.serving import ServerGroup, write_identity

    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGHUP, _raise_interrupt)
    group = ServerGroup(spec, out_dir, progress=_note)
    try:
        group.start()
        write_identity(out_dir / "server.json", group.identity())
        for u in group.base_urls:
            out.print(f"serving {spec.model_name} on {u} (log in {out_dir}/) — Ctrl-C stops it", soft_wrap=True)
        sys.stdout.flush()
        while True:
            group.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        _note("stopping the server …")
    except ScorecheckError as e:
        _fail(e)
    finally:
        group.stop()


def _refuse_api_key_arg(args: list[str], command: str) -> None:
    """vLLM's own --api-key would put the key on command lines (ssh's, vLLM's) where ps shows it."""
    if any(a == "--api-key" or a.startswith("--api-key=") for a in args):
        fix = " and give `remote --env VLLM_API_KEY`" if command.startswith("remote") else ""
        raise UsageError(f"{command}: vLLM's --api-key would be visible in ps: export VLLM_API_KEY instead{fix} (vLLM "
                         "reads it; scorecheck passes it in the server's environment)")  # fmt: skip


@serve_app.callback(invoke_without_command=True)
def serve_main(
    ctx: typer.Context,
    embedded: Annotated[
        bool, typer.Option("--embedded", help="Serve the embedded CPU model (= serve embedded).")
    ] = False,
    port: Annotated[int, typer.Option(help="Port to listen on (with --embedded).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind (with --embedded).")] = "127.0.0.1",
    parallel: Annotated[int, typer.Option(help="Parallel slots (with --embedded).")] = 4,
    ctx_tokens: Annotated[
        int, typer.Option("--ctx", envvar="SCORECHECK_SERVE_CTX", help="Context tokens per slot (with --embedded).")
    ] = 4096,
) -> None:
    """Serve a model behind an OpenAI-compatible API until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    if not embedded:
        _fail(UsageError("say what to serve: `scorecheck serve vllm MODEL` or `scorecheck serve embedded`"))
    from scorecheck.serving import ServerSpec

    _serve_until_stopped(ServerSpec(engine="embedded", port=port, host=host, parallel=parallel, ctx=ctx_tokens),
                         Path("runs/serve"))  # fmt: skip


@serve_app.command("embedded")
def serve_embedded(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    parallel: Annotated[int, typer.Option(help="Parallel slots.")] = 4,
    ctx_tokens: Annotated[
        int, typer.Option("--ctx", envvar="SCORECHECK_SERVE_EMBEDDED_CTX", help="Context tokens per slot.")
    ] = 4096,
    model_path: Annotated[
        Optional[str],
        typer.Option(metavar="FILE", show_default="the embedded SmolLM2-135M", help="A GGUF file to serve instead."),
    ] = None,
    out_dir: Annotated[
        Path,
        typer.Option("--out", envvar="SCORECHECK_SERVE_EMBEDDED_OUT", help="Serve directory: the log and server.json."),
    ] = Path("runs/serve"),
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait until the model is listed.")] = 120,
) -> None:
    """Serve the embedded CPU model (SmolLM2-135M via llama.cpp) until Ctrl-C."""
    from scorecheck.serving import ServerSpec

    spec = ServerSpec(engine="embedded", model=model_path, port=port, host=host, parallel=parallel, ctx=ctx_tokens,
                      ready_timeout=ready_timeout)  # fmt: skip
    _serve_until_stopped(spec, out_dir)


@serve_app.command("vllm")
def serve_vllm(
    model: Annotated[str, typer.Argument(help="Hugging Face model, e.g. glaiveai/Reflection-Llama-3.1-70B.")],
    extra: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="VLLM_ARG", help="After --: extra vLLM arguments, passed as given.", show_default=False),
    ] = None,
    tensor_parallel_size: Annotated[
        int, typer.Option("--tensor-parallel-size", "-tp", metavar="N", help="GPUs per server (vLLM's flag).")
    ] = 1,
    tp: Annotated[Optional[int], typer.Option("--tp", hidden=True, help="Deprecated: --tensor-parallel-size.")] = None,
    max_model_len: Annotated[
        Optional[int], typer.Option(metavar="N", show_default="the model's", help="Context length (vLLM's flag).")
    ] = None,
    gpu_memory_utilization: Annotated[
        Optional[float],
        typer.Option(
            metavar="F", show_default="vLLM's: 0.9", help="Share of each GPU's memory vLLM may use (vLLM's flag)."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Port to listen on (the seed: 5050).")] = 5050,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    docker: Annotated[
        Optional[str],
        typer.Option(
            metavar="IMAGE:TAG",
            show_default="native `vllm serve`",
            help="Run the vllm/vllm-openai image IMAGE:TAG ('default': the pinned version's).",
        ),
    ] = None,
    vllm_version: Annotated[str, typer.Option(help="The pinned vLLM version (checked, recorded).")] = "0.6.1.post2",
    served_model_name: Annotated[
        Optional[str],
        typer.Option(metavar="NAME", show_default="the model", help="Name the model is served under (vLLM's flag)."),
    ] = None,
    replicas: Annotated[
        int, typer.Option(help="Servers on this box, one per GPU group of --tensor-parallel-size GPUs.")
    ] = 1,
    out_dir: Annotated[
        Path,
        typer.Option("--out", envvar="SCORECHECK_SERVE_VLLM_OUT", help="Serve directory: the log and server.json."),
    ] = Path("runs/serve"),
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait until the model is listed.")] = 1800,
) -> None:
    """Start vLLM (native `vllm serve`, or its docker image), wait until it lists the model, serve until Ctrl-C.

    HF_TOKEN (gated models) and VLLM_API_KEY are passed to the server in its environment, never on its command
    line."""
    from scorecheck.serving import ServerSpec

    try:
        args = list(extra or [])
        _refuse_api_key_arg(args, "serve vllm")
        if tp is not None:
            _note("warning: --tp is deprecated: vLLM's name is --tensor-parallel-size (or -tp)")
            tensor_parallel_size = tp
        for flag, value in (("--max-model-len", max_model_len), ("--gpu-memory-utilization", gpu_memory_utilization)):
            if value is not None:
                args += [flag, str(value)]
        spec = ServerSpec(engine="vllm", model=model, tp=tensor_parallel_size, port=port, host=host, docker=docker,
                          version=vllm_version, args=args, replicas=replicas,
                          served_model_name=served_model_name, ready_timeout=ready_timeout)  # fmt: skip
    except ScorecheckError as e:
        _fail(e)
    _serve_until_stopped(spec, out_dir)


study_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="Studies: servers and configurations in one TOML file."
)


def _server_urls(values: list[str] | None) -> dict[str, list[str]]:
    urls: dict[str, list[str]] = {}
    for v in values or []:
        name, sep, url = v.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise UsageError(f"--server {v!r}: expected NAME=http://host:port/v1")
        urls.setdefault(name, []).append(url.rstrip("/"))
    return urls


# The options `study run` shares with `cloud node` (which runs a study on a cluster's head node).
StudyOnly = Annotated[
    Optional[list[str]],
    typer.Option("--only", metavar="NAME", show_default="all", help="Run only this configuration; repeatable."),
]
StudyLimit = Annotated[
    Optional[int],
    typer.Option(metavar="N", show_default="the file's", help="Subset per eval (a quick look, not the study)."),
]
StudyMaxTokens = Annotated[
    Optional[int], typer.Option(metavar="N", show_default="the file's", help="Override max_tokens.")
]
StudyConcurrency = Annotated[
    Optional[int], typer.Option(metavar="N", show_default="the file's", help="Requests in flight per configuration.")
]
StudyNoDocker = Annotated[
    bool, typer.Option("--no-docker", help="Native `vllm serve` instead of the servers' docker images (Vast.ai).")
]


def load_study(file: Path, out_dir: Path | None, no_docker: bool):  # type: ignore[no-untyped-def]
    """The study file with ``--out`` and ``--no-docker`` applied."""
    from scorecheck import study as st

    s = st.load(file)
    if out_dir is not None:
        s.out = out_dir
    if no_docker:
        for spec in s.servers.values():
            spec.docker = None
    return s


@study_app.command("run")
def study_run(
    file: Annotated[Path, typer.Argument(help="The study file, e.g. studies/demo.toml.")],
    only: StudyOnly = None,
    server: Annotated[
        Optional[list[str]],
        typer.Option(
            "--server",
            metavar="NAME=URL",
            show_default="start them",
            help="Use this running server instead of starting NAME; repeatable.",
        ),
    ] = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            envvar="SCORECHECK_STUDY_RUN_OUT",
            metavar="DIR",
            show_default="the file's `out`",
            help="Study directory.",
        ),
    ] = None,
    limit: StudyLimit = None,
    max_tokens: StudyMaxTokens = None,
    concurrency: StudyConcurrency = None,
    no_docker: StudyNoDocker = False,
) -> None:
    """Run a study: each server once, its configurations concurrently; run again to resume."""
    from scorecheck import study as st

    try:
        s = load_study(file, out_dir, no_docker)
        s.server_urls = _server_urls(server)
        unknown = set(s.server_urls) - set(s.servers)
        if unknown:
            raise UsageError(f"--server: no server named {', '.join(sorted(unknown))} in {file}")
        overrides = {"limit": limit, "max_tokens": max_tokens, "concurrency": concurrency}
    except ScorecheckError as e:
        _fail(e)
    run_study_to_the_end(s, lambda: st.run_study(s, overrides, only=only, note=_note))


def run_study_to_the_end(s, run) -> None:  # type: ignore[no-untyped-def]
    """``run()`` the study, then its table and report (when anything finished), and the exit with its code."""
    from scorecheck import study as st

    try:
        code = run()
    except KeyboardInterrupt:
        _note("interrupted: everything finished is kept; run the same command again to continue")
        raise typer.Exit(130) from None
    except ScorecheckError as e:
        _fail(e)
    if not st.collect_results(s):
        raise typer.Exit(code or 1)
    table = st.write_table(s)
    out.print(f"\n{s.name}\n\n{table}\n", highlight=False, soft_wrap=True)
    st.write_report(s, console=out)
    out.print(f"table in {s.out}/summary.md; the full report (intervals, paired tests, diagnostics, transcripts) in "
              f"{s.out}/report.html; runs in {s.out}/<configuration>/", highlight=False, soft_wrap=True)  # fmt: skip
    raise typer.Exit(code)


@study_app.command("table")
def study_table_cmd(file: Annotated[Path, typer.Argument(help="The study file.")]) -> None:
    """Print the study's table from the results so far."""
    from scorecheck import study as st

    try:
        s = st.load(file)
    except ScorecheckError as e:
        _fail(e)
    out.print(st.write_table(s), highlight=False, soft_wrap=True)


@study_app.command("check")
def study_check(file: Annotated[Path, typer.Argument(help="The study file.")]) -> None:
    """Check a study file and show its servers and configurations."""
    from scorecheck import study as st

    try:
        s = st.load(file)
    except ScorecheckError as e:
        _fail(e)
    for name, spec in s.servers.items():
        out.print(f"server {name}: {spec.engine} {spec.model_name} tp={spec.tp} replicas={spec.replicas}"
                  f" port={spec.port} version={spec.version} docker={spec.docker}", highlight=False)  # fmt: skip
    for c in s.configurations:
        out.print(f"configuration {c.name!r} on {c.server} → {s.run_dir(c)}: {s.run_values(c)}", highlight=False,
                  soft_wrap=True)  # fmt: skip


remote_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="A GPU box over SSH (OpenSSH: ~/.ssh/config, agents, -p ports)."
)


@remote_app.callback()
def remote_main(
    ctx: typer.Context,
    host: Annotated[
        Optional[str],
        typer.Option("--host", "-H", metavar="HOST", show_default="required", help="USER@HOST or an ssh-config alias."),
    ] = None,
    port: Annotated[
        Optional[int],
        typer.Option("--port", "-p", metavar="N", show_default="ssh's: 22 or the ssh config's", help="SSH port."),
    ] = None,
    identity: Annotated[
        Optional[str], typer.Option("--identity", "-i", metavar="FILE", show_default="ssh's", help="SSH key.")
    ] = None,
    ssh_config: Annotated[
        Optional[str],
        typer.Option(
            "--ssh-config",
            "-F",
            metavar="FILE",
            envvar="SCORECHECK_SSH_CONFIG",
            show_default="~/.ssh/config",
            help="ssh config file.",
        ),
    ] = None,
    option: Annotated[
        Optional[list[str]],
        typer.Option("--option", "-o", metavar="OPTION", show_default="none", help="ssh -o option; repeatable."),
    ] = None,
    env: Annotated[
        Optional[list[str]],
        typer.Option(
            "--env",
            metavar="VAR",
            show_default="HF_TOKEN, HUGGING_FACE_HUB_TOKEN, OPENAI_API_KEY when set",
            help="Give jobs this variable's value too (sent like secrets, on stdin); repeatable.",
        ),
    ] = None,
) -> None:
    """Drive a GPU box over SSH: setup, up, run, status, logs, attach, fetch, down."""
    ctx.obj = dict(host=host, port=port, identity=identity, ssh_config=ssh_config, options=option, forward=env)


def _target(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from scorecheck.remote import Target

    try:
        return Target.from_env(**ctx.obj)
    except ScorecheckError as e:
        _fail(e)


@remote_app.command("setup")
def remote_setup(
    ctx: typer.Context,
    engine: Annotated[str, typer.Option(help="embedded, vllm, or none (serving from the docker image).")] = "vllm",
    vllm_version: Annotated[
        Optional[str], typer.Option(metavar="VERSION", show_default="0.6.1.post2", help="vLLM to install.")
    ] = None,
    pip_args: Annotated[
        str,
        typer.Option(
            metavar="ARGS", show_default="none", help="Extra pip arguments on the box (e.g. --find-links DIR)."
        ),
    ] = "",
) -> None:
    """Install this scorecheck (as a wheel) and the serving engine on the box; idempotent; reports its GPUs."""
    from scorecheck import remote

    try:
        remote.setup(_target(ctx), engine, vllm_version, pip_args, note=_note)
    except ScorecheckError as e:
        _fail(e)


@remote_app.command("up", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def remote_up(ctx: typer.Context) -> None:
    """Start `scorecheck serve ARGS` on the box, detached (e.g. `remote up vllm MODEL -tp 4 --port 5050`)."""
    from scorecheck import remote

    try:
        _refuse_api_key_arg(list(ctx.args), "remote up")
        t = _target(ctx)
        job = remote.up(t, list(ctx.args))
        _wait_server_ready(t, job)
    except ScorecheckError as e:
        _fail(e)


def _wait_server_ready(t, job, timeout: float = 3600) -> None:  # type: ignore[no-untyped-def]
    from scorecheck.remote import REMOTE_HOME, RemoteError

    if job.get("already_running"):
        _note(f"server already running on {t.host} (pid {job['pid']})")
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # only this job's part of the log: an earlier server of the same name said "serving" on another port
        log = f"~/{REMOTE_HOME}/logs/{job['name']}.log"
        p = t.ssh(f"tail -c +{int(job.get('log_offset', 0)) + 1} {log} | grep -m1 '^serving ' || true", check=False,
                  timeout=60)  # fmt: skip
        line = p.stdout.decode(errors="replace").strip()
        if line:
            out.print(f"{t.host}: {line}", highlight=False, soft_wrap=True)
            return
        jobs = {j["name"]: j for j in t.agent("jobs")}
        if not jobs.get(job["name"], {}).get("alive"):
            tail = t.ssh(f"tail -n 8 ~/{REMOTE_HOME}/logs/{job['name']}.log", check=False).stdout.decode(
                errors="replace"
            )
            raise RemoteError(f"the server on {t.host} exited: {' | '.join(tail.strip().splitlines())}")
        time.sleep(2)
    raise RemoteError(f"the server on {t.host} was not ready after {timeout:.0f}s; `scorecheck remote logs` shows why")


@remote_app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def remote_run(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The study file (shipped to the box).")],
    detach: Annotated[bool, typer.Option("--detach", help="Start it and return; do not follow the log.")] = False,
    from_here: Annotated[
        bool, typer.Option("--from-here", help="Run the study here, against the box's server through an SSH forward.")
    ] = False,
    remote_port: Annotated[int, typer.Option(help="With --from-here: the server's port on the box.")] = 5050,
) -> None:
    """Run a study on the box, detached (it survives disconnects); run again after any interruption to resume.

    Arguments after the file go to `scorecheck study run` (e.g. --limit 2)."""
    from scorecheck import remote

    try:
        t = _target(ctx)
        if from_here:
            raise typer.Exit(_run_from_here(t, file, remote_port, list(ctx.args)))
        job = remote.run_detached(t, file, list(ctx.args))
        if job.get("already_running"):
            _note(f"{job['name']} is already running on {t.host} (pid {job['pid']}); following it")
        else:
            _note(f"started {job['name']} on {t.host} (pid {job['pid']}); a cut connection does not stop it")
        if detach:
            return
        code = remote.wait_job(t, job["name"], note=_note)
    except ScorecheckError as e:
        _fail(e)
    raise typer.Exit(code)


def _run_from_here(t, file: Path, remote_port: int, study_args: list[str]) -> int:  # type: ignore[no-untyped-def]
    """`scorecheck study run FILE ARGS` here, each of the study's servers pointing at the box's server through an
    SSH port forward: every `study run` argument (--out, --only, --limit, ...) works as it does there."""
    import subprocess

    from scorecheck import remote
    from scorecheck import study as st
    from scorecheck.serving import free_port

    s = st.load(file)  # checked before the forward opens
    local = free_port()
    fwd = remote.tunnel(t, local, remote_port)
    _note(f"forwarding 127.0.0.1:{local} to port {remote_port} on {t.host}")
    try:
        urls = [a for name in s.servers for a in ("--server", f"{name}=http://127.0.0.1:{local}/v1")]
        return subprocess.call([sys.executable, "-m", "scorecheck", "study", "run", str(file), *study_args, *urls])
    except KeyboardInterrupt:
        return 130
    finally:
        fwd.terminate()
        fwd.wait(10)


@remote_app.command("status")
def remote_status(ctx: typer.Context) -> None:
    """The box's scorecheck, GPUs and jobs."""
    from scorecheck import remote

    try:
        st = remote.status(_target(ctx))
    except ScorecheckError as e:
        _fail(e)
    i = st["info"]
    out.print(f"scorecheck {i['scorecheck']}, Python {i['python']}, vLLM {i['vllm']}, {len(i['gpus'])} GPU(s)")
    for j in st["jobs"]:
        state = "running" if j["alive"] else f"ended (exit {j['exit_code']})"
        out.print(f"{j['name']}: {state}, pid {j['pid']}, log {j['log']}", highlight=False, soft_wrap=True)


@remote_app.command("logs")
def remote_logs(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Job name (see `remote status`).")] = "server",
    lines: Annotated[int, typer.Option("-n", help="Lines.")] = 50,
) -> None:
    """The last lines of a job's log."""
    from scorecheck.remote import REMOTE_HOME

    try:
        p = _target(ctx).ssh(f"tail -n {int(lines)} ~/{REMOTE_HOME}/logs/{name}.log")
    except ScorecheckError as e:
        _fail(e)
    sys.stdout.write(p.stdout.decode(errors="replace"))


@remote_app.command("attach")
def remote_attach(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Job name (see `remote status`).")] = "server"
) -> None:
    """Follow a job's log until the job ends, exiting with its exit code (Ctrl-C detaches; the job goes on)."""
    from scorecheck import remote

    try:
        code = remote.wait_job(_target(ctx), name, note=_note)
    except KeyboardInterrupt:
        _note(f"detached; {name} goes on (`scorecheck remote status` shows it)")
        raise typer.Exit(130) from None
    except ScorecheckError as e:
        _fail(e)
    raise typer.Exit(code)


@remote_app.command("fetch")
def remote_fetch(
    ctx: typer.Context,
    to: Annotated[Path, typer.Option("--to", help="Local directory for the box's runs/.")] = Path("runs/remote"),
) -> None:
    """Copy the box's run directories here; only what changed since the last fetch."""
    from scorecheck import remote

    try:
        got = remote.fetch(_target(ctx), to)
    except ScorecheckError as e:
        _fail(e)
    out.print(f"{len(got)} file(s) copied into {to}/", highlight=False)


@remote_app.command("down")
def remote_down(
    ctx: typer.Context,
    names: Annotated[
        Optional[list[str]], typer.Argument(metavar="JOB", help="Jobs to stop [all].", show_default=False)
    ] = None,
) -> None:
    """Stop jobs on the box (a study saves what finished, then stops its servers)."""
    from scorecheck import remote

    try:
        res = remote.down(_target(ctx), names)
    except ScorecheckError as e:
        _fail(e)
    stopped = [r["name"] for r in res if r.get("stopped")]
    out.print(f"stopped: {', '.join(stopped) or 'nothing was running'}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the operations commands to ``app``."""
    app.add_typer(serve_app, name="serve")
    app.add_typer(study_app, name="study")
    app.add_typer(remote_app, name="remote")
