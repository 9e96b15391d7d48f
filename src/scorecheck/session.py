"""One invocation of ``scorecheck run``: resolve, lock the run directory, start the embedded model if no endpoint
was given, run, write the outputs, say what failed."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from scorecheck import crossgrade, sandbox
from scorecheck.benchmarks import Benchmark
from scorecheck.client import EndpointState
from scorecheck.config import Resolved, RunConfig, config_from_run
from scorecheck.errors import RunAborted, StoreError, UsageError
from scorecheck.report import collect, eval_result, print_table, sha256_text, write_outputs
from scorecheck.results import (
    Results,
    RunConfigRecord,
    build_results,
    in_item_order,
    read_config,
    read_results,
    write_json,
)
from scorecheck.runner import Runner
from scorecheck.store import Store


def execute(cfg: RunConfig, api_key: str | None = None, show_progress: bool = True, console: Console | None = None,
            err: Console | None = None, new_run: bool = False) -> int:  # fmt: skip
    """One ``scorecheck run``. ``new_run``: when the run directory holds a run of another configuration, move it
    aside (``previous-<time>/`` inside it) and start over, instead of refusing."""
    console = console or Console()
    err = err or Console(stderr=True)
    rc = Resolved(cfg)
    if cfg.endpoints and not cfg.model:
        raise UsageError("--model is required with --base-url (the name the endpoint serves)")
    # Programs that could not run contained, without the opt-in: a one-line error before any request.
    iso = sandbox.isolation() if any(getattr(b, "runs_code", False) for b in rc.benchmarks) else None
    run_dir = Path(cfg.out)
    started = time.time()
    with stop_signals() as stopped:
        store = Store(run_dir, start=False)  # nothing is written before the configuration is accepted
        if iso is not None and iso.mode == "setuid":
            run_dir.chmod(0o700)  # the store and outputs out of the programs' (other) uid's reach
        try:
            return _execute(cfg, rc, store, run_dir, started, api_key, show_progress, console, err, new_run,
                            stopped)  # fmt: skip
        except StopRequested as e:
            err.print(f"stopped by {e.name}: everything finished is kept; run the same command again to continue",
                      highlight=False)  # fmt: skip
            return e.exit_code


def _execute(cfg: RunConfig, rc: Resolved, store: Store, run_dir: Path, started: float, api_key: str | None,
             show_progress: bool, console: Console, err: Console, new_run: bool,
             stopped: list[StopRequested]) -> int:  # fmt: skip
    status = "failed"
    embedded = None
    try:
        runner_model = cfg.model
        extra_identity: dict[str, Any] = {}
        if cfg.endpoints:
            endpoints = [EndpointState(ep.base_url, rc.api_key(ep, api_key), rc.headers(ep)) for ep in cfg.endpoints]
        else:
            from scorecheck import embedded as emb

            extra_identity = emb.identity()
            endpoints = []  # the embedded model starts once the data is loaded: missing data fails in seconds
            runner_model = cfg.model or emb.MODEL_ALIAS
        assert runner_model is not None
        # The embedded llama.cpp server has a fixed number of slots: fill exactly those unless told otherwise.
        concurrency = cfg.concurrency or (None if cfg.endpoints else cfg.embedded_parallel)
        runner = Runner(rc, endpoints, runner_model, store, show_progress=show_progress, concurrency=concurrency)
        if runner.needs_judge and runner.grading.judge_url == "embedded" and cfg.endpoints:
            raise UsageError("--judge-url embedded needs the embedded model (a run without --base-url)")
        setup_judge(rc, runner)
        runner.load_data()
        anew = accept_configuration(store, run_identity(rc, runner_model, runner.data_sha256), new_run, err)
        store.start_session(redact_argv(sys.argv))
        if anew or not (run_dir / "config.json").is_file():  # else rewritten with the results it describes
            write_config(run_dir, rc)
        if not cfg.endpoints:
            say_estimate(rc, runner, err)
            embedded = emb.EmbeddedServer(run_dir / "embedded.log", parallel=cfg.embedded_parallel,
                                          ctx_per_slot=cfg.embedded_ctx)  # fmt: skip
            err.print(f"starting the embedded model ({emb.MODEL_ALIAS}, CPU) on {embedded.base_url} …")
            embedded.start()
            endpoints.append(EndpointState(embedded.base_url, None))
            if runner.needs_judge and runner.grading.judge_url == "embedded":
                runner.judge_endpoint = EndpointState(embedded.base_url, None)
        aborted: RunAborted | None = None
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as aio:
                aio.run(_stoppable(runner.run(), stopped))
        except RunAborted as e:
            aborted = e
        except (KeyboardInterrupt, asyncio.CancelledError):
            if stopped:
                raise stopped[0] from None
            raise StopRequested(signal.SIGINT) from None
        results = run_results(rc, runner, store, started, extra_identity)
        with output_errors(run_dir):
            write_config(run_dir, rc)
            write_outputs(run_dir, results, _all_samples(store, runner), ordered=True)
        print_table(results, console)
        console.print(f"results in {run_dir}/ (results.json, samples.jsonl, summary.md)")
        if aborted is not None:
            status = "aborted"
            raise aborted
        failed = [(name, i) for name, r in results.evals.items() for i in r.failed_items]
        judge_failed = [(name, i) for name, r in results.evals.items() for i in r.judge_failed_items or []]
        if judge_failed:
            status = "incomplete"
            shown = ", ".join(f"{n}/{i}" for n, i in judge_failed[:10]) + (" …" if len(judge_failed) > 10 else "")
            err.print(f"[red]{len(judge_failed)} judge request(s) failed after retries:[/] {shown}. Run the same "
                      "command again to retry them (the model's answers are kept).")  # fmt: skip
        if failed:
            status = "incomplete"
            shown = ", ".join(f"{n}/{i}" for n, i in failed[:10]) + (" …" if len(failed) > 10 else "")
            err.print(f"[red]{len(failed)} request(s) failed after retries, left out of the scores (those cells "
                      f"are marked incomplete):[/] {shown}. Run the same command again to retry exactly these.")  # fmt: skip
        flagged = [(name, w) for name, r in results.evals.items() for w in r.warnings]
        for name, w in flagged:
            err.print(f"[red]{name}:[/] {w}", highlight=False)
        if not failed and not judge_failed:
            status = "done"
        return 1 if failed or judge_failed or flagged else 0
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM outside the event loop
        status = "interrupted"
        raise (e if isinstance(e, StopRequested) else StopRequested(signal.SIGINT)) from None
    finally:
        if embedded is not None:
            embedded.stop()
        store.close(status)


# -- one configuration per run directory -----------------------------------------------------------------------------
IDENTITY_META = "run_identity"
"""The store's meta key holding what makes the answers of a run comparable (see :func:`run_identity`)."""


