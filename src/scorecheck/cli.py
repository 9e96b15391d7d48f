"""The ``scorecheck`` command line."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from scorecheck import __version__
from scorecheck.config import Endpoint, RunConfig
from scorecheck.errors import DataError, ScorecheckError, UsageError
from scorecheck.protocols import get_profile

ENV_PREFIX = "SCORECHECK"
PRECEDENCE = (
    "Every option can also be set in the environment as SCORECHECK_<COMMAND>_<OPTION> (e.g. SCORECHECK_RUN_OUT, "
    "SCORECHECK_RUN_BASE_URL; lists separated by spaces). A value given as a flag beats the environment, which beats "
    "run's --config file, which beats the protocol's default. Secrets are named, never given: --api-key-env VAR, "
    "--header-env 'Name=VAR'."
)
# Plain (click) help, not Rich markup: markup ate bracketed text ("[glaive-2024]") and printed metavars as <bool>.
# Every command shows its defaults (show_default) and reads its options from the environment (auto_envvar_prefix).
CONTEXT = {"auto_envvar_prefix": ENV_PREFIX, "show_default": True}
# Typer shows an argument's Python type after its name ("KEY... <list[str]>"); the name says what it is.
typer.core.TyperArgument.display_type = lambda self, ctx: ""  # type: ignore[method-assign]
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  context_settings=CONTEXT, epilog=PRECEDENCE,
                  help="Check published LLM benchmark numbers against any OpenAI-compatible endpoint.")  # fmt: skip
data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Benchmark files: verify, fetch, locate.")
app.add_typer(data_app, name="data")

err = Console(stderr=True)
console = Console()


def _fail(e: ScorecheckError, code: int | None = None) -> None:
    err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
    raise typer.Exit(e.exit_code if code is None else code)


def _warn(msg: str) -> None:
    err.print(f"warning: {msg}", highlight=False, soft_wrap=True, markup=False)


def _version(value: bool) -> None:
    if value:
        print(f"scorecheck {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, show_envvar=False, help="Show the version.")
    ] = False,
) -> None:
    pass


def _parse_headers(values: list[str] | None) -> dict[str, str]:
    out_h: dict[str, str] = {}
    for v in values or []:
        if ":" not in v:
            raise UsageError(f"--header {v!r}: expected 'Name: value' (a secret: --header-env 'Name=VAR')")
        k, val = v.split(":", 1)
        out_h[k.strip()] = val.strip()
    return out_h


def _parse_header_env(values: list[str] | None) -> dict[str, str]:
    out_h: dict[str, str] = {}
    for v in values or []:
        name, sep, var = v.partition("=")
        if not sep or not name.strip() or not var.strip() or ":" in name:
            raise UsageError(f"--header-env {v!r}: expected 'Name=VAR', e.g. 'Authorization=MY_AUTH' with MY_AUTH "
                             "holding the whole value ('Bearer ...')")  # fmt: skip
        out_h[name.strip()] = var.strip()
    return out_h


def _parse_json(name: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError as e:
        raise UsageError(f"{name}: not valid JSON ({e})") from None


def given_options(ctx: typer.Context) -> dict[str, Any]:
    """The options given as flags or environment variables, not left at their defaults: these, and only these,
    override the config file (flag > environment > config file > protocol default)."""
    # compared by name: typer carries its own copy of click, whose ParameterSource is not click's
    return {k: v for k, v in ctx.params.items() if _source(ctx, k) in ("COMMANDLINE", "ENVIRONMENT")}


def _source(ctx: typer.Context, name: str) -> str:
    source = ctx.get_parameter_source(name)
    return source.name if source is not None else "DEFAULT"


def run_default(key: str) -> Any:
    """A run option's default, from RunConfig (the one place it is defined)."""
    v = RunConfig.model_fields[key].get_default(call_default_factory=True)
    return ",".join(v) if isinstance(v, list) else v


DEFAULT_PROTOCOL = run_default("protocol")
PROFILE = get_profile(DEFAULT_PROTOCOL)


