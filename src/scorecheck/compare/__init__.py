"""``scorecheck compare``: several runs side by side, with intervals, paired tests, diagnostics and claims.

``compare(paths)`` builds the comparison (``model.py``); ``render`` writes it for the terminal, Markdown, CSV and JSON,
``html`` one self-contained page with a transcript browser, ``plot`` a PNG chart. ``write_reports`` does all of it,
for the ``compare`` command and for anything else (a study) that ends with a table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scorecheck.compare.model import Comparison, compare

__all__ = ["Comparison", "compare", "write_reports"]


def _explanations(cmp: Comparison) -> list[Any]:
    """Two runs: the waterfall of B - A per eval (``scorecheck explain``) for the HTML report; none where the runs
    cannot be explained (no common samples), with the reason in the report's notes."""
    from scorecheck.compare.explain import explain_runs
    from scorecheck.errors import ScorecheckError

    if len(cmp.runs) != 2:
        return []
    try:
        return explain_runs(cmp.runs[0], cmp.runs[1])
    except ScorecheckError as e:
        cmp.notes.append(f"no waterfall: {e}")
        return []


def write_reports(cmp: Comparison, *, markdown: Path | None = None, csv: Path | None = None, json: Path | None = None,
                  html: Path | None = None, plot: Path | None = None, console: Any = None,
                  terminal: bool = True) -> dict[str, Path]:  # fmt: skip
    """Print the terminal table and write each requested file; returns what was written."""
    from scorecheck.compare import render

    written: dict[str, Path] = {}
    if terminal:
        render.to_terminal(cmp, console)
    if markdown:
        Path(markdown).write_text(render.to_markdown(cmp))
        written["markdown"] = Path(markdown)
    if csv:
        Path(csv).write_text(render.to_csv(cmp))
        written["csv"] = Path(csv)
    if json:
        Path(json).write_text(render.to_json(cmp))
        written["json"] = Path(json)
    png = None
    if plot or html:
        from scorecheck.compare.plot import plot_png

        png = plot_png(cmp, Path(plot) if plot else None)
        if plot:
            written["plot"] = Path(plot)
    if html:
        from scorecheck.compare.html import to_html

        Path(html).write_text(to_html(cmp, png, explanations=_explanations(cmp)), encoding="utf-8")
        written["html"] = Path(html)
    return written
