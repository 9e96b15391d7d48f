"""The ``scorecheck export`` command (registered on the main app by ``register``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        run_dir: Annotated[
            Path, typer.Argument(metavar="RUN_DIR", help="A run directory (with results.json and samples.jsonl).")
        ],
        to: Annotated[
            str, typer.Option("--to", metavar="FORMAT", help="inspect (Inspect eval logs) or lm-eval (its layout).")
        ],
        out: Annotated[
            Optional[Path], typer.Option("--out", metavar="DIR", help="Output directory (default: RUN_DIR/export-TO).")
        ] = None,
    ) -> None:
        """Write a run's records as another tool reads them: Inspect eval logs (inspect view, read_eval_log) or
        lm-evaluation-harness's results_*.json and samples_*.jsonl."""
        from rich.console import Console

        from scorecheck.cli import _fail
        from scorecheck.errors import ScorecheckError
        from scorecheck.results.export import export

        try:
            paths = export(run_dir, to.strip().lower(), out)
        except ScorecheckError as e:
            _fail(e)
            return
        console = Console()
        for p in paths:
            console.print(str(p), highlight=False, soft_wrap=True, markup=False)
