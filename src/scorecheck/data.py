"""Benchmark files: where they come from, what they must contain, and where scorecheck finds them.

Lookup order for a file: ``$SCORECHECK_DATA_DIR`` (laid out like ``../shared/datasets``), then the user cache
(``$SCORECHECK_CACHE_DIR`` or ``~/.cache/scorecheck/data``), then a download into the cache from the canonical URL
(or from ``$SCORECHECK_DATA_MIRROR``, a base URL laid out like the data dir, for air-gapped sites and tests).

Every file is checked before use: by sha256 where the canonical bytes are known, otherwise by a fingerprint of its
content (row count and a hash of normalised records). The sha256 of the bytes actually used goes into every run's
results.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scorecheck.errors import DataError

SIMPLE_EVALS_BLOB = "https://openaipublic.blob.core.windows.net/simple-evals/"


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    csv.field_size_limit(1 << 30)
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))


def _mmlu_fingerprint(data: bytes) -> str:
    """Order-independent hash of (Subject, Question, A, B, C, D, Answer): the canonical file's bytes are unknown."""
    rows = _csv_rows(data)
    cols = ("Subject", "Question", "A", "B", "C", "D", "Answer")
    lines = sorted(json.dumps([r.get(c, "").strip() for c in cols]) for r in rows)
    return f"{len(rows)}:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _gpqa_fingerprint(data: bytes) -> str:
    """Order-sensitive (the permutation rng walks the file in order), trailing whitespace ignored."""
    rows = _csv_rows(data)
    cols = ("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
    lines = [json.dumps([r.get(c, "").strip() for c in cols]) for r in rows]
    return f"{len(rows)}:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _jsonl_fingerprint(data: bytes) -> str:
    """Order-sensitive hash of the records of a JSONL file, whatever their serialisation."""
    recs = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    lines = [json.dumps(r, sort_keys=True, ensure_ascii=False) for r in recs]
    return f"{len(recs)}:" + hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass(frozen=True)
class DataFile:
    key: str
    path: str
    """Path relative to the data dir (the layout of ../shared/datasets)."""
    url: str
    rows: int
    sha256: str | None
    """Canonical bytes, when known."""
    fingerprint: str | None = None
    fingerprint_fn: Callable[[bytes], str] | None = field(default=None, compare=False)
    note: str = ""
    needs: str = ""
    """What a download needs (a token, a password), said when it is missing."""


FILES: dict[str, DataFile] = {
    f.key: f
    for f in [
        DataFile(
            "mmlu",
            "mmlu/mmlu.csv",
            SIMPLE_EVALS_BLOB + "mmlu.csv",
            14042,
            None,
            fingerprint="14042:10f20c0e4a58b73a443c445dd02623a590814a4718513b48a28489bae6f5e3e5",
            fingerprint_fn=_mmlu_fingerprint,
            note="canonical bytes unknown; checked by content fingerprint",
        ),
        DataFile(
            "gpqa_main",
            "gpqa/gpqa_main.csv",
            "https://huggingface.co/datasets/Idavidrein/gpqa/resolve/main/gpqa_main.csv",
            448,
            "acdeeac8f622267f2cd727d7d474202ea08dec80f7d3c3593b3ef8644f19b8e3",
            fingerprint="448:15e0648e641609af1a2a98ba637f89a2dc8e2d5e264b4a6bcf925c8cd4b5607c",
            fingerprint_fn=_gpqa_fingerprint,
            needs="gated: set HF_TOKEN (after accepting the terms of Idavidrein/gpqa on Hugging Face), or "
            "GPQA_ZIP_PASSWORD (the password in the README of github.com/idavidrein/gpqa) to use its dataset.zip",
        ),
        DataFile(
            "gpqa_diamond",
            "gpqa/gpqa_diamond.csv",
            SIMPLE_EVALS_BLOB + "gpqa_diamond.csv",
            198,
            "41d1213cd7a4998605a26c2798500652572007161b3a92817ba46b35befcd305",
        ),
        DataFile(
            "gsm8k",
            "gsm8k/test.jsonl",
            "https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl",
            1319,
            "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
        ),
        DataFile(
            "math",
            "math/math_test.csv",
            SIMPLE_EVALS_BLOB + "math_test.csv",
            5000,
            "1835505d451a6f4b8bfdfe11b90bbd6676f382d2aa269acf8d3e4155947fe451",
        ),
        DataFile(
            "math500",
            "math/math500_test.jsonl",
            "https://raw.githubusercontent.com/iamhankai/Forest-of-Thought/"
            "97bdbabe6d7abd0a8fdeb6550ab197225b7ccfa2/datasets/math500/test.jsonl",
            500,
            "5f825781e98ae98d39711ce3f9d02ec06743e04b6f3b3cb256f4049079dfa491",
            fingerprint="500:27d1435c1466f4fa5e1e94e9749d5eb4c295220bb9c28b50da5259e943db1150",
            fingerprint_fn=_jsonl_fingerprint,
            note="MATH-500 (prm800k math_splits/test.jsonl format); prm800k's own file re-serialises the same "
            "records with other bytes, so it is accepted by a fingerprint of the records",
        ),
        DataFile(
            "humaneval",
            "humaneval/HumanEval.jsonl.gz",
            "https://github.com/openai/human-eval/raw/master/data/HumanEval.jsonl.gz",
            164,
            "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
        ),
        DataFile(
            "ifeval",
            "ifeval/input_data.jsonl",
            "https://raw.githubusercontent.com/google-research/google-research/master/"
            "instruction_following_eval/data/input_data.jsonl",
            541,
            "67ffeee0fcb87c317c5b08a2de85557b4a7e96ada6178aa645b4954fe4b53d49",
        ),
        DataFile(
            "ifeval_glaive",
            "ifeval/ifeval_input_data_glaive.jsonl",
            "https://raw.githubusercontent.com/glaive-ai/simple-evals/"
            "478400fba66800db5b6dd0c7c47bfbe0d3a31b0e/ifeval/data/ifeval_input_data.jsonl",
            541,
            "6a85310ca8ce15eff755aa08a3a4ff931c7e273e7515ebb3c492ea85fd8288f2",
        ),
        DataFile(
            "ifeval_gpt4_responses",
            "ifeval/input_response_data_gpt4_20231107_145030.jsonl",
            # google-research later edited one prompt (key 2785) in place; this copy keeps the published original
            "https://raw.githubusercontent.com/Podtech-AI/IFEval/5bdf377eb9cc20f16d377dc5c38413cee22550a6/"
            "data/input_response_data_gpt4_20231107_145030.jsonl",
            541,
            "0cff1d1469b774e80296bee20ca696894df35f3c6d6539f2c886d67c07599dcb",
            note="Google's published GPT-4 responses (Nov 2023), for `scorecheck grade --responses "
            "ifeval_gpt4_responses` (make demo)",
        ),
    ]
}

GPQA_ZIP_URL = "https://github.com/idavidrein/gpqa/raw/main/dataset.zip"


@dataclass(frozen=True)
class Resolved:
    """A checked file, ready to read."""

    file: DataFile
    path: Path
    sha256: str
    check: str
    """How it was checked: 'sha256' or 'fingerprint'."""

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()


def cache_dir() -> Path:
    env = os.environ.get("SCORECHECK_CACHE_DIR")
    if env:
        return Path(env) / "data"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scorecheck" / "data"


def data_dir() -> Path | None:
    env = os.environ.get("SCORECHECK_DATA_DIR")
    return Path(env) if env else None


def get_file(key: str) -> DataFile:
    try:
        return FILES[key]
    except KeyError:
        raise DataError(f"unknown data file {key!r}; known: {', '.join(FILES)}") from None


def check_bytes(f: DataFile, data: bytes, origin: str) -> tuple[str, str]:
    """Returns (sha256, how it was checked); raises DataError naming the file and the fix."""
    digest = hashlib.sha256(data).hexdigest()
    if f.sha256 is not None and digest == f.sha256:
        return digest, "sha256"
    if f.fingerprint_fn is not None and f.fingerprint is not None:
        try:
            fp = f.fingerprint_fn(data)
        except (ValueError, csv.Error, AttributeError, KeyError, TypeError) as e:  # bad UTF-8, a cut row or line
            fp = f"unreadable: {e.__class__.__name__}"
        if fp == f.fingerprint:
            return digest, "fingerprint"
        raise DataError(
            f"{origin}: content does not match the expected {f.key} data (fingerprint {fp[:24]}…, expected "
            f"{f.fingerprint[:24]}…); delete the file and run `scorecheck data fetch {f.key}`"
        )
    assert f.sha256 is not None, f"{f.key}: a DataFile has a sha256 or a fingerprint"  # the FILES table's invariant
    raise DataError(
        f"{origin}: sha256 {digest[:16]}… does not match the expected {f.sha256[:16]}… for {f.key}; "
        f"delete the file and run `scorecheck data fetch {f.key}`"
    )


def locate(key: str) -> Path | None:
    """The first existing copy of a file in the lookup order, without checking it."""
    f = get_file(key)
    d = data_dir()
    if d is not None and (d / f.path).is_file():
        return d / f.path
    c = cache_dir() / f.path
    return c if c.is_file() else None


def resolve(key: str, download: bool = True) -> Resolved:
    """Find, check and (if needed and allowed) download one file."""
    f = get_file(key)
    path = locate(key)
    if path is None:
        if not download:
            raise DataError(_missing_message(f))
        path = _download(f)
    digest, how = check_bytes(f, path.read_bytes(), str(path))
    return Resolved(f, path, digest, how)


def searched() -> str:
    """The directories a file is looked for in, as said in errors."""
    d = data_dir()
    first = f"SCORECHECK_DATA_DIR={d}" if d else "SCORECHECK_DATA_DIR (not set)"
    return f"{first}, then the cache {cache_dir()} (SCORECHECK_CACHE_DIR)"


def _missing_message(f: DataFile) -> str:
    return (f"{f.key} data ({f.path}) not found in {searched()}; run `scorecheck data fetch {f.key}`, or set "
            "SCORECHECK_DATA_DIR to a copy laid out like ../shared/datasets")  # fmt: skip


def _fetch_url(url: str, headers: dict[str, str] | None = None, timeout: float = 60.0) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "scorecheck", **(headers or {})})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (fixed, known URLs)
        return resp.read()