def run_identity(rc: Resolved, model: str, data_sha256: dict[str, str]) -> dict[str, Any]:
    """What every sample of one run directory shares: protocol, model, sampling, system prompt, reasoning format,
    the evals' data. Evals, --limit and --samples may grow a run; endpoints, concurrency, retries and grading may
    change between invocations (answers are keyed by what was sent, grades by their grade key)."""
    return {"protocol": rc.profile.name, "model": model, "sampling": rc.sampling(),
            "system_prompt": {"name": rc.system_prompt_name,
                              "sha256": hashlib.sha256(rc.system_prompt.encode()).hexdigest()
                              if rc.system_prompt else None},
            "reasoning": str(rc.reasoning), "data_sha256": dict(data_sha256)}  # fmt: skip


def identity_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``field: old -> new`` for each field that differs (data files compared where both runs read them)."""
    diffs = []
    for k in ("protocol", "model", "reasoning"):
        if old.get(k) != new.get(k):
            diffs.append(f"{k}: {old.get(k)} -> {new.get(k)}")
    o, n = old.get("system_prompt") or {}, new.get("system_prompt") or {}
    if o.get("sha256") != n.get("sha256"):
        same_name = o.get("name") == n.get("name")
        diffs.append(
            f"system_prompt: {o.get('name')} -> {n.get('name')}" + (" (its text changed)" if same_name else "")
        )
    os_, ns = old.get("sampling") or {}, new.get("sampling") or {}
    for k in sorted(set(os_) | set(ns)):
        if os_.get(k, "unset") != ns.get(k, "unset"):
            diffs.append(f"{k}: {json.dumps(os_.get(k, 'unset'))} -> {json.dumps(ns.get(k, 'unset'))}")
    od, nd = old.get("data_sha256") or {}, new.get("data_sha256") or {}
    for k in sorted(set(od) & set(nd)):
        if od[k] != nd[k]:
            diffs.append(f"data {k}: sha256 {od[k][:12]} -> {nd[k][:12]}")
    return diffs


def accept_configuration(store: Store, identity: dict[str, Any], new_run: bool, err: Console) -> bool:
    """Refuse (store untouched) a run directory holding a run of another configuration, or, with ``new_run``,
    move that run aside; then record this configuration. A configuration that never got an answer there (its
    preflight failed) is simply replaced. True when this configuration was recorded anew (config.json follows)."""
    recorded = store.get_meta(IDENTITY_META)
    diffs = identity_differences(recorded, identity) if recorded is not None else []
    if diffs and not store.has_answers():
        store.set_meta(IDENTITY_META, identity)
        return True
    if diffs and not new_run:
        raise UsageError(f"{store.run_dir} holds a run of another configuration ({'; '.join(diffs)}); use another "
                         "--out, or add --new-run to start a new run there (the old one is kept aside)")  # fmt: skip
    if diffs or (new_run and not store.is_empty()):
        aside = store.set_aside()
        err.print(f"--new-run: the previous run in {store.run_dir} was moved to {aside}", highlight=False)
    if recorded is None or diffs or new_run:
        store.set_meta(IDENTITY_META, identity)
        return True
    if recorded.get("data_sha256") != identity["data_sha256"]:  # an eval added: its data joins the record
        store.set_meta(IDENTITY_META, {**identity, "data_sha256": {**recorded["data_sha256"],
                                                                   **identity["data_sha256"]}})  # fmt: skip
    return False


def write_config(run_dir: Path, rc: Resolved) -> None:
    write_json(run_dir / "config.json", RunConfigRecord.model_validate(rc.describe()))


@contextlib.contextmanager
def output_errors(run_dir: Path) -> Iterator[None]:
    """Writing the outputs fails with a one-line error (the store keeps every answer: the same command rewrites
    them)."""
    try:
        yield
    except OSError as e:
        raise StoreError(
            f"cannot write the outputs in {run_dir}: {e.strerror or e} ({e.filename}); everything "
            "finished is kept in the store, run the same command again once fixed"
        ) from None


# -- clean stops -----------------------------------------------------------------------------------------------------
class StopRequested(KeyboardInterrupt):
    """SIGTERM or SIGINT: the run stops, the store is flushed, the exit code is 128 + the signal."""

    def __init__(self, sig: int) -> None:
        super().__init__(sig)
        self.signum = sig
        self.name = signal.Signals(sig).name
        self.exit_code = 128 + sig


@contextlib.contextmanager
def stop_signals() -> Iterator[list[StopRequested]]:
    """SIGTERM raises :class:`StopRequested` (outside the event loop; inside it, :func:`_stoppable` cancels the run
    instead), so ``finally`` blocks run: the store is flushed, the embedded server and the grading workers are
    stopped. The list it yields holds the stop once one was requested."""
    stopped: list[StopRequested] = []

    def on_term(signum: int, _frame: object) -> None:
        stopped.append(StopRequested(signum))
        raise stopped[-1]

    if threading.current_thread() is not threading.main_thread():  # signals are the caller's
        yield stopped
        return
    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield stopped
    finally:
        signal.signal(signal.SIGTERM, old)


async def _stoppable(coro: Any, stopped: list[StopRequested]) -> Any:
    """Run ``coro``; SIGTERM cancels it as asyncio.Runner's own handler does for SIGINT (its ``finally`` blocks
    flush the store and stop the grading pool)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def on_term() -> None:
        stopped.append(StopRequested(signal.SIGTERM))
        task.cancel()

    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, on_term)
    except (RuntimeError, ValueError):  # not the main thread: signals are the caller's
        return await coro
    try:
        return await coro
    finally:
        loop.remove_signal_handler(signal.SIGTERM)  # leaves SIG_DFL: the handler outside the loop comes back
        signal.signal(signal.SIGTERM, previous)