def protocol_default(value: Any) -> str:
    """How help shows a default that comes from the protocol profile."""
    return f"{DEFAULT_PROTOCOL}'s: {value}"


GRADER_HELP = "How MATH and GSM8K are graded: symbolic (math-verify), judge (the protocol's LLM judge), or both."
SCORE_BY_HELP = "With --grader both: the grader that gives the score, symbolic or judge."
JUDGE_URL_HELP = "The judge's OpenAI-compatible endpoint; 'embedded': the embedded model."
JUDGE_MODEL_HELP = "The judge model."
JUDGE_MAX_TOKENS_HELP = "Cap the judge's max_tokens (recorded; changes the judge's requests)."
JUDGE_KEY_HELP = "Environment variable holding the judge's API key."
UNSAFE_HELP = (
    "Where no contained sandbox works (no namespaces), run HumanEval's model-written code anyway in a weaker "
    "mode (docs/sandbox.md says what it leaves open); recorded in results.json."
)
DEFAULT_JUDGE_URL = "https://api.openai.com/v1"
SYSTEM_PROMPT_HELP = "A prompt of the protocol (" + ", ".join(PROFILE.system_prompts) + "), none, @FILE or text:TEXT."


@app.command(epilog=PRECEDENCE)
def run(
    ctx: typer.Context,
    # endpoint and credentials
    base_url: Annotated[
        Optional[list[str]],
        typer.Option(
            "--base-url",
            metavar="URL",
            show_default="none: start the embedded CPU model",
            help="OpenAI-compatible endpoint, e.g. http://host:5050/v1; repeat for replicas.",
        ),
    ] = None,
    model: Annotated[
        Optional[str],
        typer.Option(
            metavar="NAME",
            show_default="the embedded model's; required with --base-url",
            help="Model name as the endpoint serves it.",
        ),
    ] = None,
    api_key_env: Annotated[
        str, typer.Option(metavar="VAR", help="Environment variable holding the endpoint's API key (sent as Bearer).")
    ] = (Endpoint.model_fields["api_key_env"].default),
    header_env: Annotated[
        Optional[list[str]],
        typer.Option(
            "--header-env",
            metavar="NAME=VAR",
            show_default="none",
            help="Extra HTTP header whose value is in environment variable VAR; repeatable.",
        ),
    ] = None,
    header: Annotated[
        Optional[list[str]],
        typer.Option(
            "--header",
            metavar="'NAME: VALUE'",
            show_default="none",
            help="Extra HTTP header that is no secret (visible in ps); repeatable.",
        ),
    ] = None,
    api_key: Annotated[Optional[str], typer.Option(hidden=True, help="Deprecated: --api-key-env.")] = None,
    # what is run
    protocol: Annotated[str, typer.Option(metavar="NAME", help="Protocol profile (scorecheck evals lists them).")] = (
        run_default("protocol")
    ),
    evals: Annotated[
        Optional[str],
        typer.Option(
            metavar="LIST",
            show_default=protocol_default(",".join(PROFILE.default_evals)),
            help="Comma-separated evals, e.g. mmlu,gpqa,gsm8k,math (scorecheck protocols lists who defines which).",
        ),
    ] = (run_default("evals")),
    limit: Annotated[
        Optional[int],
        typer.Option(metavar="N", show_default="all items", help="Subset per eval, drawn as the fork draws it."),
    ] = None,
    epochs: Annotated[
        Optional[int],
        typer.Option(
            metavar="N",
            show_default="the protocol's: 1; simple-evals: HumanEval 5, MATH 10 without --limit",
            help="Repeats of every item (Inspect's --epochs); HumanEval: pass@k.",
        ),
    ] = run_default("samples"),
    samples: Annotated[
        Optional[int], typer.Option("--samples", "--samples-per-task", hidden=True, help="Deprecated: --epochs.")
    ] = None,
    system_prompt: Annotated[str, typer.Option(metavar="PROMPT", help=SYSTEM_PROMPT_HELP)] = "none",
    reasoning: Annotated[
        Optional[str],
        typer.Option(
            metavar="FORMAT",
            show_default="the protocol's: reflection under glaive-2024 (IFEval: with the Reflection prompt), else none",
            help="none, reflection, think, reasoning-field or tags:OPEN,CLOSE.",
        ),
    ] = (run_default("reasoning")),
    # sampling
    temperature: Annotated[
        Optional[float],
        typer.Option(metavar="T", show_default=protocol_default(PROFILE.temperature), help="Sampling temperature."),
    ] = None,
    max_tokens: Annotated[
        Optional[int],
        typer.Option(metavar="N", show_default=protocol_default(PROFILE.max_tokens), help="Tokens per answer at most."),
    ] = None,
    seed: Annotated[Optional[int], typer.Option(metavar="N", show_default="not sent", help="Sampling seed.")] = None,
    top_p: Annotated[Optional[float], typer.Option(metavar="P", show_default="not sent", help="Nucleus sampling.")] = (
        None
    ),
    stop: Annotated[
        Optional[list[str]],
        typer.Option("--stop", metavar="TEXT", show_default="none", help="Stop sequence; repeatable."),
    ] = None,
    extra_body: Annotated[
        Optional[str],
        typer.Option(
            metavar="JSON",
            show_default=protocol_default(json.dumps(PROFILE.extra_body)),
            help="JSON object merged into every request body (replaces the protocol's).",
        ),
    ] = None,
    # the harness
    concurrency: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            show_default="adaptive",
            help="Requests in flight per replica (adaptive: found from the server's /metrics or latency).",
        ),
    ] = run_default("concurrency"),
    timeout: Annotated[float, typer.Option(metavar="SECONDS", help="Per-request timeout.")] = run_default("timeout"),
    max_retries: Annotated[int, typer.Option(metavar="N", help="Retries per request.")] = run_default("max_retries"),
    retry_wait: Annotated[
        float, typer.Option(metavar="SECONDS", help="First backoff, doubling per retry.")
    ] = run_default("retry_wait"),
    out: Annotated[str, typer.Option("--out", metavar="DIR", help="Run directory.")] = run_default("out"),
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            metavar="FILE",
            show_default="none",
            help="TOML file of run options; flags and the environment override it.",
        ),
    ] = None,
    no_preflight: Annotated[bool, typer.Option("--no-preflight", help="Skip the test request before the run.")] = False,
    new_run: Annotated[
        bool,
        typer.Option("--new-run", help="--out holds a run of another configuration: move it aside, start over there."),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print the resolved configuration (as config.json records it) and exit; nothing is sent.",
        ),
    ] = False,
    # grading
    grader: Annotated[str, typer.Option(metavar="GRADER", help=GRADER_HELP)] = run_default("grader"),
    score_by: Annotated[
        Optional[str], typer.Option(metavar="GRADER", show_default=protocol_default(PROFILE.grader), help=SCORE_BY_HELP)
    ] = None,
    judge_url: Annotated[
        Optional[str], typer.Option(metavar="URL", show_default=DEFAULT_JUDGE_URL, help=JUDGE_URL_HELP)
    ] = None,
    judge_model: Annotated[
        Optional[str],
        typer.Option(metavar="NAME", show_default=protocol_default(PROFILE.judge_model), help=JUDGE_MODEL_HELP),
    ] = None,
    judge_api_key_env: Annotated[str, typer.Option(metavar="VAR", help=JUDGE_KEY_HELP)] = (
        run_default("judge_api_key_env")
    ),
    judge_max_tokens: Annotated[
        Optional[int],
        typer.Option(metavar="N", show_default=protocol_default(PROFILE.judge_max_tokens), help=JUDGE_MAX_TOKENS_HELP),
    ] = None,
    confirm_run_unsafe_code: Annotated[
        bool, typer.Option("--confirm-run-unsafe-code", show_envvar=False, help=UNSAFE_HELP)
    ] = False,
) -> None:
    """Evaluate a model; the same command again resumes an interrupted run."""
    # An option named as a run key (a RunConfig field) is passed on as it is: adding one is adding the parameter.
    # Only the few below need converting.
    try:
        if confirm_run_unsafe_code:
            if _source(ctx, "confirm_run_unsafe_code") != "COMMANDLINE":  # an opt-in is typed, not inherited
                raise UsageError("--confirm-run-unsafe-code is an opt-in for this run: give it on the command line, "
                                 "not as SCORECHECK_RUN_CONFIRM_RUN_UNSAFE_CODE")  # fmt: skip
            from scorecheck import sandbox

            sandbox.confirm_unsafe()
        given = given_options(ctx)
        file_values = load_config_file(given.pop("config", None))
        if api_key is not None:
            _warn("--api-key is deprecated (its value is visible in ps): put the key in a variable and give "
                  "--api-key-env VAR")  # fmt: skip
        if samples is not None:
            _warn("--samples/--samples-per-task is deprecated: it means repeats, which is --epochs (as in Inspect; "
                  "lm-eval's --samples selects items)")  # fmt: skip
            given.setdefault("epochs", samples)
        overrides = {k: v for k, v in given.items() if k in RunConfig.model_fields}
        overrides["samples"] = given.get("epochs")
        overrides["stop"] = stop or None
        overrides["extra_body"] = _parse_json("--extra-body", given.get("extra_body"))
        overrides["preflight"] = False if no_preflight else None
        from_flags = set(overrides)
        endpoints = _endpoints(ctx, given, file_values)
        if endpoints is not None:
            overrides["endpoints"] = endpoints
            if given.get("base_url"):
                from_flags.add("endpoints")
        from scorecheck import config as cfgmod

        cfg = cfgmod.build(file_values, overrides, origin=str(config) if config else "options", from_flags=from_flags)
        if print_config:
            print(cfgmod.dumps(cfgmod.Resolved(cfg).describe()))
            raise typer.Exit(0)
        from scorecheck.session import execute

        code = execute(cfg, api_key=api_key, show_progress=not quiet, console=console, err=err, new_run=new_run)
    except ScorecheckError as e:
        _fail(e)
    raise typer.Exit(code)


