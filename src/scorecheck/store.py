"""The run store: one SQLite file in the run directory, crash-safe, so a run that dies resumes where it stopped.

Tables:
- ``requests``: one row per distinct request (keyed by :func:`request_key`), with its final status
  (``ok``, ``http_400`` or ``failed``), the raw response, content, reasoning, finish_reason, usage and latency.
- ``sends``: one row per HTTP attempt, with the session that made it: the audit trail that shows a resumed run
  re-sent nothing that had finished.
- ``samples``: one row per graded sample (eval, item, sample index), with the grade key it was graded under.
- ``sessions``: one row per invocation on this directory.
- ``meta``: key/value facts about the run.

A finished answer is committed (:meth:`Store.commit`, a group commit within 2 ms) before the runner counts it as
finished or grades it, so a killed run re-sends only what was in flight. ``sends`` and ``samples`` rows are buffered
and ride along with the next commit (or :meth:`Store.flush`): a lost sample is graded again from its stored answer,
never re-sent. WAL mode, ``synchronous=NORMAL``: a commit survives the death of the process (SIGKILL, OOM), not a
power cut of the machine (FULL, an fsync per commit, would bound the rate by the disk's sync latency).
Every SQLite or file-system failure (a full disk, a read-only directory) is a one-line :class:`StoreError`; what was
committed before it is kept.
A run holds an exclusive ``flock`` on ``run.lock`` for its lifetime; a second process on the same directory is
refused. The lock dies with the process, so a SIGKILLed run never leaves a stale lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scorecheck.errors import RunLocked, StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, pid INTEGER, started REAL, ended REAL, argv TEXT,
    status TEXT);
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY, eval TEXT, item_id TEXT, sample_index INTEGER, status TEXT,
    request TEXT, response TEXT, content TEXT, reasoning TEXT, finish_reason TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, latency REAL, attempts INTEGER, error TEXT,
    endpoint TEXT, session TEXT, updated REAL);
CREATE TABLE IF NOT EXISTS sends (id INTEGER PRIMARY KEY, key TEXT, session TEXT, t REAL, outcome TEXT);
CREATE TABLE IF NOT EXISTS samples (
    eval TEXT, item_id TEXT, sample_index INTEGER, grade_key TEXT, request_key TEXT, score REAL,
    record TEXT, session TEXT, PRIMARY KEY (eval, item_id, sample_index));
"""

FINAL_400_SESSIONS = ("done", "incomplete")
"""Session statuses whose HTTP 400 answers are final (the session ran to its end)."""

REQUEST_COLS = (
    "key", "eval", "item_id", "sample_index", "status", "request", "response", "content", "reasoning",
    "finish_reason", "prompt_tokens", "completion_tokens", "latency", "attempts", "error", "endpoint",
    "session", "updated",
)  # fmt: skip


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(model: str, model_identity: str, messages: list[dict[str, Any]], sampling: dict[str, Any],
                sample_index: int) -> str:  # fmt: skip
    """Everything that changes the answer, and nothing that does not (not the URL, so a run resumes through a
    new port or tunnel)."""
    payload = {"model": model, "identity": model_identity, "messages": messages, "sampling": sampling,
               "sample": sample_index}  # fmt: skip
    return hashlib.sha256(canonical(payload).encode()).hexdigest()


COMMIT_WINDOW_S = 0.002
"""How long a group commit waits for more answers: at 3,000 answers/s about six per transaction (BENCHMARKS.md:
the same requests/s as the 0.5 s flush on a quiet machine; committing each loop turn cost about a fifth)."""