EMBEDDED_TOKENS_PER_S = 75
"""The embedded SmolLM2-135M on 2 CPU cores, all slots together (measured; README)."""


def say_estimate(rc: Resolved, runner: Runner, err: Console) -> None:
    """Before a long run on the embedded CPU model (a bare `scorecheck run`: 15,809 items at max_tokens 6000): how
    long it may take, and how to make it short."""
    requests = sum(len(runner.items[b.name]) * rc.samples_for(b) for b in rc.benchmarks)
    max_tokens = rc.sampling()["max_tokens"]
    hours = requests * max_tokens / EMBEDDED_TOKENS_PER_S / 3600
    if hours < 0.5:
        return
    err.print(f"estimate: {requests:,} requests on the embedded CPU model at ~{EMBEDDED_TOKENS_PER_S} tokens/s, up to "
              f"{max_tokens} tokens each: up to {hours:,.0f} hours ({hours / 24:,.1f} days). For a quick look: --limit 5"
              " --max-tokens 256; for real scores: --base-url of a GPU server", highlight=False, soft_wrap=True)  # fmt: skip


def setup_judge(rc: Resolved, runner: Runner) -> None:
    """The judge's endpoint (``--judge-url``), with its key from ``--judge-api-key-env`` (never written anywhere).
    ``embedded`` is filled in once the embedded model has started."""
    plan = runner.grading
    if not runner.needs_judge or plan.judge_url in (None, "embedded"):
        return
    runner.judge_endpoint = EndpointState(plan.judge_url, rc.judge_api_key())


