"""One self-contained HTML report: the table, a chart, the diagnostics, claims and a transcript browser.

Model output is untrusted. The tables are rendered by Jinja2 with autoescape on; the samples travel as JSON inside
``<script type="application/json">`` with ``<``, ``>``, ``&`` and U+2028/2029 written as ``\\uXXXX`` (so no
``</script>`` can close the block), and the page's script puts them into the DOM with ``textContent`` only. A
Content-Security-Policy allows only the page's own script (by nonce): an injected script or ``onerror`` handler would
not run even if escaping failed. Bidi controls (an RTL override reorders what follows it) and other invisible control
characters are shown as ``⟦U+202E⟧`` markers, in the tables and in the transcripts (results.hygiene).
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

from markupsafe import Markup

from scorecheck.compare import explain, render
from scorecheck.compare.audit import audit
from scorecheck.compare.explain import Explanation
from scorecheck.compare.model import Comparison, sample_disagrees
from scorecheck.results.hygiene import visible_controls

TEMPLATES = Path(__file__).resolve().parent / "templates"
FLAG_KEYS = ("unparsed", "truncated", "missing_tag", "failed", "http_400", "judge_failed")


def script_json(obj: Any) -> str:
    """JSON safe to place inside a ``<script>`` element."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))  # fmt: skip


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return visible_controls(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str))


def _finalize(v: Any) -> Any:
    """Every value the template prints, with bidi and invisible controls made visible (the JSON block is Markup, and
    its strings were made visible by ``_text``)."""
    return visible_controls(v) if isinstance(v, str) and not isinstance(v, Markup) else v


def sample_payload(cmp: Comparison) -> dict[str, Any]:
    prompts: dict[str, str] = {}
    rows = []
    for ri, run in enumerate(cmp.runs):
        for s in run.samples:
            e, item = str(s.get("eval")), str(s.get("item_id"))
            pk = f"{e}\x00{item}"
            prompt = _text(s.get("prompt"))
            if prompt is not None and prompts.get(pk, prompt) != prompt:  # same item, different prompt text
                pk = f"{pk}\x00{ri}"
            if prompt is not None:
                prompts.setdefault(pk, prompt)
            flags = s.get("flags") or {}
            rows.append({
                "r": ri, "e": visible_controls(e), "i": visible_controls(item), "k": s.get("sample_index", 0), "p": pk,
                "resp": _text(s.get("response")), "reas": _text(s.get("reasoning")), "ans": _text(s.get("answer_text")),
                "x": _text(s.get("extracted")), "g": _text(s.get("gold")), "sc": s.get("score"),
                "gr": _text(s.get("grader")), "det": _text(s.get("grader_detail")) or _text(s.get("error")),
                "fr": _text(s.get("finish_reason")), "f": [k for k in FLAG_KEYS if flags.get(k)],
                "d": sample_disagrees(s),
            })  # fmt: skip
    systems = []
    for r in cmp.runs:
        sp = r.config.get("system_prompt")
        systems.append(_text(sp.get("text")) if isinstance(sp, dict) else _text(sp))
    return {"runs": [_text(r.label) for r in cmp.runs], "systems": systems, "prompts": prompts, "samples": rows}


def _with_verdicts(cmp: Comparison, header: list[str], rows: list[list[str]]) -> tuple[list[str], list[list[str]]]:
    """The claims table with ``scorecheck audit``'s verdict per run (and its reasons) as one more column per run."""
    found = {(f.reference, f.column, f.label, f.run): f for f in audit(cmp)}
    header = header + [f"{r.label}: verdict" for r in cmp.runs]
    out = []
    for claim, row in zip(cmp.claims, rows, strict=True):
        extra = []
        for r in cmp.runs:
            f = found.get((claim["reference"], claim["column"], claim["label"], r.label))
            extra.append("—" if f is None else f.verdict + (f" ({'; '.join(f.reasons)})" if f.reasons else ""))
        out.append(row + extra)
    return header, out


def to_html(cmp: Comparison, chart_png: bytes | None = None, explanations: list[Explanation] | None = None) -> str:
    """The page; ``explanations`` (``explain.explain``, two runs, or ``explain.explain_protocol``) add the waterfall."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      finalize=_finalize)  # fmt: skip
    tmpl = env.get_template("report.html.j2")
    claim_header, claim_rows = render.claim_rows(cmp) if cmp.claims else ([], [])
    if cmp.claims:
        claim_header, claim_rows = _with_verdicts(cmp, claim_header, claim_rows)
    table = []
    for e, m in cmp.rows:
        cells = []
        for r in cmp.runs:
            c = cmp.cells.get((e, m, r.label))
            cells.append({"score": render.fmt(c.score) if c else "—", "ci": render.fmt_ci(c.ci95) if c else "",
                          "n": (f"{c.n} subjects" if c.note == "subjects" else f"n={c.n}") if c and c.n is not None else None, "problems": c.problems if c else []})  # fmt: skip
        table.append({"name": render.row_name(e, m), "cells": cells})
    return tmpl.render(
        nonce=secrets.token_urlsafe(16),
        runs=[{"label": r.label, "describe": r.describe(), "path": str(r.path)} for r in cmp.runs],
        table=table,
        legend=render.LEGEND,
        paired_header=render.PAIRED_HEADER,
        paired_rows=render.paired_rows(cmp),
        diag_header=render.DIAG_HEADER,
        diag_rows=render.diagnostics_rows(cmp),
        claim_header=claim_header,
        claim_rows=claim_rows,
        references=cmp.references,
        notes=cmp.notes,
        chart=base64.b64encode(chart_png).decode() if chart_png else None,
        waterfalls=[
            {
                "title": f"{x.eval}: {x.a} → {x.b} ({x.n_common} samples {'graded' if x.protocol else 'in common'})",
                "rows": explain.rows(x),
                "notes": [f"{st.label}: {st.note}" for st in x.steps if st.note]
                + x.notes
                + ([explain.unmeasured_line(x.unmeasured)] if x.unmeasured is not None else []),
            }
            for x in explanations or []
        ],  # fmt: skip
        waterfall_header=explain.HEADERS,
        waterfall_method=explain.METHOD,
        waterfall_chart=base64.b64encode(explain.plot_png(explanations)).decode() if explanations else None,
        data=Markup(script_json(sample_payload(cmp))),
    )