def _endpoints(ctx: typer.Context, given: dict[str, Any], file_values: dict[str, Any]) -> list[Any] | None:
    """The endpoints of a run: --base-url's (replacing the config file's), or the config file's; --api-key-env,
    --header and --header-env apply to each, from wherever the endpoints came. None: leave the file's as they are."""
    key_env = given.get("api_key_env")
    headers = _parse_headers(given.get("header"))
    header_env = _parse_header_env(given.get("header_env"))
    urls = given.get("base_url")
    eps = [{"base_url": u} for u in urls] if urls else [dict(e) if isinstance(e, dict) else e for e in
                                                         file_values.get("endpoints") or []]  # fmt: skip
    if not eps:
        flags = [f for f, k in (("--api-key-env", "api_key_env"), ("--header", "header"), ("--header-env", "header_env"))
                 if _source(ctx, k) == "COMMANDLINE"]  # fmt: skip
        if flags:
            raise UsageError(f"{', '.join(flags)}: no endpoint to send it to; give --base-url (or [[endpoint]] in "
                             "--config); the embedded model takes no credentials")  # fmt: skip
        return None
    if not (urls or key_env or headers or header_env):
        return None
    for e in eps:
        if isinstance(e, dict):
            if key_env:
                e["api_key_env"] = key_env
            if headers:
                e["headers"] = {**(e.get("headers") or {}), **headers}
            if header_env:
                e["header_env"] = {**(e.get("header_env") or {}), **header_env}
    return eps


