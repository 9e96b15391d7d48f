"""The one builder of results.json (run, regrade, grade and study all go through :func:`build_results`), and the
split of stored samples into samples.jsonl records (item order, no timing) and timings.jsonl records."""

from __future__ import annotations

import platform
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from scorecheck import __version__
from scorecheck.results.models import TIMING_FIELDS, Results, Sample, ScorecheckInfo, Timing

VERSIONED_PACKAGES = ("aiohttp", "pandas", "math-verify", "latex2sympy2_extended", "sympy", "xllamacpp", "scipy")


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in VERSIONED_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def scorecheck_info() -> ScorecheckInfo:
    return ScorecheckInfo(version=__version__, git_commit=git_commit(), versions=versions())


def build_results(*, model: str, protocol: Mapping[str, Any], config: Mapping[str, Any],
                  evals: Mapping[str, Mapping[str, Any]], notes: Sequence[str], started: float, ended: float,
                  base: Results | None = None, **fields: Any) -> Results:  # fmt: skip
    """results.json. ``base``: the record this one revises (a regrade keeps the run's identity, endpoints and data
    hashes; what is given here replaces it). ``fields``: the other fields of :class:`Results` (model_identity,
    endpoints, tokens, judge, source, regrade, ...); a field set to None is left out."""
    d: dict[str, Any] = base.model_dump(mode="json") if base is not None else {}
    d.pop("schema_version", None)
    if base is not None:
        d.pop("judge", None)  # a revision's judge is its own (or none)
        fields = {"started": base.started, "ended": base.ended, "wall_s": base.wall_s, **fields}
    else:
        fields = {"started": started, "ended": ended, "wall_s": round(ended - started, 3), **fields}
    d.update({
        "scorecheck": scorecheck_info().model_dump(mode="json"),
        "protocol": {**d.get("protocol", {}), **dict(protocol)},  # a regrade under another protocol names it
        "model": d.get("model") or model,
        "config": dict(config),
        "evals": {k: dict(v) for k, v in evals.items()},
        "notes": list(notes),
    })  # fmt: skip
    d.update({k: v for k, v in fields.items() if v is not None})
    return Results.model_validate(d)


def _natural(item_id: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", item_id))


def in_item_order(records: Iterable[Mapping[str, Any]], evals: Sequence[str] = (),
                  items: Mapping[str, Sequence[str]] | None = None) -> list[Mapping[str, Any]]:  # fmt: skip
    """Records in item order: eval (in ``evals`` order, then by name), item (in ``items[eval]`` order, the order the
    data was loaded in; else natural order of the id), sample index."""
    eval_pos = {e: i for i, e in enumerate(evals)}
    item_pos = {e: {it: i for i, it in enumerate(ids)} for e, ids in (items or {}).items()}

    def key(r: Mapping[str, Any]) -> tuple[Any, ...]:
        e, it = str(r["eval"]), str(r["item_id"])
        pos = item_pos.get(e, {}).get(it)
        return (eval_pos.get(e, len(eval_pos)), e, (0, pos) if pos is not None else (1, _natural(it)),
                int(r.get("sample_index") or 0))  # fmt: skip

    return sorted(records, key=key)


def split_timing(record: Mapping[str, Any]) -> tuple[Sample, Timing]:
    """A stored sample as its samples.jsonl record (no timing fields) and its timings.jsonl record."""
    rec = dict(record)
    timing = {"eval": record["eval"], "item_id": record["item_id"], "sample_index": record.get("sample_index", 0)}
    for name, path in TIMING_FIELDS.items():
        parent, key = rec, path[-1]
        for p in path[:-1]:  # copy the nested dicts on the way: the stored record is left as it was
            if not isinstance(parent.get(p), dict):
                break
            parent[p] = dict(parent[p])
            parent = parent[p]
        else:
            if key in parent:
                timing[name] = parent.pop(key)
    rec.setdefault("schema_version", Sample.model_fields["schema_version"].default)
    return Sample.model_validate(rec), Timing.model_validate(timing)
