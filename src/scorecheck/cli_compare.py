"""The ``scorecheck compare`` command (registered on the main app by ``register``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("compare")
    def compare_cmd(
        run_dirs: Annotated[
            list[Path], typer.Argument(metavar="RUN_DIR", help="Run directories (each with results.json).")
        ],
        label: Annotated[
            Optional[list[str]],
            typer.Option(
                "--label", metavar="NAME", show_default="the directory name", help="A column name per run, in order."
            ),
        ] = None,
        reference: Annotated[
            Optional[list[str]],
            typer.Option(
                "--reference",
                "-r",
                metavar="TABLE",
                show_default="none",
                help="Claimed numbers beside the measured: a shipped table (seed, glaive, "
                "meta-llama-3.1-70b) or a TOML file; repeatable.",
            ),  # fmt: skip
        ] = None,
        html: Annotated[
            Optional[Path],
            typer.Option(metavar="FILE", show_default="not written", help="Write one self-contained HTML report."),
        ] = None,
        plot: Annotated[
            Optional[Path],
            typer.Option(metavar="FILE", show_default="not written", help="Write a PNG bar chart with intervals."),
        ] = None,
        markdown: Annotated[
            Optional[Path],
            typer.Option("--markdown", "--md", metavar="FILE", show_default="not written", help="Write Markdown."),
        ] = None,
        csv: Annotated[
            Optional[Path],
            typer.Option(metavar="FILE", show_default="not written", help="Write CSV (cells, paired tests, claims)."),
        ] = None,
        json_out: Annotated[
            Optional[Path],
            typer.Option(
                "--json",
                envvar="SCORECHECK_COMPARE_JSON",
                metavar="FILE",
                show_default="not written",
                help="Write the whole comparison as JSON.",
            ),
        ] = None,
        resamples: Annotated[int, typer.Option(help="Bootstrap resamples for paired intervals.")] = 2000,
        seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    ) -> None:
        """Runs side by side: scores with 95% intervals, paired significance, diagnostics, claimed numbers."""
        from rich.console import Console

        from scorecheck.cli import _fail
        from scorecheck.compare import compare, write_reports
        from scorecheck.compare.references import load_reference
        from scorecheck.errors import ScorecheckError

        try:
            refs = [load_reference(r) for r in reference or []]
            cmp = compare(run_dirs, labels=label, references=refs, resamples=resamples, seed=seed)
            written = write_reports(cmp, markdown=markdown, csv=csv, json=json_out, html=html, plot=plot,
                                    console=Console())  # fmt: skip
        except ScorecheckError as e:
            _fail(e)
            return
        for kind, path in written.items():
            print(f"wrote {kind}: {path}")