@app.command()
def regrade(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (with store.sqlite and config.json).")],
    grader: Annotated[str, typer.Option(metavar="GRADER", help=GRADER_HELP)] = run_default("grader"),
    score_by: Annotated[
        Optional[str], typer.Option(metavar="GRADER", show_default="the protocol's", help=SCORE_BY_HELP)
    ] = None,
    judge_url: Annotated[
        Optional[str], typer.Option(metavar="URL", show_default=DEFAULT_JUDGE_URL, help=JUDGE_URL_HELP)
    ] = None,
    judge_model: Annotated[
        Optional[str], typer.Option(metavar="NAME", show_default="the protocol's", help=JUDGE_MODEL_HELP)
    ] = None,
    judge_api_key_env: Annotated[str, typer.Option(metavar="VAR", help=JUDGE_KEY_HELP)] = (
        run_default("judge_api_key_env")
    ),
    judge_max_tokens: Annotated[
        Optional[int], typer.Option(metavar="N", show_default="the protocol's", help=JUDGE_MAX_TOKENS_HELP)
    ] = None,
    concurrency: Annotated[
        Optional[int], typer.Option(metavar="N", show_default="the run's", help="Judge requests in flight.")
    ] = None,
    no_preflight: Annotated[bool, typer.Option("--no-preflight", help="Skip the judge's test request.")] = False,
    protocol: Annotated[
        Optional[str],
        typer.Option(
            metavar="NAME",
            show_default="the run's",
            help="Grade with another protocol's reasoning split, extraction and grader, where its requests equal "
            "the run's byte for byte (the others are named).",
        ),
    ] = None,
    force_scoring: Annotated[
        bool, typer.Option("--force-scoring", help="With --protocol: grade samples whose requests differ too (marked).")
    ] = False,
) -> None:
    """Grade a finished run again (another grader, another protocol, or this version's grading) without a single
    request to the model; the result goes to RUN_DIR/regrade-[<protocol>-]<grader>-<time>/, beside the run's own."""
    try:
        overrides: dict[str, Any] = dict(
            grader=grader, score_by=score_by, judge_url=judge_url, judge_model=judge_model,
            judge_api_key_env=judge_api_key_env, judge_max_tokens=judge_max_tokens, concurrency=concurrency,
            preflight=False if no_preflight else None, protocol=protocol,
        )  # fmt: skip
        from scorecheck.session import regrade as do_regrade

        code, _ = do_regrade(run_dir, overrides, console=console, err=err, force_scoring=force_scoring)
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
    evals: Annotated[
        str,
        typer.Option(
            "--evals", "--eval", metavar="EVAL", help="The eval the responses answer (scorecheck grade knows ifeval)."
        ),
    ],
    responses: Annotated[
        str,
        typer.Option(
            metavar="FILE",
            help="JSONL with 'prompt' and 'response' per line (as Google's IFEval tools write it), or a "
            "data key: ifeval_gpt4_responses (Google's published GPT-4 responses).",
        ),
    ],
    protocol: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="Headline checker and default input file: glaive-2024 (the fork's) or reference "
            "(Google's); both checkers grade every response.",
        ),
    ] = DEFAULT_PROTOCOL,
    input_data: Annotated[
        Optional[str],
        typer.Option(
            metavar="FILE",
            show_default="the protocol's: ifeval_glaive or ifeval",
            help="Input file: a data key (ifeval, ifeval_glaive) or a path.",
        ),
    ] = None,
    exclude_key: Annotated[
        Optional[list[str]],
        typer.Option("--exclude-key", metavar="KEY", show_default="none", help="Leave this input key out; repeatable."),
    ] = None,
    missing_as_empty: Annotated[
        bool, typer.Option("--missing-as-empty", help="Grade input prompts with no response as empty responses.")
    ] = False,
    reasoning: Annotated[
        str, typer.Option(metavar="FORMAT", help="Reasoning format applied to each response first.")
    ] = "none",
    out: Annotated[
        str, typer.Option("--out", metavar="DIR", help="Directory for results.json, samples.jsonl, summary.md.")
    ] = "runs/grade",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table.")] = False,
) -> None:
    """Grade responses produced anywhere, with both IFEval checkers; writes the same outputs as a run."""
    try:
        from scorecheck import data
        from scorecheck.offline import grade_responses
        from scorecheck.report import print_table

        path = data.resolve(responses).path if responses in data.FILES else Path(responses)
        results = grade_responses(evals.strip().lower(), path, Path(out), protocol=protocol, input_data=input_data,
                                  exclude_keys=exclude_key, missing_as_empty=missing_as_empty,
                                  reasoning=reasoning)  # fmt: skip
    except ScorecheckError as e:
        _fail(e)
    if not quiet:
        print_table(results, console)
    else:
        for n in results.notes:
            err.print(f"note: {n}", highlight=False, soft_wrap=True)
    for line in checker_lines(results.model_dump(mode="json")):
        console.print(line, highlight=False, soft_wrap=True)
    console.print(f"results in {out}/ (results.json, samples.jsonl, summary.md)")


