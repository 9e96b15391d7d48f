"""scorecheck.data: lookup, checks, download from a mirror, and the error messages a user acts on."""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import random
import socket
import threading
import time
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import SHARED, run_cli
from scorecheck import data
from scorecheck.errors import DataError

DATASETS = SHARED / "datasets"
SMALL = "gsm8k"  # 750 kB, sha256-checked: the file used for download tests


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


class Mirror:
    """A local http.server serving a directory laid out like the data dir."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def mirror():
    m = Mirror(DATASETS)
    yield m
    m.stop()


@pytest.fixture
def empty_env(tmp_path, monkeypatch):
    """No data dir content, a fresh cache, no mirror, no GPQA credentials."""
    d = tmp_path / "data"
    d.mkdir()
    cache = tmp_path / "cache"
    monkeypatch.setenv("SCORECHECK_DATA_DIR", str(d))
    monkeypatch.setenv("SCORECHECK_CACHE_DIR", str(cache))
    for var in ("SCORECHECK_DATA_MIRROR", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "GPQA_ZIP_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    return d, cache / "data"


def cached_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(data, "_fetch_url", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# ---------------------------------------------------------------- the shared data dir


@pytest.mark.parametrize("key", sorted(data.FILES))
def test_resolve_every_registered_file(key, data_dir, monkeypatch, no_network):
    monkeypatch.setenv("SCORECHECK_DATA_DIR", str(data_dir))
    f = data.FILES[key]
    res = data.resolve(key, download=False)
    assert res.path == data_dir / f.path
    assert res.sha256 == hashlib.sha256(res.path.read_bytes()).hexdigest()
    if key == "mmlu":
        assert res.check == "fingerprint"
    else:
        assert res.check == "sha256"
        assert res.sha256 == f.sha256


def test_registered_paths_exist_in_shared_data():
    for f in data.FILES.values():
        assert (DATASETS / f.path).is_file(), f.path


def test_unknown_key():
    with pytest.raises(DataError, match="unknown data file"):
        data.resolve("nope")


def test_corrupt_copy_in_data_dir(tmp_path, monkeypatch, no_network):
    f = data.FILES[SMALL]
    bad = bytearray((DATASETS / f.path).read_bytes())
    bad[100] ^= 0x01
    (tmp_path / f.path).parent.mkdir(parents=True)
    (tmp_path / f.path).write_bytes(bytes(bad))
    monkeypatch.setenv("SCORECHECK_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as e:
        data.resolve(SMALL)
    msg = str(e.value)
    assert str(tmp_path / f.path) in msg
    assert f"scorecheck data fetch {SMALL}" in msg


def test_missing_without_download(empty_env, no_network):
    with pytest.raises(DataError) as e:
        data.resolve(SMALL, download=False)
    assert "not found" in str(e.value)
    assert f"scorecheck data fetch {SMALL}" in str(e.value)


def test_gpqa_main_needs_token_or_password(empty_env, no_network):
    with pytest.raises(DataError) as e:
        data.resolve("gpqa_main")
    msg = str(e.value)
    assert "HF_TOKEN" in msg and "GPQA_ZIP_PASSWORD" in msg
    assert not cached_files(empty_env[1])


# ---------------------------------------------------------------- downloads from a mirror


def test_download_from_mirror_then_cache(empty_env, mirror, monkeypatch):
    _, cache = empty_env
    monkeypatch.setenv("SCORECHECK_DATA_MIRROR", mirror.url)
    f = data.FILES[SMALL]
    res = data.resolve(SMALL)
    assert res.path == cache / f.path
    assert res.check == "sha256" and res.sha256 == f.sha256
    assert res.read_bytes() == (DATASETS / f.path).read_bytes()
    assert cached_files(cache) == [cache / f.path]  # no temp file left behind

    mirror.stop()
    monkeypatch.setattr(data, "_fetch_url", lambda *a, **k: pytest.fail("network used for a cached file"))
    again = data.resolve(SMALL)
    assert again.path == cache / f.path and again.sha256 == f.sha256


def test_mirror_serving_corrupt_bytes(empty_env, tmp_path, monkeypatch):
    _, cache = empty_env
    f = data.FILES[SMALL]
    root = tmp_path / "badmirror"
    (root / f.path).parent.mkdir(parents=True)
    bad = bytearray((DATASETS / f.path).read_bytes())
    bad[-10] ^= 0x01
    (root / f.path).write_bytes(bytes(bad))
    m = Mirror(root)
    try:
        monkeypatch.setenv("SCORECHECK_DATA_MIRROR", m.url)
        with pytest.raises(DataError) as e:
            data.resolve(SMALL)
    finally:
        m.stop()
    assert SMALL in str(e.value) and "sha256" in str(e.value)
    assert m.url + data.FILES[SMALL].path in str(e.value)  # says where the bad bytes came from
    assert not cached_files(cache)


def test_mirror_missing_file_is_data_error(empty_env, tmp_path, monkeypatch):
    _, cache = empty_env
    root = tmp_path / "emptymirror"
    root.mkdir()
    m = Mirror(root)
    try:
        monkeypatch.setenv("SCORECHECK_DATA_MIRROR", m.url)
        with pytest.raises(DataError, match="HTTP 404"):
            data.resolve(SMALL)
    finally:
        m.stop()
    assert not cached_files(cache)


class _TruncatingHandler(_QuietHandler):
    """Promises more bytes than it sends, then closes: the client sees http.client.IncompleteRead."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b'{"question": "cut')
        self.close_connection = True


