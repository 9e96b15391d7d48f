"""``scorecheck export RUN_DIR --to inspect|lm-eval``: a run's records in the formats other tools read.

- ``inspect``: one Inspect eval log per eval (``<time>_scorecheck-<eval>_<id>.json``, Inspect's JSON log format,
  version 2) with the run's scores, model, configuration, protocol and every sample with its messages; readable by
  ``inspect_ai.log.read_eval_log`` and served by ``inspect view``;
- ``lm-eval``: lm-evaluation-harness's output layout, ``<model>/results_<time>.json`` and one
  ``<model>/samples_<task>_<time>.jsonl`` per eval (task = the scorecheck eval name), as ``lm_eval.utils``
  finds them.

Both are written by hand from the records (neither tool is a dependency of scorecheck; both are dev dependencies,
used by the tests to read the exports back). The run is read through the record models; the exact messages sent
come from the run's store when it is there (else the system prompt and the item's prompt).
"""

from __future__ import annotations

from pathlib import Path

from scorecheck.errors import UsageError
from scorecheck.results.export.run import load
from scorecheck.results.export.to_inspect import write_logs
from scorecheck.results.export.to_lm_eval import write_lm_eval

FORMATS = ("inspect", "lm-eval")


def export(run_dir: Path, to: str, out: Path | None = None) -> list[Path]:
    """Write the export; returns the files written. ``out`` defaults to RUN_DIR/export-<format>/."""
    if to not in FORMATS:
        raise UsageError(f"--to {to!r}: choose one of {', '.join(FORMATS)}")
    run = load(run_dir)
    out = Path(out) if out is not None else Path(run_dir) / f"export-{to}"
    out.mkdir(parents=True, exist_ok=True)
    return write_logs(run, out) if to == "inspect" else write_lm_eval(run, out)
