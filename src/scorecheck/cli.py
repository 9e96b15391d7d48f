"""The ``scorecheck`` command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from scorecheck import __version__
from scorecheck.errors import ScorecheckError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Check published LLM benchmark numbers against any OpenAI-compatible endpoint.")  # fmt: skip
data_app = typer.Typer(no_args_is_help=True, help="Benchmark files: verify, fetch, locate.")
app.add_typer(data_app, name="data")

err = Console(stderr=True)
out = Console()


def _fail(e: ScorecheckError) -> None:
    err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
    raise typer.Exit(e.exit_code)


def _version(value: bool) -> None:
    if value:
        print(f"scorecheck {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


def _parse_headers(values: list[str] | None) -> dict[str, str]:
    out_h: dict[str, str] = {}
    for v in values or []:
        if ":" not in v:
            raise UsageError(f"--header {v!r}: expected 'Name: value'")
        k, val = v.split(":", 1)
        out_h[k.strip()] = val.strip()
    return out_h


def _parse_json(name: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as e:
        raise UsageError(f"{name}: not valid JSON ({e})") from None


GRADER_HELP = (
    "How MATH and GSM8K are graded: symbolic (math-verify), judge (the protocol's LLM judge), both [symbolic]."
)
SCORE_BY_HELP = "With --grader both: the grader that gives the score, symbolic or judge [symbolic]."
JUDGE_URL_HELP = "The judge's OpenAI-compatible endpoint [https://api.openai.com/v1]; 'embedded': the embedded model."
JUDGE_MODEL_HELP = "The judge model [the protocol's: gpt-4-turbo-preview]."
JUDGE_MAX_TOKENS_HELP = "Cap the judge's max_tokens [the protocol's: 1024] (recorded; changes the judge's requests)."
JUDGE_KEY_HELP = "Environment variable holding the judge's API key [OPENAI_API_KEY]."


@app.command()
def run(
    base_url: Annotated[
        Optional[list[str]],
        typer.Option(
            "--base-url",
            help="OpenAI-compatible endpoint, e.g. http://host:5050/v1; repeat for replicas. None: start the embedded model.",
        ),
    ] = None,
    model: Annotated[Optional[str], typer.Option(help="Model name as the endpoint serves it.")] = None,
    api_key: Annotated[
        Optional[str], typer.Option(help="API key (prefer --api-key-env: a flag is visible in ps).")
    ] = None,
    api_key_env: Annotated[
        Optional[str], typer.Option(help="Environment variable holding the API key [OPENAI_API_KEY].")
    ] = None,
    header: Annotated[
        Optional[list[str]], typer.Option("--header", help="Extra HTTP header 'Name: value'; repeatable.")
    ] = None,
    system_prompt: Annotated[
        Optional[str], typer.Option(help="Protocol prompt name (reflection, default), @file, or literal text.")
    ] = None,
    reasoning: Annotated[
        Optional[str], typer.Option(help="none, reflection, think, reasoning-field, tags:OPEN,CLOSE.")
    ] = None,
    protocol: Annotated[Optional[str], typer.Option(help="Protocol profile [glaive-2024].")] = None,
    evals: Annotated[
        Optional[str], typer.Option(help="Comma-separated, e.g. mmlu,gpqa,gsm8k,math (scorecheck evals lists them).")
    ] = None,
    limit: Annotated[Optional[int], typer.Option(help="Subset per eval, drawn as the fork draws it.")] = None,
    samples: Annotated[
        Optional[int], typer.Option("--samples", "--samples-per-task", help="Samples per item [1]; HumanEval: pass@k.")
    ] = None,
    temperature: Annotated[Optional[float], typer.Option()] = None,
    max_tokens: Annotated[Optional[int], typer.Option()] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    top_p: Annotated[Optional[float], typer.Option()] = None,
    stop: Annotated[Optional[list[str]], typer.Option("--stop", help="Stop sequence; repeatable.")] = None,
    extra_body: Annotated[
        Optional[str], typer.Option(help="JSON object merged into every request body (replaces the profile's).")
    ] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Requests in flight [128].")] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Per-request timeout in seconds [600].")] = None,
    max_retries: Annotated[Optional[int], typer.Option(help="Retries per request [6].")] = None,
    retry_wait: Annotated[
        Optional[float], typer.Option(help="First backoff in seconds, doubling per retry [1].")
    ] = None,
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Run directory [runs/latest].")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file; flags override it.")] = None,
    no_preflight: Annotated[bool, typer.Option("--no-preflight", help="Skip the test request before the run.")] = False,
    new_run: Annotated[
        bool,
        typer.Option("--new-run", help="--out holds a run of another configuration: move it aside, start over there."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    grader: Annotated[Optional[str], typer.Option(help=GRADER_HELP)] = None,
    score_by: Annotated[Optional[str], typer.Option(help=SCORE_BY_HELP)] = None,
    judge_url: Annotated[Optional[str], typer.Option(help=JUDGE_URL_HELP)] = None,
    judge_model: Annotated[Optional[str], typer.Option(help=JUDGE_MODEL_HELP)] = None,
    judge_api_key_env: Annotated[Optional[str], typer.Option(help=JUDGE_KEY_HELP)] = None,
    judge_max_tokens: Annotated[Optional[int], typer.Option(help=JUDGE_MAX_TOKENS_HELP)] = None,
) -> None:
    """Evaluate a model; the same command again resumes an interrupted run."""
    try:
        file_values = load_config_file(config)
        overrides: dict[str, Any] = dict(
            model=model, system_prompt=system_prompt, reasoning=reasoning, protocol=protocol, evals=evals,
            limit=limit, samples=samples, temperature=temperature, max_tokens=max_tokens, seed=seed, top_p=top_p,
            stop=stop or None, extra_body=_parse_json("--extra-body", extra_body), concurrency=concurrency,
            timeout=timeout, max_retries=max_retries, retry_wait=retry_wait, out=out_dir,
            preflight=False if no_preflight else None, grader=grader, score_by=score_by, judge_url=judge_url,
            judge_model=judge_model, judge_api_key_env=judge_api_key_env, judge_max_tokens=judge_max_tokens,
        )  # fmt: skip
        if base_url:
            headers = _parse_headers(header)
            overrides["endpoints"] = [
                {"base_url": u, "headers": headers, **({"api_key_env": api_key_env} if api_key_env else {})}
                for u in base_url
            ]
        from scorecheck import config as cfgmod

        cfg = cfgmod.build(file_values, overrides, origin=str(config) if config else "options")
        from scorecheck.session import execute

        code = execute(cfg, api_key=api_key, show_progress=not quiet, console=out, err=err, new_run=new_run)
    except ScorecheckError as e:
        _fail(e)
    raise typer.Exit(code)


@app.command()
def regrade(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (with store.sqlite and config.json).")],
    grader: Annotated[Optional[str], typer.Option(help=GRADER_HELP)] = None,
    score_by: Annotated[Optional[str], typer.Option(help=SCORE_BY_HELP)] = None,
    judge_url: Annotated[Optional[str], typer.Option(help=JUDGE_URL_HELP)] = None,
    judge_model: Annotated[Optional[str], typer.Option(help=JUDGE_MODEL_HELP)] = None,
    judge_api_key_env: Annotated[Optional[str], typer.Option(help=JUDGE_KEY_HELP)] = None,
    judge_max_tokens: Annotated[Optional[int], typer.Option(help=JUDGE_MAX_TOKENS_HELP)] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Judge requests in flight [the run's].")] = None,
    no_preflight: Annotated[bool, typer.Option("--no-preflight", help="Skip the judge's test request.")] = False,
) -> None:
    """Grade a finished run again (another grader, or this version's grading) without a single request to the model;
    the result goes to RUN_DIR/regrade-<grader>-<time>/, beside the run's own."""
    try:
        overrides: dict[str, Any] = dict(
            grader=grader or "symbolic", score_by=score_by, judge_url=judge_url, judge_model=judge_model,
            judge_api_key_env=judge_api_key_env, judge_max_tokens=judge_max_tokens, concurrency=concurrency,
            preflight=False if no_preflight else None,
        )  # fmt: skip
        from scorecheck.session import regrade as do_regrade

        code, _ = do_regrade(run_dir, overrides, console=out, err=err)
    except ScorecheckError as e:
        _fail(e)
    raise typer.Exit(code)


def load_config_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from scorecheck.config import load_toml

    return load_toml(path)


@app.command()
def grade(
    eval_name: Annotated[str, typer.Option("--eval", help="The eval the responses answer: ifeval.")],
    responses: Annotated[
        Path, typer.Option(help="JSONL with 'prompt' and 'response' per line (as Google's IFEval tools write it).")
    ],
    protocol: Annotated[
        str, typer.Option(help="Headline checker and default input file: reference (Google's) or glaive-2024.")
    ] = "reference",
    input_data: Annotated[
        Optional[str], typer.Option(help="Input file: a data key (ifeval, ifeval_glaive) or a path [by protocol].")
    ] = None,
    exclude_key: Annotated[
        Optional[list[str]], typer.Option("--exclude-key", help="Leave this input key out; repeatable.")
    ] = None,
    missing_as_empty: Annotated[
        bool, typer.Option("--missing-as-empty", help="Grade input prompts with no response as empty responses.")
    ] = False,
    reasoning: Annotated[str, typer.Option(help="Reasoning format applied to each response first [none].")] = "none",
    out_dir: Annotated[str, typer.Option("--out", help="Directory for results.json, samples.jsonl, summary.md.")] = (
        "runs/grade"
    ),
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table.")] = False,
) -> None:
    """Grade responses produced anywhere, with both IFEval checkers; writes the same outputs as a run."""
    try:
        from scorecheck.offline import grade_responses
        from scorecheck.report import print_table

        results = grade_responses(eval_name.strip().lower(), responses, Path(out_dir), protocol=protocol,
                                  input_data=input_data, exclude_keys=exclude_key, missing_as_empty=missing_as_empty,
                                  reasoning=reasoning)  # fmt: skip
    except ScorecheckError as e:
        _fail(e)
    if not quiet:
        print_table(results, out)
    else:
        for n in results.get("notes") or []:
            err.print(f"note: {n}", highlight=False, soft_wrap=True)
    out.print(f"results in {out_dir}/ (results.json, samples.jsonl, summary.md)")


@app.command("evals")
def list_evals() -> None:
    """List the evals and protocols scorecheck knows."""
    from scorecheck.benchmarks import ALIASES, registry
    from scorecheck.protocols import PROFILES

    for name, b in registry().items():
        alias = [a for a, t in ALIASES.items() if t == name]
        out.print(f"{name:<14} {b.description}" + (f" (alias: {', '.join(alias)})" if alias else ""))
    out.print("protocols: " + ", ".join(f"{p.name} ({p.reference})" for p in PROFILES.values()))


@data_app.command("verify")
def data_verify(
    fetch: Annotated[bool, typer.Option("--fetch", help="Download what is missing.")] = False,
) -> None:
    """Which benchmark files are present, and their sha256 against the expected ones."""
    from rich.table import Table

    from scorecheck.data import verify_all

    rows = verify_all(download=fetch)
    t = Table()
    for c in ("file", "status", "detail"):
        t.add_column(c, overflow="fold")
    colour = {"ok": "green", "missing": "yellow", "corrupt": "red"}
    for r in rows:
        t.add_row(r["file"], f"[{colour[r['status']]}]{r['status']}[/]", r["detail"])
    out.print(t)
    if any(r["status"] == "corrupt" for r in rows):
        raise typer.Exit(1)


@data_app.command("fetch")
def data_fetch(
    keys: Annotated[Optional[list[str]], typer.Argument(help="Files to fetch (default: all).")] = None,
    from_file: Annotated[Optional[Path], typer.Option("--from", help="Use this local file (checked) for KEY.")] = None,
) -> None:
    """Download benchmark files into the cache and check them."""
    from scorecheck import data

    try:
        if from_file is not None:
            if not keys or len(keys) != 1:
                raise UsageError("--from needs exactly one file key, e.g. scorecheck data fetch gpqa_main --from F")
            out.print(f"{keys[0]}: {data.copy_into_cache(keys[0], from_file)}")
            return
        failed = False
        for k in keys or list(data.FILES):
            try:
                r = data.resolve(k)
                out.print(f"{k}: ok ({r.check}) {r.path}")
            except ScorecheckError as e:
                failed = True
                err.print(f"[red]{k}:[/] {e}", soft_wrap=True)
        if failed:
            raise typer.Exit(1)
    except ScorecheckError as e:
        _fail(e)


def _register_ops() -> None:
    from scorecheck import cli_ops

    cli_ops.register(app)


_register_ops()


def _register_compare() -> None:
    from scorecheck import cli_compare

    cli_compare.register(app)


_register_compare()


def entry() -> None:
    t0 = time.monotonic()
    try:
        app()
    except KeyboardInterrupt:
        err.print(f"interrupted after {time.monotonic() - t0:.0f}s")
        sys.exit(130)


if __name__ == "__main__":
    entry()
