"""The ``scorecheck explain`` command (registered on the main app by ``register``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("explain")
    def explain_cmd(
        run_a: Annotated[Path, typer.Argument(metavar="RUN_A", help="A run or `scorecheck grade` output directory.")],
        run_b: Annotated[Path, typer.Argument(metavar="RUN_B", help="The run whose score the waterfall ends at.")],
        eval_names: Annotated[
            Optional[list[str]],
            typer.Option("--eval", metavar="EVAL", show_default="every eval both runs have", help="Repeatable."),
        ] = None,
        markdown: Annotated[
            Optional[Path],
            typer.Option(
                "--markdown",
                "--md",
                metavar="FILE",
                show_default="not written",
                help="Write the waterfall as Markdown.",
            ),
        ] = None,
        json_out: Annotated[
            Optional[Path],
            typer.Option("--json", metavar="FILE", show_default="not written", help="Write the waterfall as JSON."),
        ] = None,
        plot: Annotated[
            Optional[Path],
            typer.Option(
                "--plot", metavar="FILE.png", show_default="not drawn", help="Draw the waterfall chart (PNG)."
            ),
        ] = None,
    ) -> None:
        """Why two numbers differ: score(B) - score(A) step by step (items, reasoning split, extraction, grader,
        remainder), each a paired difference on the common samples, from the stored responses."""
        from rich.console import Console
        from rich.table import Table

        from scorecheck.cli import _fail
        from scorecheck.compare import explain as ex
        from scorecheck.errors import ScorecheckError

        try:
            xs = ex.explain(run_a, run_b, evals=eval_names)
        except ScorecheckError as e:
            _fail(e)
            return
        console = Console()
        for x in xs:
            table = Table(title=f"{x.eval}: {x.a} -> {x.b} ({x.n_common} samples in common)")
            for col in ex.HEADERS:
                table.add_column(col, overflow="fold")
            for r in ex.rows(x):
                table.add_row(*r)
            console.print(table)
            for s in x.steps:
                if s.note:
                    console.print(f"{s.label}: {s.note}", markup=False, highlight=False)
            for n in x.notes:
                console.print(n, markup=False, highlight=False)
        console.print(ex.METHOD, markup=False, highlight=False)
        if markdown:
            markdown.write_text(ex.markdown(xs))
            print(f"wrote markdown: {markdown}")
        if json_out:
            doc = {"method": ex.METHOD, "evals": [x.as_dict() for x in xs]}
            json_out.write_text(json.dumps(doc, indent=2) + "\n")
            print(f"wrote json: {json_out}")
        if plot:
            ex.plot_png(xs, plot)
            print(f"wrote chart: {plot}")
