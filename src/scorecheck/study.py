"""A study: servers and the configurations evaluated against them, in one TOML file (``studies/*.toml``).

``scorecheck study run FILE`` starts each server once, runs every configuration that uses it (configurations sharing
a server run concurrently, each in its own process and run directory), stops the server, moves to the next, and
prints the table (benchmarks as rows, configurations as columns). Run it again after any interruption: finished
configurations are skipped, unfinished ones resume from their run directory's store (nothing finished is re-sent).

File layout::

    name = "reflection-70b"
    out = "runs/reflection-70b"          # each configuration runs in out/<configuration slug>

    [run]                                # run options (as `scorecheck run --config`) for every configuration
    protocol = "glaive-2024"
    evals = ["mmlu", "gpqa", "gsm8k"]

    [[server]]
    name = "reflection"
    engine = "vllm"                      # or "embedded"
    model = "glaiveai/Reflection-Llama-3.1-70B"
    tp = 4
    port = 5050
    version = "0.6.1.post2"              # the pinned vLLM version; docker = "vllm/vllm-openai:v0.6.1.post2"
    num_nodes = 1                        # `scorecheck cloud`: nodes that each serve a replica (SkyPilot num_nodes)

    [[configuration]]
    name = "Reflection 70B"
    server = "reflection"
    system_prompt = "reflection"         # any run option overrides [run]
    reasoning = "reflection"
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scorecheck.config import read_toml
from scorecheck.errors import ScorecheckError, UsageError
from scorecheck.results import read_results
from scorecheck.results.io import write_atomic
from scorecheck.serving import ServerGroup, ServerSpec, models_listed, write_identity

RESERVED = {"endpoints", "endpoint", "out", "model"}
"""Run options a configuration cannot set: the study derives them from its server and its out directory."""
EVAL_ORDER = ["mmlu", "gpqa_main", "gpqa", "gpqa_diamond", "humaneval", "math", "math_500", "gsm8k", "ifeval"]


@dataclass
class Configuration:
    name: str
    server: str
    options: dict[str, Any]

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") or "configuration"


@dataclass
class Study:
    name: str
    path: Path
    out: Path
    run: dict[str, Any]
    servers: dict[str, ServerSpec]
    configurations: list[Configuration]
    server_urls: dict[str, list[str]] = field(default_factory=dict)
    """Servers already running elsewhere (``--server NAME=URL``): not started, their URLs used as is."""
    num_nodes: dict[str, int] = field(default_factory=dict)
    """A server's ``num_nodes`` (``scorecheck cloud``: one replica per node), where given."""
    node_urls: dict[str, list[str]] = field(default_factory=dict)
    """Replicas of a server on other nodes, used beside the one started here once they are ready."""
    references: list[str] = field(default_factory=list)
    """Claimed numbers (``scorecheck audit -r``): the closing report shows them and ends with their verdicts."""

    def run_dir(self, c: Configuration) -> Path:
        return self.out / c.slug

    def run_values(self, c: Configuration, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The configuration's run options (``config.build`` input) without the endpoint."""
        values = {**self.run, **c.options, **{k: v for k, v in (overrides or {}).items() if v is not None}}
        values["model"] = self.servers[c.server].model_name
        values["out"] = str(self.run_dir(c))
        return values

    def fingerprint(self, c: Configuration, overrides: dict[str, Any] | None = None) -> str:
        spec = self.servers[c.server]
        blob = json.dumps([self.run_values(c, overrides), spec.engine, spec.model, spec.version], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load(path: str | Path) -> Study:
    """Read and check a study file. Eval names are checked when a configuration runs, not here (a study may list
    evals this installation does not have yet)."""
    p = Path(path)
    raw = read_toml(p, "study file")
    unknown = set(raw) - {"name", "out", "run", "server", "configuration", "description", "references"}
    if unknown:
        raise UsageError(f"{p}: unknown key(s) {', '.join(sorted(unknown))}; expected name, out, references, [run], "
                         "[[server]], [[configuration]]")  # fmt: skip
    references = raw.get("references") or []
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise UsageError(f"{p}: references = {references!r}; give a list of shipped tables or TOML paths, e.g. "
                         '["seed", "glaive"]')  # fmt: skip
    name = str(raw.get("name") or p.stem)
    run = dict(raw.get("run") or {})
    servers: dict[str, ServerSpec] = {}
    num_nodes: dict[str, int] = {}
    for i, s in enumerate(raw.get("server") or []):
        s = dict(s)
        sname = s.get("name") or f"server{i + 1}"
        s["name"] = sname
        nodes = s.pop("num_nodes", 1)
        if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
            raise UsageError(f"{p}: server {sname!r}: num_nodes = {nodes!r}; give a whole number, at least 1")
        if sname in servers:
            raise UsageError(f"{p}: two servers named {sname!r}")
        try:
            servers[sname] = ServerSpec(**s)
        except TypeError as e:
            raise UsageError(f"{p}: server {sname!r}: {e}") from None
        except ScorecheckError as e:
            raise UsageError(f"{p}: server {sname!r}: {e}") from None
        if nodes > 1:
            num_nodes[sname] = nodes
    if not servers:
        raise UsageError(f"{p}: no [[server]]")
    configs: list[Configuration] = []
    for i, c in enumerate(raw.get("configuration") or []):
        c = dict(c)
        cname = str(c.pop("name", f"configuration {i + 1}"))
        sname = c.pop("server", None) or (next(iter(servers)) if len(servers) == 1 else None)
        if sname not in servers:
            raise UsageError(f"{p}: configuration {cname!r}: server {sname!r} is not one of {', '.join(servers)}")
        bad = RESERVED & set(c)
        if bad:
            raise UsageError(f"{p}: configuration {cname!r}: {', '.join(sorted(bad))} come from the server and the "
                             "study; remove them")  # fmt: skip
        configs.append(Configuration(cname, sname, c))
    if not configs:
        raise UsageError(f"{p}: no [[configuration]]")
    slugs = [c.slug for c in configs]
    if len(set(slugs)) != len(slugs):
        raise UsageError(f"{p}: configuration names must differ after lowercasing: {slugs}")
    study = Study(name, p, Path(raw.get("out") or f"runs/{name}"), run, servers, configs, num_nodes=num_nodes,
                  references=[str(r) for r in references])  # fmt: skip
    from scorecheck import config as cfgmod

    for c in configs:  # every key and value checked now (not the eval names: see above)
        cfgmod.build(study.run_values(c), {}, origin=f"{p}: configuration {c.name!r}")
    return study


# --- running -------------------------------------------------------------------------------------------------------


class StudyState:
    """``out/study.json``: which configurations finished, under which fingerprint."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def done(self, c: Configuration, fp: str, run_dir: Path) -> bool:
        e = self.data.get(c.slug) or {}
        return e.get("status") == "done" and e.get("fingerprint") == fp and (run_dir / "results.json").is_file()

    def set(self, c: Configuration, fp: str, status: str, code: int | None) -> None:
        self.data[c.slug] = {"name": c.name, "status": status, "fingerprint": fp, "exit_code": code,
                             "at": time.time()}  # fmt: skip
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        os.replace(tmp, self.path)


STATUS = {0: "done", 1: "incomplete", 3: "aborted", 130: "interrupted"}


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run_study(study: Study, overrides: dict[str, Any] | None = None, only: list[str] | None = None,
              note: Any = None, poll: float = 0.5, before_server: Any = None) -> int:  # fmt: skip
    """Run the study; returns 0 when every configuration finished, else the first non-zero exit code.
    ``before_server(name)`` is called before each server this run needs starts (``scorecheck cloud``: the other
    nodes start their replicas of it)."""
    note = note or (lambda m: print(m, file=sys.stderr, flush=True))
    state = StudyState(study.out / "study.json")
    wanted = [c for c in study.configurations if not only or c.name in only or c.slug in only]
    if only and not wanted:
        raise UsageError(
            f"no configuration named {', '.join(only)}; have {', '.join(c.name for c in study.configurations)}"
        )
    worst = 0
    old_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        for sname, spec in study.servers.items():
            todo = []
            for c in wanted:
                if c.server != sname:
                    continue
                fp = study.fingerprint(c, overrides)
                if state.done(c, fp, study.run_dir(c)):
                    note(f"{c.name}: finished earlier ({study.run_dir(c)}), skipped")
                else:
                    todo.append((c, fp))
            if not todo:
                continue
            check_ready_to_run(study, [c for c, _ in todo], overrides)
            if before_server is not None:
                before_server(sname)
            code = _run_server(study, sname, spec, todo, state, overrides, note, poll)
            worst = worst or code
    finally:
        signal.signal(signal.SIGTERM, old_term)
    return worst


def check_ready_to_run(study: Study, configs: list[Configuration], overrides: dict[str, Any] | None) -> None:
    """Before a server starts (minutes on a GPU box): the evals exist, the prompts resolve, the data is here."""
    from scorecheck import config as cfgmod
    from scorecheck.config import Resolved

    loaded: set[tuple[str, str, int | None]] = set()
    for c in configs:
        values = study.run_values(c, overrides)
        values["endpoints"] = [{"base_url": "http://127.0.0.1:1/v1"}]
        cfg = cfgmod.build(values, {}, origin=f"{study.path}: configuration {c.name!r}")
        try:
            rc = Resolved(cfg)
        except ScorecheckError as e:
            raise type(e)(f"configuration {c.name!r}: {e}") from None
        for b in rc.benchmarks:
            key = (b.name, rc.profile.name, cfg.limit)
            if key not in loaded:
                b.load(cfg.limit)
                loaded.add(key)


class Replicas:
    """A server's replicas (base URLs), which of them answer, and notes when one stops or comes back.

    The same for replicas started here (``replicas = N``: a dead process) and on other nodes (``num_nodes``: its
    ``/v1/models`` stops answering): a lost replica is reported and the run goes on on the others (the client
    passes over an endpoint that refuses connections); when none is left, the run stops, resumable."""

    def __init__(self, urls: list[str], model: str, group: ServerGroup | None, note: Any, every: float = 5.0) -> None:
        self.urls = list(urls)
        self.model = model
        self.local = {s.base_url: s for s in (group.servers if group else [])}
        self.note = note
        self.every = every
        self.lost: dict[str, str] = {}
        self._next = 0.0

    def _why_down(self, url: str) -> str | None:
        server = self.local.get(url)
        if server is not None:
            try:
                server.check_alive()
            except ScorecheckError as e:
                return str(e)
            return None
        names = models_listed(url, timeout=3.0)
        if names is None:
            return "it stopped answering"
        return None if self.model in names else f"it no longer lists {self.model}"

    def wait_ready(self, urls: list[str], timeout: float) -> None:
        """Wait until every URL in ``urls`` lists the model; one still not ready at ``timeout`` is left out."""
        t0 = time.monotonic()
        waiting = list(urls)
        next_note = t0
        while waiting and time.monotonic() - t0 < timeout:
            waiting = [u for u in waiting if self.model not in (models_listed(u, timeout=3.0) or [])]
            if waiting and time.monotonic() >= next_note:
                self.note(f"waiting for {len(waiting)} of {len(self.urls)} replicas ({', '.join(waiting)}), "
                          f"{time.monotonic() - t0:.0f}s of {timeout:.0f}s")  # fmt: skip
                next_note = time.monotonic() + 30
            if waiting:
                time.sleep(0.5)
        for u in waiting:
            self.lost[u] = f"not ready after {timeout:.0f}s"
            self.note(f"replica {u}: not ready after {timeout:.0f}s; left out")
        if self.live:
            self.note(f"{len(self.live)} of {len(self.urls)} replicas ready: {', '.join(self.live)}")

    @property
    def live(self) -> list[str]:
        return [u for u in self.urls if u not in self.lost]

    def check(self, force: bool = False) -> None:
        """Note replicas lost or back; raise when none is left."""
        due = force or time.monotonic() >= self._next  # other nodes: every few seconds; processes here: always
        if due:
            self._next = time.monotonic() + self.every
        for u in self.urls:
            if not due and u not in self.local:
                continue
            why = self._why_down(u)
            if why and u not in self.lost:
                self.lost[u] = why
                self.note(f"replica {u} lost ({why}); {len(self.live)} of {len(self.urls)} left, the run goes on on "
                          "them")  # fmt: skip
            elif why is None and u in self.lost:
                del self.lost[u]
                self.note(f"replica {u} is back; {len(self.live)} of {len(self.urls)} up")
        if not self.live:
            raise ScorecheckError("every replica of the server is gone: " +
                                  "; ".join(f"{u}: {w}" for u, w in self.lost.items()))  # fmt: skip

    def record(self) -> dict[str, Any]:
        return {"replicas": self.urls, "lost": dict(self.lost)}


def _run_server(study: Study, sname: str, spec: ServerSpec, todo: list[tuple[Configuration, str]],
                state: StudyState, overrides: dict[str, Any] | None, note: Any, poll: float) -> int:  # fmt: skip
    group: ServerGroup | None = None
    if sname in study.server_urls:
        urls = study.server_urls[sname]
        identity: Any = {
            "engine": spec.engine,
            "model": spec.model_name,
            "base_urls": urls,
            "started_by": "not scorecheck",
        }
        note(f"server {sname}: using {', '.join(urls)}")
    else:
        note(f"server {sname}: starting {spec.engine} ({spec.model_name}) …")
        group = ServerGroup(spec, study.out / "servers", progress=note)
        group.start()
        urls = group.base_urls
        identity = group.identity()
    remote = study.node_urls.get(sname, [])
    replicas = Replicas([*urls, *remote], spec.model_name, group, note)
    procs: dict[str, tuple[Configuration, str, subprocess.Popen[bytes]]] = {}
    try:
        if remote:
            replicas.wait_ready(remote, spec.ready_timeout)
            identity = {"here": identity, "other_nodes": remote}
        for c, fp in todo:
            rd = study.run_dir(c)
            rd.mkdir(parents=True, exist_ok=True)
            write_identity(rd / "server.json", identity)
            values = study.run_values(c, overrides)
            values["endpoints"] = [{"base_url": u} for u in replicas.live]
            job = rd / "study-job.json"
            job.write_text(json.dumps({"values": values, "origin": f"{study.path}: configuration {c.name!r}"}))
            log = open(rd / "run.log", "ab")
            procs[c.slug] = (c, fp, subprocess.Popen([sys.executable, "-m", "scorecheck.study", str(job)],
                                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))  # fmt: skip
            log.close()
            state.set(c, fp, "running", None)
            note(f"{c.name}: running on {sname} → {rd}/ (log {rd}/run.log)")
        worst = 0
        while procs:
            time.sleep(poll)
            for slug, (c, fp, p) in list(procs.items()):
                code = p.poll()
                if code is None:
                    continue
                del procs[slug]
                status = STATUS.get(code, "failed")
                state.set(c, fp, status, code)
                tail = "" if code == 0 else ": " + _tail(study.run_dir(c) / "run.log")
                note(f"{c.name}: {status} (exit {code}){tail}")
                worst = worst or code
            if procs and (group is not None or remote):
                try:
                    replicas.check()
                except ScorecheckError as e:
                    _stop_children(procs)
                    for c, fp, p in procs.values():
                        state.set(c, fp, "interrupted", p.returncode)
                    procs.clear()
                    raise ScorecheckError(f"{e}. Everything finished is kept: run the same command to resume") from None
        if replicas.lost:
            write_identity(study.out / "servers" / f"{sname}-replicas.json", replicas.record())
        return worst
    except KeyboardInterrupt:
        _stop_children(procs)
        for c, fp, p in procs.values():
            state.set(c, fp, "interrupted", p.returncode)
        raise
    finally:
        if group is not None:
            note(f"server {sname}: stopping")
            group.stop()


def _stop_children(procs: dict[str, tuple[Configuration, str, subprocess.Popen[bytes]]]) -> None:
    """SIGINT first (a run saves what finished and exits 130), then SIGKILL."""
    for _c, _fp, p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 30
    for _c, _fp, p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def _tail(path: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


# --- the table -----------------------------------------------------------------------------------------------------


def collect_results(study: Study) -> dict[str, dict[str, Any]]:
    """Each configuration's results.json (those that exist), by configuration name, in study order."""
    out: dict[str, dict[str, Any]] = {}
    for c in study.configurations:
        p = study.run_dir(c) / "results.json"
        if p.is_file():  # read through the model: a corrupt or unknown-version record is an error, never skipped
            out[c.name] = read_results(p).model_dump(mode="json")
    return out


def study_table(results: dict[str, dict[str, Any]]) -> str:
    """The seed-shaped table as Markdown: benchmarks as rows, configurations as columns, scores to 4 decimals.

    Kept apart so that ``scorecheck compare`` can replace it."""
    evals: list[str] = []
    for r in results.values():
        for e in r.get("evals") or {}:
            if e not in evals:
                evals.append(e)
    evals.sort(key=lambda e: (EVAL_ORDER.index(e) if e in EVAL_ORDER else len(EVAL_ORDER), e))
    cols = list(results)
    lines = ["| benchmark | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for e in evals:
        cells = []
        for c in cols:
            er = (results[c].get("evals") or {}).get(e)
            score = er.get("score") if er else None
            cells.append("—" if score is None else f"{score:.4f}")
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(study: Study) -> str:
    table = study_table(collect_results(study))
    study.out.mkdir(parents=True, exist_ok=True)
    (study.out / "summary.md").write_text(f"# {study.name}\n\n{table}\n")
    return table


def write_report(study: Study, console: Any = None) -> dict[str, Path]:
    """The study's closing report (``scorecheck compare`` over its configurations): printed, and written as
    report.html, report.md, report.csv, report.json and scores.png in the study directory; with ``references``,
    the claims beside the measured numbers and ``scorecheck audit``'s verdicts (audit.md, audit.json)."""
    from scorecheck.compare import audit, compare, write_reports
    from scorecheck.compare.references import load_reference

    done = [c for c in study.configurations if (study.run_dir(c) / "results.json").is_file()]
    if not done:
        return {}
    refs = [load_reference(r) for r in study.references]
    cmp = compare([study.run_dir(c) for c in done], labels=[c.name for c in done], references=refs)
    o = study.out
    written = write_reports(cmp, markdown=o / "report.md", csv=o / "report.csv", json=o / "report.json",
                            html=o / "report.html", plot=o / "scores.png", console=console)  # fmt: skip
    if refs:
        findings = audit.audit(cmp)
        write_atomic(o / "audit.md", audit.markdown(findings, audit.DEFAULT_TOLERANCE))
        doc = {"tolerance": audit.DEFAULT_TOLERANCE, "method": audit.method_note(audit.DEFAULT_TOLERANCE),
               "findings": [f.as_dict() for f in findings]}  # fmt: skip
        write_atomic(o / "audit.json", json.dumps(doc, indent=2) + "\n")
        written.update({"audit markdown": o / "audit.md", "audit json": o / "audit.json"})
        if console is not None:
            for f in findings:
                console.print(f"{f.label} · {f.column} · {f.run}: {f.verdict}", markup=False)
    return written


# --- the child process: one configuration ----------------------------------------------------------------------------


def _exec_job(job_path: str) -> int:
    """``python -m scorecheck.study JOB``: run one configuration (config.build + session.execute), quietly."""
    from rich.console import Console

    from scorecheck import config as cfgmod
    from scorecheck.session import execute

    job = json.loads(Path(job_path).read_text())
    err = Console(stderr=True)
    try:
        cfg = cfgmod.build(job["values"], {}, origin=job.get("origin", "study"))
        return execute(cfg, show_progress=False, console=Console(), err=err)
    except ScorecheckError as e:
        err.print(f"error: {e}", highlight=False, soft_wrap=True)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(_exec_job(sys.argv[1]))