def checker_lines(results: dict[str, Any]) -> list[str]:
    """What the headline is, and the difference the other IFEval checker makes (mean of the four scores)."""
    lines = []
    for name, r in results["evals"].items():
        checkers = r.get("checkers")
        if not checkers:
            continue
        head = r["checker"]
        other = next(c for c in checkers if c != head)
        diff = checkers[head]["mean"] - checkers[other]["mean"]
        lines.append(
            f"{name}: the score is the {head} checker's (protocol {results['protocol']['name']}; --protocol "
            f"{other} makes {other}'s the score); mean of four: {head} {checkers[head]['mean']:.6f}, {other} "
            f"{checkers[other]['mean']:.6f} ({diff:+.6f}); {r['checker_difference']['prompts_graded_differently']} "
            f"of {r['n']} prompts graded differently"
        )
    return lines


@app.command("evals")
def list_evals() -> None:
    """List the evals and protocols scorecheck knows."""
    from scorecheck.benchmarks import ALIASES, registry
    from scorecheck.protocols import PROFILES

    for name, b in registry().items():
        alias = [a for a, t in ALIASES.items() if t == name]
        console.print(f"{name:<14} {b.description}" + (f" (alias: {', '.join(alias)})" if alias else ""))
    console.print("protocols: " + ", ".join(f"{p.name} ({p.reference})" for p in PROFILES.values()))