def test_truncated_transfer_is_data_error(empty_env, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TruncatingHandler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        monkeypatch.setenv("SCORECHECK_DATA_MIRROR", f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(DataError, match="gsm8k data .* its download from .* failed"):
            data.resolve(SMALL)
    finally:
        server.shutdown()
        server.server_close()
        t.join(timeout=5)
    assert not cached_files(empty_env[1])


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_mirror(empty_env, monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/"
    monkeypatch.setenv("SCORECHECK_DATA_MIRROR", url)
    t0 = time.monotonic()
    with pytest.raises(DataError) as e:
        data.resolve(SMALL)
    assert time.monotonic() - t0 < 10
    assert url + data.FILES[SMALL].path in str(e.value)
    assert not cached_files(empty_env[1])


# ---------------------------------------------------------------- the CLI


def test_cli_data_verify_ok(data_dir):
    r = run_cli("data", "verify", env={"SCORECHECK_DATA_DIR": str(data_dir), "COLUMNS": "250"}, timeout=60)
    assert r.code == 0, r.err
    for f in data.FILES.values():
        line = next((ln for ln in r.out.splitlines() if f.path in ln), None)
        assert line is not None, (f.path, r.out)
        assert " ok " in line, line
    assert "corrupt" not in r.out and "missing" not in r.out


def test_cli_data_verify_corrupt(tmp_path):
    f = data.FILES[SMALL]
    (tmp_path / f.path).parent.mkdir(parents=True)
    (tmp_path / f.path).write_bytes(b"not the data\n")
    r = run_cli("data", "verify", env={"SCORECHECK_DATA_DIR": str(tmp_path), "SCORECHECK_CACHE_DIR": str(tmp_path / "c"),
                                       "COLUMNS": "250"}, timeout=60)  # fmt: skip
    assert r.code == 1
    assert "corrupt" in r.out


# ---------------------------------------------------------------- fingerprints


def _mmlu_rows() -> tuple[list[str], list[list[str]]]:
    csv.field_size_limit(1 << 30)
    rows = list(csv.reader(io.StringIO((DATASETS / "mmlu" / "mmlu.csv").read_text(encoding="utf-8"), newline="")))
    return rows[0], rows[1:]


def _write_csv(header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


def test_mmlu_fingerprint_order_independent_but_content_sensitive():
    f = data.FILES["mmlu"]
    header, rows = _mmlu_rows()
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    reordered = _write_csv(header, shuffled)
    assert reordered != (DATASETS / f.path).read_bytes()
    digest, how = data.check_bytes(f, reordered, "reordered")
    assert how == "fingerprint"
    assert digest == hashlib.sha256(reordered).hexdigest()

    ans = header.index("Answer")
    changed = [r[:] for r in rows]
    changed[5][ans] = "A" if changed[5][ans] != "A" else "B"
    with pytest.raises(DataError) as e:
        data.check_bytes(f, _write_csv(header, changed), "changed")
    assert "fingerprint" in str(e.value) and "scorecheck data fetch mmlu" in str(e.value)

    with pytest.raises(DataError):
        data.check_bytes(f, _write_csv(header, rows[:-1]), "short")


def test_mmlu_mirror_copy_in_other_order_is_accepted(tmp_path, monkeypatch):
    header, rows = _mmlu_rows()
    rows.reverse()
    (tmp_path / "mmlu").mkdir()
    (tmp_path / "mmlu" / "mmlu.csv").write_bytes(_write_csv(header, rows))
    monkeypatch.setenv("SCORECHECK_DATA_DIR", str(tmp_path))
    assert data.resolve("mmlu", download=False).check == "fingerprint"


def test_gpqa_main_fingerprint_accepts_whitespace_stripped_copy():
    f = data.FILES["gpqa_main"]
    raw = (DATASETS / f.path).read_bytes()
    assert data.check_bytes(f, raw, "x")[1] == "sha256"
    csv.field_size_limit(1 << 30)
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    stripped = _write_csv(rows[0], [[c.rstrip() for c in r] for r in rows[1:]])
    assert stripped != raw
    assert data.check_bytes(f, stripped, "stripped")[1] == "fingerprint"
    with pytest.raises(DataError):  # order matters for GPQA (the permutation rng walks the file)
        data.check_bytes(f, _write_csv(rows[0], [rows[2], rows[1], *rows[3:]]), "reordered")


def test_copy_into_cache(empty_env, tmp_path):
    _, cache = empty_env
    f = data.FILES[SMALL]
    dest = data.copy_into_cache(SMALL, DATASETS / f.path)
    assert dest == cache / f.path
    assert data.resolve(SMALL, download=False).path == dest
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"{}\n")
    with pytest.raises(DataError):
        data.copy_into_cache(SMALL, bad)
