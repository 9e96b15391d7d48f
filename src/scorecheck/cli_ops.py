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


def register(app: typer.Typer) -> None:
    """Add the operations commands to ``app``."""
    app.add_typer(serve_app, name="serve")