def _download(f: DataFile) -> Path:
    dest = cache_dir() / f.path
    mirror = os.environ.get("SCORECHECK_DATA_MIRROR")
    src = (mirror.rstrip("/") + "/" + f.path) if mirror else f.url
    try:
        if mirror:
            data = _fetch_url(src)
        elif f.key == "gpqa_main":
            data = _download_gpqa_main()
        else:
            data = _fetch_url(f.url)
    except DataError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
        raise DataError(
            f"{f.key} data ({f.path}) is not in {searched()}, and its download from {src} failed ({_reason(e)}); "
            "set SCORECHECK_DATA_DIR to a copy laid out like ../shared/datasets, or check the network"
            + (" and SCORECHECK_DATA_MIRROR" if mirror else "")
        ) from None
    check_bytes(f, data, f"{f.key} downloaded from {src}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
        tmp.write(data)
    os.replace(tmp.name, dest)
    return dest


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or e.__class__.__name__


def _download_gpqa_main() -> bytes:
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    password = os.environ.get("GPQA_ZIP_PASSWORD")
    if token:
        try:
            return _fetch_url(FILES["gpqa_main"].url, {"Authorization": f"Bearer {token}"})
        except urllib.error.HTTPError as e:
            if e.code in (401, 403):
                raise DataError(
                    f"Hugging Face refused gpqa_main.csv (HTTP {e.code}): accept the terms of Idavidrein/gpqa "
                    "with the account of HF_TOKEN, or set GPQA_ZIP_PASSWORD instead"
                ) from None
            raise
    if password:
        blob = _fetch_url(GPQA_ZIP_URL)
        try:
            with zipfile.ZipFile(io.BytesIO(blob)) as z:
                return z.read("dataset/gpqa_main.csv", pwd=password.encode())
        except (RuntimeError, zipfile.BadZipFile, KeyError) as e:
            raise DataError(
                f"could not read gpqa_main.csv from the GPQA dataset.zip ({e}); check GPQA_ZIP_PASSWORD"
            ) from None
    raise DataError("gpqa_main.csv is " + FILES["gpqa_main"].needs)


def verify_all(download: bool = False) -> list[dict[str, str]]:
    """One row per registered file: where it is and whether it checks out."""
    rows = []
    for key, f in FILES.items():
        path = locate(key)
        row = {"key": key, "file": f.path, "rows": str(f.rows), "expected": f.sha256 or f"fingerprint {f.fingerprint}"}
        if path is None and download:
            try:
                path = _download(f)
            except DataError as e:
                row.update(status="missing", detail=str(e))
                rows.append(row)
                continue
        if path is None:
            row.update(status="missing", detail=_missing_message(f))
        else:
            try:
                digest, how = check_bytes(f, path.read_bytes(), str(path))
                row.update(status="ok", detail=f"{how}; sha256 {digest}", path=str(path))
            except DataError as e:
                row.update(status="corrupt", detail=str(e), path=str(path))
        rows.append(row)
    return rows


def copy_into_cache(key: str, src: Path) -> Path:
    """Used by `scorecheck data fetch --from FILE` for files obtained by hand (e.g. the GPQA zip member)."""
    f = get_file(key)
    check_bytes(f, src.read_bytes(), str(src))
    dest = cache_dir() / f.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    return dest
