"""Child processes die with scorecheck: grading workers, sandboxes, the servers it starts.

A clean stop (the end of a run, Ctrl-C, SIGTERM) stops them itself; a SIGKILL of scorecheck cannot, so each child
asks the kernel for a parent-death signal (``prctl(PR_SET_PDEATHSIG)``, Linux): it is signalled when the thread that
started it ends. Children are started from the main thread (the event loop's), or from a thread that outlives them
(``sandbox.run_programs`` waits for its programs).

- :func:`preexec` is a ``subprocess.Popen(preexec_fn=...)`` for a child that is exec'd: the setting survives
  ``execve`` (not of a set-user-ID binary) and is set after ``Popen(user=...)`` switched the uid, which would clear it.
- :class:`ChildPool` with :func:`pool_worker_init` as its initializer: the workers die with scorecheck and ignore
  SIGINT, from their start (Ctrl-C reaches the whole foreground process group; the parent stops the pool).
- :func:`stop_pool` stops a pool without waiting on a busy worker: ``shutdown(wait=True)`` waits for a grade stuck in
  C code, which is what hung Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1

# Loaded here, not in the child: between fork and exec only async-signal-safe work is safe (no dlopen).
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> None:
    """Have the kernel send ``sig`` to this process when its parent (thread) ends; if ``parent`` has already gone
    (the process was reparented before this ran), take ``sig`` now."""
    if _libc is None:
        return
    _libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def preexec(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that ties the child to this process (``sig`` when it dies)."""
    parent = os.getpid()

    def _preexec() -> None:
        die_with_parent(sig, parent)

    return _preexec


class ChildPool(ProcessPoolExecutor):
    """A process pool whose workers start with SIGINT blocked (inherited through fork and exec, as multiprocessing
    does for its resource tracker): a Ctrl-C while a worker is still importing is not a traceback from it.
    :func:`pool_worker_init` then ignores SIGINT for good and unblocks it."""

    def _spawn_process(self) -> None:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            super()._spawn_process()  # type: ignore[misc]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def pool_worker_init(parent: int) -> None:
    """``ChildPool(initializer=pool_worker_init, initargs=(os.getpid(),))``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    die_with_parent(signal.SIGKILL, parent)


def stop_pool(pool: ProcessPoolExecutor, grace: float = 2.0) -> None:
    """Cancel what is queued, let idle workers exit, kill what is still running after ``grace`` seconds."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + grace
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            with contextlib.suppress(Exception):
                p.kill()
            p.join(5)