def judge_summary(runner: Runner, store: Store) -> dict[str, Any] | None:
    """What the judge was, for results.json: endpoint, model, its /v1/models identity, sampling, requests, tokens."""
    if not runner.needs_judge:
        return None
    from scorecheck.runner import JUDGE_EVAL

    row = store.db.execute(
        "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) FROM requests "
        "WHERE eval = ?",
        (JUDGE_EVAL,),
    ).fetchone()
    return {
        **runner.grading.describe(),
        "judge_url": runner.judge_endpoint.base_url if runner.judge_endpoint else runner.grading.judge_url,
        "judge_identity": runner.judge_identity,
        "judge_models_answer": runner.judge_models_answer,
        "stored_judge_requests": row[0],
        "judge_tokens": {"prompt": row[1], "completion": row[2]},
        "judge_requests_this_session": dict(runner.state.judge_outcomes),
    }


AGREEMENT_NOTE = "symbolic grader and judge agree on"


def agreement_notes(evals: dict[str, Any]) -> list[str]:
    notes = []
    for name, r in evals.items():
        ag = r.get("grader_agreement")
        if ag and ag["unparsed_judge_yes"]:
            notes.append(f"{name}: the judge said yes to {ag['unparsed_judge_yes']} answer(s) where nothing was "
                         "extracted (it was shown 'None', as in the fork)")  # fmt: skip
        if ag and ag["compared"]:
            notes.append(
                f"{name}: {AGREEMENT_NOTE} {ag['agree']} of {ag['compared']} parsed answers "
                f"({100 * ag['agreement']:.1f}%); symbolic yes / judge no: {ag['symbolic_yes_judge_no']}, judge yes / "
                f"symbolic no: {ag['judge_yes_symbolic_no']} (listed under grader_agreement in results.json)"
            )
    return notes


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
    bench = next(b for b in runner.rc.benchmarks if b.name == bench_name)
    return {(it.id, s) for it in runner.items[bench_name] for s in range(runner.rc.samples_for(bench))}


