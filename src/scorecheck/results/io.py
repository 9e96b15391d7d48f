"""Reading and writing the records of a run directory.

Writes are atomic: the record goes to a temporary file in the same directory, is fsynced, and replaces the old file
by ``os.replace`` (then the directory is fsynced), so a reader sees the old file or the new one, never half of one.
Reads go through the models: an unknown major version, a line that is not JSON or not a valid record is a one-line
error naming the file and the line; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from scorecheck.errors import ScorecheckError
from scorecheck.results.models import (
    Record,
    Results,
    RunConfigRecord,
    Sample,
    Timing,
    VersionError,
)

R = TypeVar("R", bound=Record)


class RecordError(ScorecheckError):
    """A record that cannot be read: corrupt, invalid, or of an unknown schema major version."""


# -- writing ---------------------------------------------------------------------------------------------------------
def dump_json(record: BaseModel | dict[str, Any], indent: int | None = 2) -> str:
    """A record as written: the fields that were set (an optional field nobody set stays absent)."""
    obj = record.model_dump(mode="json", exclude_unset=True) if isinstance(record, BaseModel) else record
    return json.dumps(obj, indent=indent, ensure_ascii=False, default=str)


def dump_line(record: BaseModel) -> str:
    return json.dumps(record.model_dump(mode="json", exclude_unset=True), ensure_ascii=False, default=str)


def _umask() -> int:
    """The process's umask, read without changing it (os.umask sets it, which races with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path) as f:
        f.write(text)


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[IO[str]]:
    """A text file written in pieces and put in place atomically: a temp file in the same directory, fsynced,
    renamed over ``path`` (the directory fsynced) when the block ends without an error, removed otherwise. The file
    gets the mode a plain ``open(path, "w")`` would give it (mkstemp's temporary file is 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_json(path: Path, record: BaseModel | dict[str, Any]) -> None:
    write_atomic(path, dump_json(record) + "\n")


def write_jsonl(path: Path, records: Iterable[BaseModel]) -> None:
    """One record a line, written as they come (a run's samples can be hundreds of MB: never one string)."""
    with atomic_writer(path) as f:
        for r in records:
            f.write(dump_line(r) + "\n")


def write_jsonl_dicts(path: Path, lines: Iterable[dict[str, Any]]) -> None:
    """Another tool's JSONL (an export), atomically."""
    with atomic_writer(path) as f:
        for x in lines:
            f.write(json.dumps(x, ensure_ascii=False, default=str) + "\n")


# -- reading ---------------------------------------------------------------------------------------------------------
def _one_line(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        loc = ".".join(str(x) for x in err["loc"]) or "(record)"
        parts.append(f"{loc}: {err['msg']}")
    more = f" (+{e.error_count() - 3} more)" if e.error_count() > 3 else ""
    return "; ".join(parts) + more


def parse(model: type[R], obj: Any, where: str, legacy: bool = False) -> R:
    """Validate one decoded record; ``where`` names the file (and line) in the error. ``legacy``: a record without
    ``schema_version`` (written before versioned records, same shape) is read as the current version; only regrade,
    which rewrites a run's records, reads them so."""
    if not isinstance(obj, dict):
        raise RecordError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "schema_version" not in obj and legacy:
        obj = {"schema_version": model.model_fields["schema_version"].default, **obj}
    if "schema_version" not in obj:
        raise RecordError(f"{where}: no schema_version (written by a scorecheck before versioned records); "
                          "`scorecheck regrade` on the run directory rewrites its records")  # fmt: skip
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        version_errors = [err for err in e.errors() if err["loc"] == ("schema_version",)]
        if version_errors:
            ctx = version_errors[0].get("ctx") or {}
            err = ctx.get("error")
            msg = str(err) if isinstance(err, VersionError) else version_errors[0]["msg"]
            raise RecordError(f"{where}: {msg}") from None
        raise RecordError(f"{where}: not a valid {model.__name__} record: {_one_line(e)}") from None


def read_json(path: Path, model: type[R], legacy: bool = False) -> R:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecordError(f"{path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise RecordError(f"{path}: not valid JSON ({e})") from None
    return parse(model, obj, str(path), legacy)


def iter_jsonl(path: Path, model: type[R]) -> Iterator[R]:
    """Every line of a JSONL record file, validated; a blank line, a line that is not JSON, or an invalid record is
    an error naming the file and the line."""
    path = Path(path)
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 (closed below; a generator)
    except OSError as e:
        raise RecordError(f"{path}: {e.strerror}") from None
    with f:
        n = 0
        try:
            for n, line in enumerate(f, 1):  # noqa: B007 (n names the line in an error)
                if not line.strip():
                    raise RecordError(f"{path} line {n}: empty line")
                try:
                    obj = json.loads(line)
                except ValueError as e:
                    raise RecordError(f"{path} line {n}: not valid JSON ({e})") from None
                yield parse(model, obj, f"{path} line {n}")
        except UnicodeDecodeError as e:
            raise RecordError(f"{path} line {n + 1}: not UTF-8 ({e.reason})") from None


def read_results(path: Path, legacy: bool = False) -> Results:
    return read_json(path, Results, legacy)


def read_config(path: Path, legacy: bool = False) -> RunConfigRecord:
    return read_json(path, RunConfigRecord, legacy)


def read_samples(path: Path) -> list[Sample]:
    return list(iter_jsonl(path, Sample))


def read_timings(path: Path) -> list[Timing]:
    return list(iter_jsonl(path, Timing))
