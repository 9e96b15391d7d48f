"""Claimed numbers: reference tables (TOML) shown beside the measured ones.

A reference file has ``name``, ``title``, ``source``, a ``[defaults]`` table and ``[[claim]]`` entries, each with
``eval``, ``metric`` (a row of the comparison: ``score``, ``macro``, ``prompt-strict``, ...), ``value`` (a fraction)
and its protocol: ``protocol``, ``harness``, ``shots``, ``cot``, ``average``, ``split`` (``"not stated"`` where the
claim did not say). A claim is called a reproduction only when its protocol is the run's and the run used the whole
data; otherwise the difference is shown and marked as a comparison across unlike protocols (or a subset).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scorecheck.errors import UsageError

if TYPE_CHECKING:
    from scorecheck.compare.model import Cell, Run

HERE = Path(__file__).resolve().parent / "references"
PROTOCOL_FIELDS = ("protocol", "harness", "shots", "cot", "average", "split")
# What a scorecheck run under a profile is, in the claims' terms.
RUN_PROTOCOLS: dict[str, dict[str, Any]] = {
    "glaive-2024": {"shots": 0, "harness": "scorecheck (glaive-2024 strings)", "average": "micro"},
}


def shipped() -> dict[str, Path]:
    """The shipped reference files by name (``seed``, ``glaive``, ``meta-llama-3.1-70b``)."""
    out = {}
    for p in sorted(HERE.glob("*.toml")):
        try:
            out[tomllib.loads(p.read_text()).get("name") or p.stem] = p
        except tomllib.TOMLDecodeError:
            continue
    return out


def load_reference(spec: str) -> dict[str, Any]:
    """A shipped reference by name, or a TOML file by path."""
    known = shipped()
    path = known.get(spec) or Path(spec)
    if not path.is_file():
        raise UsageError(f"--reference {spec!r}: no such file; shipped references: {', '.join(known)}")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML ({e})") from None
    defaults = doc.get("defaults") or {}
    claims = []
    for i, c in enumerate(doc.get("claim") or []):
        claim = {**defaults, **c}
        for need in ("eval", "value"):
            if need not in claim:
                raise UsageError(f"{path}: claim {i + 1} has no {need!r}")
        value = float(claim["value"])
        if value > 1.0:  # given as a percentage
            value /= 100
        claim["value"] = value
        claim.setdefault("metric", "score")
        claim.setdefault("column", doc.get("title") or path.stem)
        claim.setdefault("label", claim["eval"] + ("" if claim["metric"] == "score" else f" ({claim['metric']})"))
        claims.append(claim)
    return {"name": doc.get("name") or path.stem, "title": doc.get("title") or path.stem, "source": doc.get("source"),
            "path": str(path), "claims": claims}  # fmt: skip


def _protocol_text(c: dict[str, Any]) -> str:
    parts = []
    if c.get("shots") is not None:
        parts.append(f"{c['shots']}-shot")
    if c.get("cot"):
        parts.append(f"CoT: {c['cot']}")
    for k in ("average", "split", "harness"):
        if c.get(k):
            parts.append(f"{k}: {c[k]}")
    return ", ".join(parts)


def _kind(claim: dict[str, Any], run: Run, metric: str) -> tuple[str, list[str]]:
    """``reproduction``, ``subset`` or ``unlike protocol``, with the differences that make it so."""
    run_proto = (run.results.get("protocol") or {}).get("name")
    facts = dict(RUN_PROTOCOLS.get(run_proto or "", {}))
    if metric == "macro":
        facts["average"] = "macro"
    diffs = []
    if claim.get("protocol") != run_proto:
        diffs.append(f"protocol {claim.get('protocol') or 'not stated'} vs {run_proto}")
    for k in ("shots", "average"):
        cv, rv = claim.get(k), facts.get(k)
        if cv is None or rv is None or str(cv).startswith("not stated"):
            continue
        if k == "average" and str(cv).lower() not in (str(rv), "micro", "macro"):
            continue  # pass@1, em_maj1@1, ...: not an average over subjects
        if str(cv).lower() != str(rv).lower():
            diffs.append(f"{k} {cv} vs {rv}")
    for k in PROTOCOL_FIELDS[1:]:
        if str(claim.get(k, "")).startswith("not stated"):
            diffs.append(f"{k} not stated")
    if diffs:
        return "unlike protocol", diffs
    deviations = sampling_deviations(run)
    if deviations:
        return "deviates from protocol", deviations
    limit = (run.config or {}).get("limit")
    if limit:
        return "subset", [f"run used --limit {limit}"]
    return "reproduction", []


def sampling_deviations(run: Run) -> list[str]:
    """Where the run's sampling differs from its protocol's (e.g. max_tokens capped for the embedded model)."""
    from scorecheck.protocols import PROFILES

    profile = PROFILES.get(str((run.results.get("protocol") or {}).get("name")))
    sampling = (run.config or {}).get("sampling") or {}
    if profile is None or not isinstance(sampling, dict):
        return []
    out = []
    for key in ("temperature", "max_tokens"):
        want, got = getattr(profile, key, None), sampling.get(key)
        if want is not None and got is not None and got != want:
            out.append(f"{key} {got} (protocol {want})")
    return out


def match_claims(
    references: list[dict[str, Any]], runs: list[Run], cells: dict[tuple[str, str, str], Cell]
) -> list[dict[str, Any]]:
    out = []
    for ref in references:
        for claim in ref["claims"]:
            row: dict[str, Any] = {
                "reference": ref["name"], "column": claim["column"], "label": claim["label"], "eval": claim["eval"],
                "metric": claim["metric"], "claimed": claim["value"], "k": claim.get("k"), "n": claim.get("n"),
                "protocol": {k: claim.get(k) for k in PROTOCOL_FIELDS}, "protocol_text": _protocol_text(claim),
                "note": claim.get("note") or "", "runs": {},
            }  # fmt: skip
            for run in runs:
                cell = cells.get((claim["eval"], claim["metric"], run.label))
                if cell is None or cell.score is None:
                    row["runs"][run.label] = None
                    continue
                kind, diffs = _kind(claim, run, claim["metric"])
                inside = None
                if cell.ci95:
                    inside = cell.ci95[0] <= claim["value"] <= cell.ci95[1]
                row["runs"][run.label] = {"measured": cell.score, "ci95": cell.ci95, "diff": cell.score - claim["value"],
                                          "inside_ci": inside, "kind": kind, "differences": diffs}  # fmt: skip
            out.append(row)
    return out