def _all_samples(store: Store, runner: Runner) -> Iterator[dict[str, Any]]:
    """The run's samples in item order, read from the store one at a time (the order from the light records)."""
    for b in runner.rc.benchmarks:
        for r in _ordered(runner, b.name, collect(store, b, _wanted(runner, b.name), light=True)):
            full = store.get_sample(b.name, r["item_id"], r["sample_index"])
            assert full is not None  # read from the store a moment ago, under its lock
            yield full


def _item_order(runner: Runner) -> dict[str, list[str]]:
    """Each eval's item ids in the order the data was loaded: the order of samples.jsonl."""
    return {name: [it.id for it in items] for name, items in runner.items.items()}


def _ordered(runner: Runner, bench_name: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return in_item_order(records, [bench_name], _item_order(runner))  # type: ignore[return-value]


def run_results(rc: Resolved, runner: Runner, store: Store, started: float,
                extra_identity: dict[str, Any]) -> Results:  # fmt: skip
    evals = {}
    tokens = {"prompt": 0, "completion": 0}
    for b in rc.benchmarks:
        records = _ordered(runner, b.name, collect(store, b, _wanted(runner, b.name), light=True))
        evals[b.name] = eval_result(b, records)
        evals[b.name]["protocol"] = eval_protocol_record(rc, b)
    for _status, pt, ct in store.db.execute(
        "SELECT status, COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) FROM requests "
        "WHERE eval IS NOT 'judge' GROUP BY status"
    ):
        tokens["prompt"] += pt
        tokens["completion"] += ct
    notes = []
    if rc.cfg.limit:
        notes.append(f"--limit {rc.cfg.limit}: subsets drawn as {rc.profile.name} draws them, one repeat "
                     "(each eval's rule: evals.<name>.protocol.subset in results.json)")  # fmt: skip
    notes += [f"{b.name} (not byte-verified): {'; '.join(b.spec.notes)}" for b in rc.benchmarks
              if not b.spec.byte_verified]  # fmt: skip
    if rc.cfg.endpoints == [] and rc.cfg.max_tokens is not None and rc.cfg.max_tokens < rc.profile.max_tokens:
        notes.append(
            f"max_tokens capped at {rc.cfg.max_tokens} (protocol: {rc.profile.max_tokens}) for the embedded model"
        )
    if not rc.cfg.endpoints:
        notes.append("the embedded SmolLM2-135M (CPU) exercises the pipeline, it does not score: expect numbers near "
                     "zero; give --base-url of a real model's server for real scores")  # fmt: skip
    notes += runner.notes
    notes += agreement_notes(evals)
    desc = rc.describe()
    return build_results(
        model=runner.model, protocol={"name": rc.profile.name, "reference": rc.profile.reference}, config=desc,
        evals=evals, notes=notes, started=started, ended=time.time(),
        model_identity={**runner.identity, **({"embedded": extra_identity} if extra_identity else {})},
        endpoints=[e.base_url for e in runner.endpoints], models_answer=runner.models_answer,
        prompt_sha256={"system": desc["system_prompt"]["sha256"],
                       **{b.name: sha256_text(b.prompt_template) for b in rc.benchmarks}},
        data_sha256=runner.data_sha256, tokens=tokens, requests_this_session=dict(runner.state.sent_outcomes),
        schedule=runner.schedule_summary(), judge=judge_summary(runner, store),
    )  # fmt: skip


def eval_protocol_record(rc: Resolved, bench: Benchmark) -> dict[str, Any]:
    """What protocol an eval was run (or regraded) under, for results.json: the profile, the eval's source, the
    sha256 of every protocol string it used (the system prompt it sent included), the reasoning rule and format
    applied, samples, repeats and whether its requests are byte-verified against the upstream harness."""
    spec = bench.spec
    system = bench.system_prompt(rc.system_prompt_name, rc.system_prompt)
    strings = spec.strings_sha256()
    if system:
        strings["system_prompt"] = sha256_text(system)
    return {
        "name": rc.profile.name,
        "reference": rc.profile.reference,
        "source": spec.source,
        "strings_sha256": strings,
        "reasoning": str(rc.reasoning_for(bench)),
        "reasoning_rule": ("--reasoning " + str(rc.reasoning)) if rc.reasoning else spec.reasoning_rule(),
        "samples": rc.samples_for(bench),
        "repeats": spec.repeats if not rc.cfg.limit else 1,
        "subset": spec.subset if rc.cfg.limit else None,
        "grader": spec.grader,
        "http_400_text": rc.profile.http_400_text,
        "byte_verified": spec.byte_verified,
    }


def regrade_coverage(runner: Runner, stored: dict[str, int]) -> list[str]:
    """One line per eval whose answered samples (``stored``) fall short of the run's configuration (an unfinished
    run, or failed requests): how much the regrade covers."""
    out = []
    for b in runner.rc.benchmarks:
        want = len(runner.items[b.name]) * runner.rc.samples_for(b)
        have = stored.get(b.name, 0)
        if have < want:
            out.append(f"{b.name}: the run is unfinished: this regrade covers {have} of its {want} samples "
                       f"({have / want:.0%}); `scorecheck run` with the run's command completes it")  # fmt: skip
    return out


# -- scorecheck regrade ----------------------------------------------------------------------------------------------
def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def regrade(run_dir: Path, overrides: dict[str, Any], console: Console | None = None,
            err: Console | None = None, force_scoring: bool = False) -> tuple[int, Path]:  # fmt: skip
    """``scorecheck regrade RUN_DIR``: grade a run's stored answers again, without a single request to the model,
    and write the result beside the run's own: ``RUN_DIR/regrade-<grader>-<UTC time>/`` (results.json, samples.jsonl,
    summary.md). The run's results and its stored samples are left as they were; judge requests go into the run's
    store like any request, so a second regrade with the same judge sends nothing."""
    console = console or Console()
    err = err or Console(stderr=True)
    run_dir = Path(run_dir)
    if not (run_dir / "store.sqlite").is_file() or not (run_dir / "config.json").is_file():
        raise UsageError(f"{run_dir} is not a scorecheck run directory (no store.sqlite and config.json)")
    # legacy: a run from before versioned records is regraded into versioned ones
    described = read_config(run_dir / "config.json", legacy=True).model_dump(mode="json", exclude_unset=True)
    run_protocol = described.get("protocol") or "glaive-2024"
    target = overrides.get("protocol") or run_protocol
    cross = target != run_protocol
    if cross:  # another protocol's grading of the same responses (crossgrade.py)
        described = crossgrade.retarget(described, target)
    elif force_scoring:
        raise UsageError("--force-scoring applies with --protocol naming another protocol than the run's")
    cfg = config_from_run(described, overrides)
    rc = Resolved(cfg)
    started = time.time()
    store = Store(run_dir, argv=redact_argv(sys.argv))
    status = "failed"
    try:
        runner = Runner(rc, [], cfg.model or "", store, show_progress=False)
        if runner.needs_judge and runner.grading.judge_url == "embedded":
            raise UsageError("regrade does not start the embedded model as a judge: serve it with "
                             "`scorecheck serve --embedded` and give --judge-url http://127.0.0.1:8080/v1")  # fmt: skip
        setup_judge(rc, runner)
        runner.load_data()
        plans = crossgrade.plan(rc, runner.items, store, force_scoring) if cross else None
        if plans is not None and not any(p.selection() for p in plans.values()):
            raise UsageError(crossgrade.refusal(target, plans))
        selection = {n: p.selection() for n, p in plans.items()} if plans is not None else None
        before = {b.name: {(r["item_id"], r["sample_index"]): r.get("score") for r in store.iter_samples(b.name)}
                  for b in rc.benchmarks}  # fmt: skip
        with asyncio.Runner(loop_factory=_loop_factory()) as aio:
            slots = aio.run(runner.regrade(selection))
        evals = {}
        samples: list[dict[str, Any]] = []
        changed: dict[str, list[dict[str, Any]]] = {}
        for b in rc.benchmarks:
            if plans is None:
                wanted = _wanted(runner, b.name)
                records = _ordered(
                    runner, b.name, [r for r in slots[b.name] if (r["item_id"], r["sample_index"]) in wanted]
                )
            else:
                records = _ordered(runner, b.name, slots[b.name])
                crossgrade.mark(plans[b.name], records)
            evals[b.name] = eval_result(b, records)
            evals[b.name]["protocol"] = eval_protocol_record(rc, b)
            if plans is not None:
                crossgrade.annotate(b.name, target, plans[b.name], evals[b.name], err)
            samples += records
            changed[b.name] = [{"item_id": r["item_id"], "sample_index": r["sample_index"], "extracted": r.get("extracted"),
                                "before": before[b.name].get((r["item_id"], r["sample_index"])), "after": r.get("score")}
                               for r in records if before[b.name].get((r["item_id"], r["sample_index"])) != r.get("score")]  # fmt: skip
        coverage = regrade_coverage(
            runner, {name: ev["n_items"] - len(ev["failed_items"]) for name, ev in evals.items()}
        )
        coverage = coverage if not cross else []
        for line in coverage:
            err.print(f"[yellow]{line}[/]", highlight=False)
        previous = read_results(run_dir / "results.json", legacy=True) if (run_dir / "results.json").is_file() else None
        ended = time.time()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(started))
        out_dir = run_dir / (f"regrade-{target}-{runner.grading.mode}-{stamp}" if cross
                             else f"regrade-{runner.grading.mode}-{stamp}")  # fmt: skip
        out_dir.mkdir(parents=True, exist_ok=True)
        results = build_results(
            model=cfg.model or "", protocol={"name": rc.profile.name, "reference": rc.profile.reference},
            config=rc.describe(), evals=evals, base=previous, started=started, ended=ended,
            notes=[*(n for n in (previous.notes if previous else []) if AGREEMENT_NOTE not in n), *agreement_notes(evals),
                   *coverage],
            regrade={
                "of": str(run_dir), "grading": runner.grading.describe(),
                "previous_scores": {k: v.score for k, v in (previous.evals if previous else {}).items()},
                "model_requests_sent": 0, "changed_samples": changed,
                **({"protocol": {"from": run_protocol, "to": target, "force_scoring": force_scoring}} if cross else {}),
                "started": started, "ended": ended,
                "wall_s": round(ended - started, 3),
            },
            judge=judge_summary(runner, store),
        )  # fmt: skip
        write_outputs(out_dir, results, samples, _item_order(runner))
        print_table(results, console)
        for name, rows in changed.items():
            prev = (results.regrade or {})["previous_scores"].get(name)
            up = sum(1 for c in rows if (c["after"] or 0) > (c["before"] or 0))
            console.print(f"{name}: score {_score(prev)} -> {_score(evals[name]['score'])}; {len(rows)} sample(s) graded "
                          f"differently ({up} now right, {len(rows) - up} now wrong)", soft_wrap=True)  # fmt: skip
        console.print(f"regraded results in {out_dir}/ (results.json, samples.jsonl, summary.md)")
        judge_failed = [i for r in results.evals.values() for i in r.judge_failed_items or []]
        if judge_failed:
            status = "incomplete"
            err.print(f"[red]{len(judge_failed)} judge request(s) failed after retries[/]; run the same regrade "
                      "again to retry them.")  # fmt: skip
            return 1, out_dir
        status = "done"
        return 0, out_dir
    finally:
        store.close(status)
