"""The comparison as text: terminal (Rich), Markdown, CSV and JSON.

The seed's layout: benchmarks as rows, configurations as columns, 4 decimals; each cell with its 95% interval and n,
and a ``!`` marker when the cell has a problem (listed under the diagnostics, never averaged away)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

from scorecheck.compare.model import Cell, Comparison
from scorecheck.results.hygiene import csv_cell

NS = "≈"  # marks a paired difference that is not significant at 5%
FLAG = "!"


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def fmt_ci(ci: list[float] | tuple[float, float] | None) -> str:
    return "" if not ci else f"[{ci[0]:.4f}, {ci[1]:.4f}]"


def fmt_signed(x: float | None) -> str:
    return "-" if x is None else f"{x:+.4f}"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def row_name(e: str, m: str) -> str:
    return e if m == "score" else f"{e} ({m})"


def cell_text(c: Cell | None, with_ci: bool = True) -> str:
    if c is None:
        return "—"
    s = fmt(c.score)
    if with_ci and c.ci95:
        s += f" {fmt_ci(c.ci95)}"
    if c.n is not None:
        s += f" {c.n} subjects" if c.note == "subjects" else f" n={c.n}"
    if c.problems:
        s += f" {FLAG}"
    return s


def paired_marker(p: dict[str, Any]) -> str:
    if p.get("p_value") is None:
        return ""
    return "" if p.get("significant") else NS


def diagnostics_rows(cmp: Comparison) -> list[list[str]]:
    rows = []
    for e in cmp.evals:
        for r in cmp.runs:
            c = cmp.cells.get((e, "score", r.label))
            if c is None:
                continue
            dis = c.disagreement
            dis_txt = f"{dis['differ']}/{dis['compared']} ({dis['kind']})" if dis else "-"
            rows.append([
                e, r.label, f"{c.rates.get('unparsed', 0):.1%}", f"{c.rates.get('truncated', 0):.1%}",
                f"{c.rates.get('missing_tag', 0):.1%}", str(c.counts.get("failed", 0)),
                str(c.counts.get("http_400", 0)), ", ".join(f"{k} ({v})" for k, v in c.graders.items()) or "-",
                dis_txt, "; ".join(c.problems) or "ok",
            ])  # fmt: skip
    return rows


DIAG_HEADER = ["eval", "config", "unparsed", "truncated", "missing tag", "failed", "HTTP 400", "grader",
               "disagreement", "problems"]  # fmt: skip
PAIRED_HEADER = ["eval", "A", "B", "n paired", "A", "B", "B − A", "95% CI", "p", "test", ""]
CLAIM_HEADER = ["reference", "claim", "claimed", "protocol"]


def paired_rows(cmp: Comparison) -> list[list[str]]:
    return [
        [p["eval"], p["a"], p["b"], str(p["n"]), fmt(p["mean_a"]), fmt(p["mean_b"]), fmt_signed(p["diff"]),
         fmt_ci(p["ci95"]), fmt_p(p["p_value"]), p["test"], paired_marker(p) or ("*" if p.get("significant") else "")]
        for p in cmp.paired
    ]  # fmt: skip


def claim_rows(cmp: Comparison, brief: bool = False) -> tuple[list[str], list[list[str]]]:
    """One row per claim; ``brief`` (the terminal): measured claims only, without the protocol details."""
    header = (CLAIM_HEADER[:3] if brief else CLAIM_HEADER) + [f"{r.label}: measured − claim" for r in cmp.runs]
    rows = []
    for c in cmp.claims:
        if brief and not any(c["runs"].values()):
            continue
        row = [c["column"], c["label"], fmt(c["claimed"])] + ([] if brief else [c["protocol_text"]])
        for r in cmp.runs:
            m = c["runs"].get(r.label)
            if m is None:
                row.append("not measured")
                continue
            inside = {True: "inside CI", False: "outside CI", None: "no CI"}[m["inside_ci"]]
            kind = m["kind"]
            if kind == "unlike protocol":
                kind = "UNLIKE PROTOCOL" + ("" if brief else " (" + "; ".join(m["differences"]) + ")")
            elif kind == "subset":
                kind = "same protocol, subset"
            elif kind == "deviates from protocol":
                kind = "DEVIATES FROM PROTOCOL" + ("" if brief else " (" + "; ".join(m["differences"]) + ")")
            row.append(f"{fmt_signed(m['diff'])} ({inside}; {kind})")
        rows.append(row)
    return header, rows


def table_rows(cmp: Comparison) -> list[list[str]]:
    return [[row_name(e, m), *(cell_text(cmp.cells.get((e, m, r.label))) for r in cmp.runs)] for e, m in cmp.rows]


LEGEND = (f"Cells: score [95% CI] n; {FLAG} = the cell has a problem (see diagnostics). Paired tests on the items "
          f"both configurations answered: exact McNemar for 0/1 scores, paired bootstrap otherwise; {NS} = not "
          "significant at 5%, * = significant.")  # fmt: skip


def to_terminal(cmp: Comparison, console: Any = None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    console = console or Console()

    def plain(row: list[str]) -> list[Text]:  # labels and model names are data, never Rich markup
        return [Text(c) for c in row]

    t = Table(title="scorecheck compare", caption=LEGEND)
    t.add_column("eval")
    for r in cmp.runs:
        t.add_column(f"{escape(r.label)}\n[dim]{escape(r.describe())}[/]", justify="right")
    for row in table_rows(cmp):
        t.add_row(*plain(row))
    console.print(t)
    if cmp.paired:
        pt = Table(title="paired differences on the items both answered")
        for h in ("eval", "A → B", "n", "B − A [95% CI]", "p", "test", ""):
            pt.add_column(h, justify="left" if h in ("eval", "A → B", "test") else "right")
        for p in cmp.paired:
            pt.add_row(*plain([p["eval"], f"{p['a']} → {p['b']}", str(p["n"]),
                               f"{fmt_signed(p['diff'])} {fmt_ci(p['ci95'])}", fmt_p(p["p_value"]), p["test"],
                               paired_marker(p) or ("*" if p.get("significant") else "")]))  # fmt: skip
        console.print(pt)
    dt = Table(title="diagnostics (share of items)")
    for h in ("eval", "config", "unparsed", "trunc.", "no tag", "failed", "400", "grader", "disagree", "problems"):
        dt.add_column(h)
    for row in diagnostics_rows(cmp):
        style = "" if row[-1] == "ok" else "yellow"
        dt.add_row(*plain(row), style=style)
    console.print(dt)
    header, rows = claim_rows(cmp, brief=True) if cmp.claims else ([], [])
    if rows:
        ct = Table(title="claimed numbers (UNLIKE / DEVIATES: not a reproduction; details in --md/--html/--json)")
        for h in header:
            ct.add_column(h)
        for row in rows:
            ct.add_row(*plain(row))
        console.print(ct)
    for n in cmp.notes:
        console.print(Text.assemble(("note: ", "yellow"), n))


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]  # fmt: skip
    out += ["| " + " | ".join(_md_escape(c) for c in r) + " |" for r in rows]
    return out


def to_markdown(cmp: Comparison) -> str:
    lines = ["# scorecheck compare", ""]
    for r in cmp.runs:
        lines.append(f"- **{_md_escape(r.label)}**: {_md_escape(r.describe())} (`{_md_escape(str(r.path))}`)")
    lines += ["", *_md_table(["eval", *[r.label for r in cmp.runs]], table_rows(cmp)), "", LEGEND, ""]
    if cmp.paired:
        lines += ["## Paired differences (B − A)", "", *_md_table(PAIRED_HEADER, paired_rows(cmp)), ""]
    lines += ["## Diagnostics", "", *_md_table(DIAG_HEADER, diagnostics_rows(cmp)), ""]
    if cmp.claims:
        header, rows = claim_rows(cmp)
        lines += ["## Claimed numbers", "", *_md_table(header, rows), ""]
        for ref in cmp.references:
            lines.append(f"- {_md_escape(ref['title'])}: {_md_escape(ref.get('source') or '')}")
        lines.append("")
    if cmp.notes:
        lines += ["## Notes", "", *[f"- {_md_escape(n)}" for n in cmp.notes], ""]
    return "\n".join(lines)


CSV_FIELDS = ["section", "eval", "metric", "config", "config_b", "score", "ci_low", "ci_high", "n", "unparsed",
              "truncated", "missing_tag", "failed", "http_400", "graders", "problems", "diff", "p_value", "test",
              "significant", "claimed", "reference", "claim", "inside_ci", "kind"]  # fmt: skip


class _SafeWriter(csv.DictWriter):
    """Every text cell neutralised against spreadsheet formulas (results.hygiene.csv_cell); numbers untouched."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({k: csv_cell(v) for k, v in rowdict.items()})