class Store:
    """``Store(run_dir)`` locks and opens the run directory and starts this invocation's session row;
    ``Store(run_dir, start=False)`` writes nothing until :meth:`start_session` (a run refused for its configuration
    leaves the store as it was)."""

    def __init__(self, run_dir: Path, argv: list[str] | None = None, start: bool = True) -> None:
        self.run_dir = Path(run_dir)
        with _store_errors(self.run_dir, "open"):
            if self.run_dir.exists() and not self.run_dir.is_dir():
                raise StoreError(f"run directory {self.run_dir} is a file, not a directory: give --out a directory")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.run_dir / "run.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._lock_fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(self._lock_fd)
            raise RunLocked(
                f"run directory {self.run_dir} is in use by scorecheck (pid {holder}); wait for it to finish or "
                "use another --out"
            ) from None
        self.path = self.run_dir / "store.sqlite"
        self.session: str | None = None
        self._requests: list[tuple] = []
        self._sends: list[tuple] = []
        self._samples: list[tuple] = []
        self._commit_waiter: asyncio.Future[None] | None = None
        try:
            with _store_errors(self.run_dir, "open"):
                os.ftruncate(self._lock_fd, 0)
                os.pwrite(self._lock_fd, str(os.getpid()).encode(), 0)
                self._open()
                if start:
                    self.start_session(argv)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(self) -> None:
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def start_session(self, argv: list[str] | None = None) -> None:
        """This invocation's row in ``sessions``: from here on the store is written."""
        self.session = uuid.uuid4().hex[:12]
        with _store_errors(self.run_dir, "write"):
            self.db.execute(
                "INSERT INTO sessions (id, pid, started, argv, status) VALUES (?, ?, ?, ?, 'running')",
                (self.session, os.getpid(), time.time(), json.dumps(argv or [])),
            )

    def is_empty(self) -> bool:
        """No session has ever written here."""
        return self.db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0

    def has_answers(self) -> bool:
        """Some request or sample was stored (a session that failed its preflight stored none)."""
        return any(self.db.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in ("requests", "samples"))

    def set_aside(self) -> Path:
        """Move the run in this directory (store, outputs, logs, regrades) into ``previous-<UTC time>/`` inside it
        and start an empty store, the lock held throughout. Earlier ``previous-*`` directories stay where they are."""
        assert self.session is None, "set_aside before start_session"
        aside = self.run_dir / time.strftime("previous-%Y%m%d-%H%M%S", time.gmtime())
        n = 1
        while aside.exists():
            n += 1
            aside = aside.with_name(aside.name.split("~")[0] + f"~{n}")
        with _store_errors(self.run_dir, "set aside"):
            self.db.close()
            aside.mkdir()
            for entry in sorted(self.run_dir.iterdir()):
                if entry.name == "run.lock" or entry.name.startswith("previous-"):
                    continue
                entry.rename(aside / entry.name)
            self._open()
        return aside

    # -- buffered writes -------------------------------------------------------------------------------------
    def put_request(self, row: dict[str, Any]) -> None:
        """Buffer a request's outcome; :meth:`commit` makes it durable."""
        row = {**row, "session": self.session, "updated": time.time()}
        self._requests.append(tuple(row.get(c) for c in REQUEST_COLS))

    async def commit(self) -> None:
        """Return once everything buffered so far is committed. Group commit: every caller that arrives within
        :data:`COMMIT_WINDOW_S` of the first waits on one transaction."""
        if self._commit_waiter is None:
            loop = asyncio.get_running_loop()
            self._commit_waiter = loop.create_future()
            loop.call_later(COMMIT_WINDOW_S, self._group_commit)
        await asyncio.shield(self._commit_waiter)

    def _group_commit(self) -> None:
        waiter, self._commit_waiter = self._commit_waiter, None
        assert waiter is not None
        try:
            self.flush()
        except BaseException as e:  # noqa: BLE001 - handed to every waiter
            waiter.set_exception(e)
            return
        waiter.set_result(None)

    def put_send(self, key: str, outcome: str) -> None:
        self._sends.append((key, self.session, time.time(), outcome))

    def put_sample(self, eval_name: str, item_id: str, sample_index: int, grade_key: str, request_key: str,
                   score: float | None, record: dict[str, Any]) -> None:  # fmt: skip
        self._samples.append(
            (eval_name, item_id, sample_index, grade_key, request_key, score, json.dumps(record), self.session)
        )

    def pending(self) -> int:
        return len(self._requests) + len(self._sends) + len(self._samples)

    def flush(self) -> None:
        if not self.pending():
            return
        db = self.db
        try:
            db.execute("BEGIN")
            if self._requests:
                db.executemany(
                    f"INSERT OR REPLACE INTO requests ({','.join(REQUEST_COLS)}) "
                    f"VALUES ({','.join('?' * len(REQUEST_COLS))})",
                    self._requests,
                )
            if self._sends:
                db.executemany("INSERT INTO sends (key, session, t, outcome) VALUES (?, ?, ?, ?)", self._sends)
            if self._samples:
                db.executemany(
                    "INSERT OR REPLACE INTO samples (eval, item_id, sample_index, grade_key, request_key, score, "
                    "record, session) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    self._samples,
                )
            db.execute("COMMIT")
        except BaseException as e:
            if db.in_transaction:  # SQLite rolls back by itself on a full disk ("cannot rollback" otherwise)
                db.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise StoreError(_describe(self.run_dir, "write", e)) from None
            raise
        self._requests.clear()
        self._sends.clear()
        self._samples.clear()

    # -- reads -----------------------------------------------------------------------------------------------
    def get_request(self, key: str) -> dict[str, Any] | None:
        cur = self.db.execute(f"SELECT {','.join(REQUEST_COLS)} FROM requests WHERE key = ?", (key,))
        row = cur.fetchone()
        return dict(zip(REQUEST_COLS, row, strict=True)) if row else None

    def finished_requests(self) -> dict[str, str]:
        """key -> status for requests that will not be sent again: answers, and HTTP 400s of sessions that ran to
        their end (``done`` or ``incomplete``). A 400 from a session that stopped early (an early abort, the circuit
        breaker, a signal, a kill) is sent again: a 400 storm from a misconfigured server must not become final
        empty answers once the server is fixed."""
        cur = self.db.execute(
            "SELECT r.key, r.status FROM requests r LEFT JOIN sessions s ON r.session = s.id WHERE r.status = 'ok' "
            f"OR (r.status = 'http_400' AND s.status IN ({', '.join(repr(x) for x in FINAL_400_SESSIONS)}))"
        )
        return dict(cur.fetchall())

    def answer_lengths(self) -> dict[str, tuple[int, float, int]]:
        """eval -> (answers, their completion tokens, answers cut at max_tokens), over the stored ok answers."""
        cur = self.db.execute(
            "SELECT eval, COUNT(*), SUM(completion_tokens), SUM(finish_reason = 'length') FROM requests "
            "WHERE status = 'ok' AND completion_tokens IS NOT NULL GROUP BY eval"
        )
        return {e: (n, float(t or 0), int(r or 0)) for e, n, t, r in cur}

    def graded(self, eval_name: str) -> dict[tuple[str, int], str]:
        """(item_id, sample_index) -> the grade key each stored sample was graded under, for one eval."""
        cur = self.db.execute("SELECT item_id, sample_index, grade_key FROM samples WHERE eval = ?", (eval_name,))
        return {(r[0], r[1]): r[2] for r in cur}

    def iter_samples(self, eval_name: str) -> Iterator[dict[str, Any]]:
        cur = self.db.execute("SELECT record FROM samples WHERE eval = ? ORDER BY rowid", (eval_name,))
        for (rec,) in cur:
            yield json.loads(rec)

    def get_sample(self, eval_name: str, item_id: str, sample_index: int) -> dict[str, Any] | None:
        row = self.db.execute("SELECT record FROM samples WHERE eval = ? AND item_id = ? AND sample_index = ?",
                              (eval_name, item_id, sample_index)).fetchone()  # fmt: skip
        return json.loads(row[0]) if row else None

    def sends_by_session(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, session in self.db.execute("SELECT key, session FROM sends ORDER BY id"):
            out.setdefault(session, []).append(key)
        return out

    def set_meta(self, key: str, value: Any) -> None:
        with _store_errors(self.run_dir, "write"):
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    # -- lifecycle -------------------------------------------------------------------------------------------
    def close(self, status: str = "done") -> None:
        try:
            if self.session is not None:
                self.flush()
                with _store_errors(self.run_dir, "write"):
                    self.db.execute(
                        "UPDATE sessions SET ended = ?, status = ? WHERE id = ?", (time.time(), status, self.session)
                    )
        finally:
            try:
                self.db.close()
            finally:
                os.close(self._lock_fd)


def _describe(run_dir: Path, what: str, e: BaseException) -> str:
    reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    if isinstance(e, OSError) and e.filename:
        reason += f" ({e.filename})"
    hint = ""
    low = reason.lower()
    existing = next((p for p in (run_dir, *run_dir.parents) if p.exists()), run_dir)
    if "full" in low or "no space" in low:
        hint = "; free some space and run the same command again (everything committed before is kept)"
    elif "read-only" in low or "readonly" in low or "permission" in low or not os.access(existing, os.W_OK):
        hint = f"; {existing} is read-only: use a run directory scorecheck can write"
    return f"cannot {what} the run directory {run_dir}: {reason}{hint}"


@contextlib.contextmanager
def _store_errors(run_dir: Path, what: str) -> Iterator[None]:
    """SQLite and file-system failures as one-line StoreErrors."""
    try:
        yield
    except (sqlite3.Error, OSError) as e:
        raise StoreError(_describe(run_dir, what, e)) from None
