"""Regrading a run under another protocol (``scorecheck regrade RUN_DIR --protocol P``).

A stored response can be graded with P's reasoning split, extraction and grader only when P would have sent the same
request for that sample: the same messages (system and user prompt, byte for byte) and the same sampling. This
module compares, per stored sample, the request the run sent (its body in ``store.sqlite``) with the one P builds
for the same item, and says which samples are regradable and, for the others, which fields differ. With
``--force-scoring`` the differing samples are graded too, with the run's own prompt, gold and item data, and marked.
This is what separates "the model answered differently" from "the harness scored differently".
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from scorecheck.benchmarks import Benchmark, Item
from scorecheck.config import Resolved
from scorecheck.errors import UsageError
from scorecheck.protocols import PROFILES, Profile
from scorecheck.store import Store

Key = tuple[str, int]


@dataclass
class EvalPlan:
    regradable: dict[Key, Item] = field(default_factory=dict)
    """Samples whose request P would send byte for byte: graded with P's item."""
    differ: dict[Key, list[str]] = field(default_factory=dict)
    """Samples whose request differs under P, with the differing fields."""
    forced: dict[Key, Item] = field(default_factory=dict)
    """With --force-scoring: the differing samples, graded with the run's own prompt, gold and item data."""

    def selection(self) -> dict[Key, Item]:
        return {**self.regradable, **self.forced}

    def field_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for fields in self.differ.values():
            for f in fields:
                counts[f] = counts.get(f, 0) + 1
        return counts

    def describe(self) -> dict[str, Any]:
        return {
            "regradable": len(self.regradable),
            "not_regradable": len(self.differ),
            "differing_fields": self.field_counts(),
            "not_regradable_samples": [
                {"item_id": i, "sample_index": s, "fields": f} for (i, s), f in self.differ.items()
            ],  # fmt: skip
            "forced": len(self.forced),
        }


def target_profile(protocol: str) -> Profile:
    """``--protocol P``'s profile; an unknown name is a one-line error naming the flag and the known ones."""
    if protocol not in PROFILES:
        raise UsageError(f"--protocol {protocol}: unknown protocol; known: {', '.join(sorted(PROFILES))}")
    return PROFILES[protocol]


def retarget(described: dict[str, Any], protocol: str) -> dict[str, Any]:
    """A run's recorded configuration as it reads under ``protocol``: P's reasoning default, the run's system prompt
    kept (by name where P has that name, else as its literal text), only the evals P defines."""
    profile = target_profile(protocol)
    d = dict(described)
    d["protocol"] = protocol
    d.pop("reasoning", None)
    sp = d.get("system_prompt")
    if isinstance(sp, dict) and sp.get("name") not in (None, "none", "literal") and ":" not in str(sp.get("name")):
        if sp["name"] not in profile.system_prompts:
            d["system_prompt"] = {"name": "literal", "text": sp.get("text")}
    evals = [e for e in d.get("evals") or [] if profile.canonical_eval(e) in profile.evals]
    if not evals:
        raise UsageError(f"--protocol {protocol} defines none of the run's evals ({', '.join(d.get('evals') or [])}); "
                         f"it defines {', '.join(profile.evals)}")  # fmt: skip
    d["evals"] = evals
    return d


