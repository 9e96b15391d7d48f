"""One invocation of ``scorecheck run``: resolve, lock the run directory, start the embedded model if no endpoint
was given, run, write the outputs, say what failed."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from scorecheck import __version__
from scorecheck.client import EndpointState
from scorecheck.config import Resolved, RunConfig, dumps
from scorecheck.errors import RunAborted, UsageError
from scorecheck.report import collect, eval_result, git_commit, print_table, sha256_text, versions, write_outputs
from scorecheck.runner import Runner
from scorecheck.store import Store


def execute(cfg: RunConfig, api_key: str | None = None, show_progress: bool = True, console: Console | None = None,
            err: Console | None = None) -> int:  # fmt: skip
    console = console or Console()
    err = err or Console(stderr=True)
    rc = Resolved(cfg)
    if cfg.endpoints and not cfg.model:
        raise UsageError("--model is required with --base-url (the name the endpoint serves)")
    run_dir = Path(cfg.out)
    started = time.time()
    store = Store(run_dir, argv=redact_argv(sys.argv))
    status = "failed"
    embedded = None
    try:
        (run_dir / "config.json").write_text(dumps(rc.describe()) + "\n")
        runner_model = cfg.model
        extra_identity: dict[str, Any] = {}
        if cfg.endpoints:
            endpoints = [EndpointState(ep.base_url, rc.api_key(ep, api_key), dict(ep.headers)) for ep in cfg.endpoints]
        else:
            from scorecheck import embedded as emb

            extra_identity = emb.identity()
            endpoints = []  # the embedded model starts once the data is loaded: missing data fails in seconds
            runner_model = cfg.model or emb.MODEL_ALIAS
        assert runner_model is not None
        runner = Runner(rc, endpoints, runner_model, store, show_progress=show_progress)
        runner.load_data()
        if not cfg.endpoints:
            embedded = emb.EmbeddedServer(run_dir / "embedded.log", parallel=cfg.embedded_parallel,
                                          ctx_per_slot=cfg.embedded_ctx)  # fmt: skip
            err.print(f"starting the embedded model ({emb.MODEL_ALIAS}, CPU) on {embedded.base_url} …")
            embedded.start()
            endpoints.append(EndpointState(embedded.base_url, None))
        aborted: RunAborted | None = None
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as aio:
                aio.run(runner.run())
        except RunAborted as e:
            aborted = e
        except KeyboardInterrupt:
            status = "interrupted"
            err.print("interrupted: everything finished is kept; run the same command again to continue")
            return 130
        results = build_results(rc, runner, store, started, extra_identity)
        write_outputs(run_dir, results, _all_samples(store, runner))
        print_table(results, console)
        console.print(f"results in {run_dir}/ (results.json, samples.jsonl, summary.md)")
        if aborted is not None:
            status = "aborted"
            raise aborted
        failed = [(name, i) for name, r in results["evals"].items() for i in r["failed_items"]]
        if failed:
            status = "incomplete"
            shown = ", ".join(f"{n}/{i}" for n, i in failed[:10]) + (" …" if len(failed) > 10 else "")
            err.print(f"[red]{len(failed)} request(s) failed after retries and are left out of the scores:[/] {shown}."
                      " Run the same command again to retry exactly these.")  # fmt: skip
            return 1
        status = "done"
        return 0
    finally:
        if embedded is not None:
            embedded.stop()
        store.close(status)


def redact_argv(argv: list[str]) -> list[str]:
    """The command line as stored in the run directory: the value of --api-key and of each --header hidden."""
    out: list[str] = []
    hide_next = None
    for a in argv:
        if hide_next is not None:
            out.append(_redact_value(hide_next, a))
            hide_next = None
        elif a in ("--api-key", "--header"):
            out.append(a)
            hide_next = a
        elif a.startswith(("--api-key=", "--header=")):
            flag, _, value = a.partition("=")
            out.append(f"{flag}={_redact_value(flag, value)}")
        else:
            out.append(a)
    return out


def _redact_value(flag: str, value: str) -> str:
    if flag == "--header" and ":" in value:
        return value.split(":", 1)[0] + ": ***"
    return "***"


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (about 8% more requests per second than asyncio's, BENCHMARKS.md),
    else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _wanted(runner: Runner, bench_name: str) -> set[tuple[str, int]]:
    return {(it.id, s) for it in runner.items[bench_name] for s in range(runner.rc.cfg.samples)}


def _all_samples(store: Store, runner: Runner):
    for b in runner.rc.benchmarks:
        yield from collect(store, b, _wanted(runner, b.name))


def build_results(rc: Resolved, runner: Runner, store: Store, started: float,
                  extra_identity: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    evals = {}
    tokens = {"prompt": 0, "completion": 0}
    for b in rc.benchmarks:
        records = collect(store, b, _wanted(runner, b.name))
        evals[b.name] = eval_result(b, records)
    for _status, pt, ct in store.db.execute(
        "SELECT status, COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) FROM requests "
        "GROUP BY status"
    ):
        tokens["prompt"] += pt
        tokens["completion"] += ct
    notes = []
    if rc.cfg.limit:
        notes.append(f"--limit {rc.cfg.limit}: subsets drawn as the glaive fork draws them (random.Random(0)); "
                     "the fork cannot subset GSM8K, scorecheck draws it the same way")  # fmt: skip
    if rc.cfg.endpoints == [] and rc.cfg.max_tokens is not None and rc.cfg.max_tokens < rc.profile.max_tokens:
        notes.append(
            f"max_tokens capped at {rc.cfg.max_tokens} (protocol: {rc.profile.max_tokens}) for the embedded model"
        )
    ended = time.time()
    desc = rc.describe()
    return {
        "scorecheck": {"version": __version__, "git_commit": git_commit(), "versions": versions()},
        "protocol": {"name": rc.profile.name, "reference": rc.profile.reference},
        "model": runner.model,
        "model_identity": {**runner.identity, **({"embedded": extra_identity} if extra_identity else {})},
        "endpoints": [e.base_url for e in runner.endpoints],
        "models_answer": runner.models_answer,
        "config": desc,
        "prompt_sha256": {
            "system": desc["system_prompt"]["sha256"],
            **{b.name: sha256_text(b.prompt_template) for b in rc.benchmarks},
        },
        "data_sha256": runner.data_sha256,
        "started": started,
        "ended": ended,
        "wall_s": round(ended - started, 3),
        "tokens": tokens,
        "requests_this_session": dict(runner.state.sent_outcomes),
        "evals": evals,
        "notes": notes,
    }
