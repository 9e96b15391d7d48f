"""The ``scorecheck export`` command (registered on the main app by ``register``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def register(app: typer.Typer, out: object, fail: object) -> None:
    @app.command("export")
    def export_cmd(
        run_dir: Annotated[Path, typer.Argument(help="A run directory (with results.json and samples.jsonl).")],
        to: Annotated[str, typer.Option("--to", help="inspect (Inspect eval logs) or lm-eval (its results layout).")],
        out_dir: Annotated[
            Optional[Path], typer.Option("--out", help="Output directory [RUN_DIR/export-<to>].")
        ] = None,
    ) -> None:
        """Write a run's records as another tool reads them: Inspect eval logs (inspect view, read_eval_log) or
        lm-evaluation-harness's results_*.json + samples_*.jsonl."""
        from scorecheck.errors import ScorecheckError
        from scorecheck.results.export import export

        try:
            paths = export(run_dir, to.strip().lower(), out_dir)
        except ScorecheckError as e:
            fail(e)  # type: ignore[operator]
        for p in paths:
            out.print(str(p), highlight=False, soft_wrap=True)  # type: ignore[attr-defined]
