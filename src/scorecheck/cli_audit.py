"""The ``scorecheck audit`` command (registered on the main app by ``register``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from scorecheck.stats import AUDIT_TOLERANCE


def register(app: typer.Typer) -> None:
    @app.command("audit")
    def audit_cmd(
        run_dirs: Annotated[
            list[Path], typer.Argument(metavar="RUN_DIR", help="Run directories (each with results.json).")
        ],
        reference: Annotated[
            list[str],
            typer.Option(
                "--reference",
                "-r",
                metavar="TABLE",
                help="Claims to check: a shipped table (seed, glaive, meta-llama-3.1-70b) or a TOML file; repeatable.",
            ),
        ],
        label: Annotated[
            Optional[list[str]],
            typer.Option(
                "--label", metavar="NAME", show_default="the directory name", help="A name per run, in order."
            ),
        ] = None,
        tolerance: Annotated[
            float,
            typer.Option(
                metavar="FRACTION",
                help="'consistent' only when the items detect a difference this large with 80% power.",
            ),
        ] = AUDIT_TOLERANCE,
        markdown: Annotated[
            Optional[Path],
            typer.Option(
                "--markdown", "--md", metavar="FILE", show_default="not written", help="Write the verdicts as Markdown."
            ),
        ] = None,
        json_out: Annotated[
            Optional[Path],
            typer.Option(
                "--json",
                envvar="SCORECHECK_AUDIT_JSON",
                metavar="FILE",
                show_default="not written",
                help="Write the verdicts as JSON.",
            ),
        ] = None,
    ) -> None:
        """A verdict for every claimed number: consistent, lower/higher than claimed, not comparable, inconclusive."""
        from rich.console import Console
        from rich.table import Table

        from scorecheck.cli import _fail
        from scorecheck.compare import audit as au
        from scorecheck.compare import compare
        from scorecheck.compare.references import load_reference
        from scorecheck.errors import ScorecheckError

        try:
            refs = [load_reference(r) for r in reference]
            findings = au.audit(compare(run_dirs, labels=label, references=refs), tolerance=tolerance)
        except ScorecheckError as e:
            _fail(e)
            return
        table = Table(title="claims checked", show_lines=False)
        for col in ("claim", "run", "claimed", "measured", "diff", "p (Holm)", "verdict"):
            table.add_column(col, overflow="fold")
        for f in findings:
            table.add_row(f"{f.label} · {f.column}", f.run, f"{f.claimed:.4f}",
                          "-" if f.measured is None else f"{f.measured:.4f}",
                          "-" if f.diff is None else f"{f.diff:+.4f}",
                          "-" if f.p_holm is None else f"{f.p_holm:.2g}", f.verdict)  # fmt: skip
        console = Console()
        console.print(table)
        for f in findings:
            if f.reasons:
                console.print(f"{f.label} · {f.column} · {f.run}: {f.verdict}: {'; '.join(f.reasons)}", markup=False)
        console.print(au.method_note(tolerance), markup=False)
        if markdown:
            markdown.write_text(au.markdown(findings, tolerance))
            print(f"wrote markdown: {markdown}")
        if json_out:
            doc = {"tolerance": tolerance, "method": au.method_note(tolerance),
                   "findings": [f.as_dict() for f in findings]}  # fmt: skip
            json_out.write_text(json.dumps(doc, indent=2) + "\n")
            print(f"wrote json: {json_out}")