def _fields(sent: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The fields in which two request bodies differ (the model name aside: the run's responses are its model's)."""
    out = []
    sm, wm = sent.get("messages") or [], wanted.get("messages") or []

    def role(msgs: list[dict[str, Any]], r: str) -> str | None:
        return next((m.get("content") for m in msgs if m.get("role") == r), None)

    if role(sm, "system") != role(wm, "system"):
        out.append("system prompt")
    if role(sm, "user") != role(wm, "user"):
        out.append("user prompt")
    if [m.get("role") for m in sm] != [m.get("role") for m in wm] and not out:
        out.append("messages")
    for k in sorted((set(sent) | set(wanted)) - {"model", "messages"}):
        if sent.get(k) != wanted.get(k):
            out.append(k)
    return out


def plan(rc: Resolved, items: dict[str, list[Item]], store: Store, force: bool) -> dict[str, EvalPlan]:
    """Per eval of ``rc`` (P's), which stored samples P can regrade as they are, and why the others cannot."""
    plans: dict[str, EvalPlan] = {}
    for b in rc.benchmarks:
        sent = []
        for rec in store.iter_samples(b.name):
            row = store.get_request(rec["request_key"]) if rec.get("request_key") else None
            if row is None or row["status"] not in ("ok", "http_400"):
                continue  # a failed request: nothing to grade under any protocol
            sent.append((rec, json.loads(row["request"])))
        plans[b.name] = plan_eval(rc, b, items[b.name], sent, force)
    return plans


def plan_eval(rc: Resolved, bench: Benchmark, items: list[Item],
              sent: Iterable[tuple[dict[str, Any], dict[str, Any]]], force: bool) -> EvalPlan:  # fmt: skip
    """One eval's plan from its answered samples, each with the request body it was sent with (from the store, or
    as the run's recorded configuration rebuilds it where there is no store)."""
    p = EvalPlan()
    by_id = {it.id: it for it in items}
    drawn = rc.samples_for(bench)
    sampling = rc.sampling()
    for rec, body in sent:
        key = (str(rec["item_id"]), int(rec.get("sample_index") or 0))
        item = by_id.get(key[0])
        if item is None:
            fields = [f"item (not in {rc.profile.name}'s data)"]
        else:
            wanted = {"messages": rc.messages(item.prompt, bench), **sampling}
            fields = _fields(body, wanted)
            if key[1] >= drawn:
                fields.append(f"sample {key[1]} ({rc.profile.name} draws {drawn})")
        if not fields:
            assert item is not None
            p.regradable[key] = item
            continue
        p.differ[key] = fields
        if force:
            p.forced[key] = Item(key[0], rec.get("prompt") or "", rec.get("gold") or "", rec.get("meta") or {})
    return p


def refusal(protocol: str, plans: dict[str, EvalPlan]) -> str:
    per = "; ".join(f"{name}: {', '.join(sorted(p.field_counts()))} differ in {len(p.differ)} of "
                    f"{len(p.differ) + len(p.regradable)} samples" for name, p in plans.items() if p.differ)  # fmt: skip
    return (f"regrade under {protocol} refused: {protocol} would not have sent the run's requests ({per}), so its "
            "grades would not be of the answers its protocol gets. Run it under that protocol instead, or give "
            f"--force-scoring to apply {protocol}'s reasoning split, extraction and grader to the stored responses "
            "anyway (marked as forced in the results)")  # fmt: skip


def mark(p: EvalPlan, records: list[dict[str, Any]]) -> None:
    """Mark the records graded by --force-scoring, with the fields their requests differ in."""
    for r in records:
        fields = p.differ.get((r["item_id"], r["sample_index"]))
        if fields:
            r.setdefault("flags", {})["forced_scoring"] = True
            r["forced_fields"] = fields


def annotate(name: str, protocol: str, p: EvalPlan, result: dict[str, Any], err: Console) -> None:
    """Put the plan into the eval's results and say on stderr which samples were left out or forced."""
    result["protocol"]["regrade"] = p.describe()
    result["scoring_forced"] = bool(p.forced)
    if not p.differ:
        return
    shown = ", ".join(i + (f"#{s}" if s else "") for i, s in list(p.differ)[:10]) + (" …" if len(p.differ) > 10 else "")
    how = "graded anyway (--force-scoring, marked)" if p.forced else "not regradable, left out"
    err.print(f"{name}: {len(p.differ)} sample(s) whose request differs under {protocol} "
              f"({', '.join(sorted(p.field_counts()))}): {how}: {shown}", highlight=False, soft_wrap=True)  # fmt: skip
