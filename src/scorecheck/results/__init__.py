"""The records of a run directory: typed, versioned models (:mod:`.models`), the one builder of results.json
(:mod:`.build`), atomic writes and strict readers (:mod:`.io`), exporters to other tools' formats (:mod:`.export`)
and the hygiene rules every record and report follows (:mod:`.hygiene`)."""

from scorecheck.results.build import build_results, in_item_order, split_timing
from scorecheck.results.io import RecordError, read_config, read_results, read_samples, write_json, write_jsonl
from scorecheck.results.models import SCHEMA_VERSION, EvalResult, Results, RunConfigRecord, Sample, Timing

__all__ = [
    "SCHEMA_VERSION", "EvalResult", "RecordError", "Results", "RunConfigRecord", "Sample", "Timing", "build_results",
    "in_item_order", "read_config", "read_results", "read_samples", "split_timing", "write_json", "write_jsonl",
]  # fmt: skip
