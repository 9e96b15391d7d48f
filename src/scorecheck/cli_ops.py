"""Operations commands: ``serve`` (vLLM, the embedded model), ``study``, ``remote``, ``cloud``.

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

from scorecheck.errors import ScorecheckError, UsageError

err = Console(stderr=True)
out = Console()


def _fail(e: ScorecheckError) -> None:
    err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
    raise typer.Exit(e.exit_code)


def _note(msg: str) -> None:
    err.print(msg, highlight=False, soft_wrap=True)


serve_app = typer.Typer(help="Serve a model behind an OpenAI-compatible API until Ctrl-C: vLLM or the embedded model.")


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


@serve_app.callback(invoke_without_command=True)
def serve_main(
    ctx: typer.Context,
    embedded: Annotated[
        bool, typer.Option("--embedded", help="Serve the embedded CPU model (= serve embedded).")
    ] = False,
    port: Annotated[int, typer.Option(help="Port to listen on (with --embedded).")] = 8080,
    host: Annotated[str, typer.Option(help="Address to bind (with --embedded).")] = "127.0.0.1",
    parallel: Annotated[int, typer.Option(help="Parallel slots (with --embedded).")] = 4,
    ctx_tokens: Annotated[int, typer.Option("--ctx", help="Context tokens per slot (with --embedded).")] = 4096,
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
    ctx_tokens: Annotated[int, typer.Option("--ctx", help="Context tokens per slot.")] = 4096,
    model_path: Annotated[Optional[str], typer.Option(help="A GGUF file instead of the embedded SmolLM2.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Serve directory: the log and server.json.")] = Path(
        "runs/serve"
    ),
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
        Optional[list[str]], typer.Argument(help="After --: extra vLLM arguments, passed as given.")
    ] = None,
    tp: Annotated[int, typer.Option("--tp", help="Tensor-parallel size (GPUs per server).")] = 1,
    port: Annotated[int, typer.Option(help="Port to listen on (the seed: 5050).")] = 5050,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    docker: Annotated[
        Optional[str], typer.Option(help="Run the vllm/vllm-openai image IMAGE:TAG ('default': the pinned version).")
    ] = None,
    vllm_version: Annotated[str, typer.Option(help="The pinned vLLM version (checked, recorded).")] = "0.6.1.post2",
    served_model_name: Annotated[Optional[str], typer.Option(help="Name the model is served under.")] = None,
    replicas: Annotated[int, typer.Option(help="Servers on this box, one per GPU group of --tp GPUs.")] = 1,
    out_dir: Annotated[Path, typer.Option("--out", help="Serve directory: the log and server.json.")] = Path(
        "runs/serve"
    ),
    ready_timeout: Annotated[float, typer.Option(help="Seconds to wait until the model is listed.")] = 1800,
) -> None:
    """Start vLLM (native `vllm serve`, or its docker image), wait until it lists the model, serve until Ctrl-C.

    HF_TOKEN (gated models) is passed to the server in its environment, never on its command line."""
    from scorecheck.serving import ServerSpec

    try:
        spec = ServerSpec(engine="vllm", model=model, tp=tp, port=port, host=host, docker=docker,
                          version=vllm_version, args=list(extra or []), replicas=replicas,
                          served_model_name=served_model_name, ready_timeout=ready_timeout)  # fmt: skip
    except ScorecheckError as e:
        _fail(e)
    _serve_until_stopped(spec, out_dir)


study_app = typer.Typer(no_args_is_help=True, help="Studies: servers and configurations in one TOML file.")


def _server_urls(values: list[str] | None) -> dict[str, list[str]]:
    urls: dict[str, list[str]] = {}
    for v in values or []:
        name, sep, url = v.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise UsageError(f"--server {v!r}: expected NAME=http://host:port/v1")
        urls.setdefault(name, []).append(url.rstrip("/"))
    return urls


@study_app.command("run")
def study_run(
    file: Annotated[Path, typer.Argument(help="The study file, e.g. studies/demo.toml.")],
    only: Annotated[
        Optional[list[str]], typer.Option("--only", help="Run only this configuration; repeatable.")
    ] = None,
    server: Annotated[
        Optional[list[str]],
        typer.Option("--server", help="NAME=URL: use this running server instead of starting NAME; repeatable."),
    ] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Study directory [the file's `out`].")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Subset per eval (a quick look, not the study).")] = None,
    max_tokens: Annotated[Optional[int], typer.Option(help="Override max_tokens.")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Requests in flight per configuration.")] = None,
) -> None:
    """Run a study: each server once, its configurations concurrently; run again to resume."""
    from scorecheck import study as st

    try:
        s = st.load(file)
        if out_dir is not None:
            s.out = out_dir
        s.server_urls = _server_urls(server)
        unknown = set(s.server_urls) - set(s.servers)
        if unknown:
            raise UsageError(f"--server: no server named {', '.join(sorted(unknown))} in {file}")
        overrides = {"limit": limit, "max_tokens": max_tokens, "concurrency": concurrency}
        code = st.run_study(s, overrides, only=only, note=_note)
    except KeyboardInterrupt:
        _note("interrupted: everything finished is kept; run the same command again to continue")
        raise typer.Exit(130) from None
    except ScorecheckError as e:
        _fail(e)
    if not st.collect_results(s):
        raise typer.Exit(code or 1)
    table = st.write_table(s)
    out.print(f"\n{s.name}\n\n{table}\n", highlight=False, soft_wrap=True)
    out.print(f"table in {s.out}/summary.md; runs in {s.out}/<configuration>/", highlight=False, soft_wrap=True)
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


def register(app: typer.Typer) -> None:
    """Add the operations commands to ``app``."""
    app.add_typer(serve_app, name="serve")
    app.add_typer(study_app, name="study")