@data_app.command("verify")
def data_verify(
    fetch: Annotated[bool, typer.Option("--fetch", help="Download what is missing.")] = False,
) -> None:
    """Which benchmark files are present, and their sha256 against the expected ones; exits 1 when any file is
    missing or wrong."""
    from rich.table import Table

    from scorecheck.data import searched, verify_all

    rows = verify_all(download=fetch)
    t = Table()
    for c in ("file", "status", "detail"):
        t.add_column(c, overflow="fold")
    colour = {"ok": "green", "missing": "yellow", "corrupt": "red"}
    for r in rows:
        t.add_row(r["file"], f"[{colour[r['status']]}]{r['status']}[/]", r["detail"])
    console.print(t)
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        missing = [r["key"] for r in bad if r["status"] == "missing"]
        corrupt = [r["key"] for r in bad if r["status"] == "corrupt"]
        what = "; ".join(x for x in (missing and f"missing: {', '.join(missing)}",
                                     corrupt and f"wrong: {', '.join(corrupt)}") if x)  # fmt: skip
        _fail(DataError(f"{len(bad)} of {len(rows)} files not usable ({what}); searched {searched()}; set "
                        "SCORECHECK_DATA_DIR to a copy laid out like ../shared/datasets, or run `scorecheck data "
                        "verify --fetch` (a wrong file: delete it first)"), code=1)  # fmt: skip


@data_app.command("locate")
def data_locate(
    keys: Annotated[
        Optional[list[str]], typer.Argument(metavar="KEY", help="File keys [all].", show_default=False)
    ] = None,
) -> None:
    """Where each benchmark file is found (data dir, then cache), without checking it; exits 1 when one is not."""
    from scorecheck import data

    try:
        found = {k: data.locate(k) for k in keys or list(data.FILES)}
    except ScorecheckError as e:
        _fail(e)
    for k, p in found.items():
        console.print(f"{k}: {p if p else 'not found'}", highlight=False, soft_wrap=True)
    if not all(found.values()):
        _fail(DataError(f"not found in {data.searched()}; set SCORECHECK_DATA_DIR or run `scorecheck data fetch`"),
              code=1)  # fmt: skip