def to_csv(cmp: Comparison) -> str:
    buf = io.StringIO()
    # CRLF, as RFC 4180: a cell holding a bare CR is then quoted too (with "\n" only an LF is), so no cell splits a row
    w = _SafeWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\r\n")
    w.writeheader()
    for e, m in cmp.rows:
        for r in cmp.runs:
            c = cmp.cells.get((e, m, r.label))
            if c is None:
                continue
            w.writerow({
                "section": "cell", "eval": e, "metric": m, "config": r.label, "score": c.score,
                "ci_low": c.ci95[0] if c.ci95 else "", "ci_high": c.ci95[1] if c.ci95 else "", "n": c.n,
                **{f: c.counts.get(f, "") for f in ("unparsed", "truncated", "missing_tag", "failed", "http_400")},
                "graders": ";".join(f"{k}={v}" for k, v in c.graders.items()), "problems": "; ".join(c.problems),
            })  # fmt: skip
    for p in cmp.paired:
        w.writerow({
            "section": "paired", "eval": p["eval"], "metric": p["metric"], "config": p["a"], "config_b": p["b"],
            "n": p["n"], "diff": p["diff"], "ci_low": p["ci95"][0] if p["ci95"] else "",
            "ci_high": p["ci95"][1] if p["ci95"] else "", "p_value": p["p_value"], "test": p["test"],
            "significant": p["significant"],
        })  # fmt: skip
    for claim in cmp.claims:
        for label, m in claim["runs"].items():
            w.writerow({
                "section": "claim", "eval": claim["eval"], "metric": claim["metric"], "config": label,
                "claimed": claim["claimed"], "reference": claim["reference"], "claim": claim["label"], "score": m["measured"] if m else "",
                "diff": m["diff"] if m else "", "inside_ci": m["inside_ci"] if m else "", "kind": m["kind"] if m else "",
            })  # fmt: skip
    return buf.getvalue()


def to_json(cmp: Comparison) -> str:
    return json.dumps(cmp.as_dict(), indent=2, ensure_ascii=False, default=str) + "\n"
