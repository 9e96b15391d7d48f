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
        run_b: Annotated[
            Optional[Path],
            typer.Argument(metavar="RUN_B", help="The run whose score the waterfall ends at (or give --protocol)."),
        ] = None,
        protocol: Annotated[
            Optional[str],
            typer.Option(
                "--protocol",
                metavar="NAME",
                show_default="none: give RUN_B",
                help="Instead of RUN_B: RUN_A's stored responses graded as this protocol grades them "
                "(`scorecheck protocols`); the rest needs a run under it and is named, not measured.",
            ),
        ] = None,
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
        html: Annotated[
            Optional[Path],
            typer.Option(
                "--html",
                metavar="FILE.html",
                show_default="not written",
                help="Write the report of the run(s) with the waterfall (table and chart), as `compare --html`.",
            ),
        ] = None,
    ) -> None:
        """Why two numbers differ: score(B) - score(A) step by step (items, reasoning split, extraction, grader,
        remainder), each a paired difference on the common samples, from the stored responses. With --protocol P
        instead of RUN_B: RUN_A's score -> its responses graded as P grades them."""
        from rich.console import Console
        from rich.table import Table

        from scorecheck.cli import _fail
        from scorecheck.compare import explain as ex
        from scorecheck.errors import ScorecheckError, UsageError

        skipped: list[str] = []
        try:
            if run_b is not None and protocol is not None:
                raise UsageError("give RUN_B or --protocol, not both: --protocol explains RUN_A against a protocol "
                                 "it was not run under")  # fmt: skip
            if run_b is None and protocol is None:
                raise UsageError("missing RUN_B: give a second run directory, or --protocol NAME")
            if protocol is not None:
                xs, skipped = ex.explain_protocol(run_a, protocol, evals=eval_names)
            else:
                assert run_b is not None
                xs = ex.explain(run_a, run_b, evals=eval_names)
        except ScorecheckError as e:
            _fail(e)
            return
        console = Console()
        for line in skipped:
            console.print(line, markup=False, highlight=False)
        for x in xs:
            title = f"{x.eval}: {x.a} -> {x.b} ({x.n_common} samples {'graded' if x.protocol else 'in common'})"
            table = Table(title=title)
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
            if x.unmeasured is not None:
                console.print(ex.unmeasured_line(x.unmeasured), markup=False, highlight=False)
        console.print(ex.METHOD, markup=False, highlight=False)
        if markdown:
            markdown.write_text(ex.markdown(xs))
            print(f"wrote markdown: {markdown}")
        if json_out:
            doc = {"method": ex.METHOD, "mode": "protocol" if protocol else "runs", "protocol": protocol,
                   "evals": [x.as_dict() for x in xs], "skipped": skipped}  # fmt: skip
            json_out.write_text(json.dumps(doc, indent=2) + "\n")
            print(f"wrote json: {json_out}")
        if plot:
            ex.plot_png(xs, plot)
            print(f"wrote chart: {plot}")
        if html:
            from scorecheck.compare import compare
            from scorecheck.compare.html import to_html

            cmp = compare([run_a] if run_b is None else [run_a, run_b])
            html.write_text(to_html(cmp, explanations=xs), encoding="utf-8")
            print(f"wrote html: {html}")