@data_app.command("fetch")
def data_fetch(
    keys: Annotated[
        Optional[list[str]], typer.Argument(metavar="KEY", help="File keys [all].", show_default=False)
    ] = None,
    from_file: Annotated[
        Optional[Path],
        typer.Option(
            "--from",
            envvar="SCORECHECK_DATA_FETCH_FROM",
            metavar="FILE",
            show_default="download",
            help="Use this local file (checked) for KEY.",
        ),
    ] = None,
) -> None:
    """Download benchmark files into the cache and check them."""
    from scorecheck import data

    try:
        if from_file is not None:
            if not keys or len(keys) != 1:
                raise UsageError("--from needs exactly one file key, e.g. scorecheck data fetch gpqa_main --from F")
            console.print(f"{keys[0]}: {data.copy_into_cache(keys[0], from_file)}")
            return
        failed = False
        for k in keys or list(data.FILES):
            try:
                r = data.resolve(k)
                console.print(f"{k}: ok ({r.check}) {r.path}")
            except ScorecheckError as e:
                failed = True
                err.print(f"[red]{k}:[/] {e}", soft_wrap=True)
        if failed:
            raise typer.Exit(1)
    except ScorecheckError as e:
        _fail(e)


# The other commands live in their own modules, each with a ``register(app)``; they import this module's helpers
# (``_fail``) when they run, so they are loaded here, after everything they use is defined.
for _module in ("cli_ops", "cli_compare", "cli_export", "cli_cloud", "cli_protocols", "cli_audit", "cli_explain"):
    importlib.import_module(f"scorecheck.{_module}").register(app)


MOVED_ENV = "SCORECHECK_MOVED_"
"""Prefix of the variables that the deprecated secret flags' values are moved into."""


def scrubbed_argv(argv: list[str], environ: dict[str, str] | os._Environ[str]) -> list[str] | None:
    """``run``'s deprecated ``--api-key VALUE`` and ``--header 'Secret-Name: VALUE'`` put a secret on the command
    line, where ps shows it and every forked child inherits it. Their values are moved into ``environ`` and the
    command line rewritten to ``--api-key-env`` / ``--header-env``; None when there is nothing to move."""
    from scorecheck.results.hygiene import is_safe_header

    if argv[1:2] != ["run"]:
        return None
    new, moved, i = argv[:2], 0, 2
    while i < len(argv):
        a = argv[i]
        if a == "--":
            new += argv[i:]
            break
        flag, eq, value = a.partition("=")
        if flag not in ("--api-key", "--header"):
            new.append(a)
            i += 1
            continue
        if not eq:  # the value is the next argument
            value = argv[i + 1] if i + 1 < len(argv) else ""
            i += 1
        i += 1
        name, colon, header_value = value.partition(":")
        if flag == "--api-key":
            environ[f"{MOVED_ENV}API_KEY"] = value
            new += ["--api-key-env", f"{MOVED_ENV}API_KEY"]
        elif colon and not is_safe_header(name):  # any header off the short allowlist may be a secret
            moved += 1
            environ[f"{MOVED_ENV}HEADER_{moved}"] = header_value.strip()
            new += ["--header-env", f"{name.strip()}={MOVED_ENV}HEADER_{moved}"]
            continue
        else:
            new += ["--header", value]
            continue
        moved += 1
    return new if moved else None


def entry() -> None:
    t0 = time.monotonic()
    moved = scrubbed_argv(sys.argv, os.environ)
    if moved is not None:
        _warn("--api-key and secret --header values are visible in ps (deprecated): moved into the environment "
              f"({MOVED_ENV}*) and restarted as --api-key-env/--header-env; next time export a variable and give "
              "--api-key-env VAR or --header-env 'Name=VAR'")  # fmt: skip
        os.execv(sys.executable, [sys.executable, "-m", "scorecheck", *moved[1:]])
    try:
        app()
    except KeyboardInterrupt:
        err.print(f"interrupted after {time.monotonic() - t0:.0f}s")
        sys.exit(130)


if __name__ == "__main__":
    entry()
