"""One early-stop policy for every kind of request a run sends (model answers, judge verdicts).

A run whose first answers are mostly errors (a wrong key, a dead endpoint, parameters the server rejects) stops
early instead of retrying every request to exhaustion; everything finished is kept and a rerun continues.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class EarlyAbort:
    what: str
    """What the requests are, in the message: ``answers``, ``judge requests``."""
    first_n: int
    bad: frozenset[str]
    """Outcome statuses that count against the endpoint (``failed``; for model answers also ``http_400``)."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Every outcome of this session (results.json reports them)."""
    first: list[str] = field(default_factory=list)

    def observe(self, status: str, error: str | None) -> str | None:
        """Count one outcome; the reason to stop when the first ``first_n`` outcomes are mostly bad, else None."""
        self.outcomes[status] += 1
        if len(self.first) >= self.first_n:
            return None
        self.first.append(status)
        if len(self.first) < self.first_n:
            return None
        n_bad = sum(1 for s in self.first if s in self.bad)
        if n_bad * 2 <= self.first_n:
            return None
        c = Counter(self.first)
        kinds = ", ".join(f"{c[s]} {'HTTP 400' if s == 'http_400' else s}" for s in sorted(self.bad) if c[s])
        return (f"stopped early: {n_bad} of the first {self.first_n} {self.what} were errors ({kinds}; last error: "
                f"{error}); everything finished is kept, rerun the same command to continue")  # fmt: skip


@dataclass
class CircuitBreaker:
    """The whole run's guard against an endpoint that dies after the start (``EarlyAbort`` sees only the first
    answers): it trips when no attempt has got an answer for ``window_s`` seconds while at least ``min_failures``
    attempts failed. The runner then pauses (no new request starts), probes the endpoint, and resumes when a probe
    answers, else stops with the resume message. Without it, a dead endpoint is retried to exhaustion request by
    request: about two hours for the rest of MMLU at the default retries."""

    what: str
    """What an answer is, in the message: ``answer from the model``, ``judge verdict``."""
    window_s: float
    bad: frozenset[str]
    """Attempt outcomes that count as failures besides a failed attempt (model answers: also ``http_400``)."""
    min_failures: int = 8
    last_answer: float = field(default_factory=lambda: time.monotonic())
    failures: int = 0
    """Failed attempts since the last answer."""
    last_error: str | None = None

    def attempt(self, status: str, error: str | None) -> None:
        """One attempt's outcome (``ok``, ``http_400`` or ``failed``), as the client reports it."""
        if status in self.bad:
            self.failures += 1
            self.last_error = error
        else:
            self.answered()

    def answered(self) -> None:
        self.last_answer = time.monotonic()
        self.failures = 0

    def tripped(self) -> bool:
        return self.failures >= self.min_failures and time.monotonic() - self.last_answer >= self.window_s

    @property
    def probe_every(self) -> float:
        """Seconds between probes once tripped (a quarter of the probing time, at most 15 s)."""
        return min(max(self.window_s / 8, 0.1), 15.0)

    @property
    def probe_for(self) -> float:
        """How long the probes go on before the run stops (half the window)."""
        return self.window_s / 2

    def reason(self) -> str:
        quiet = time.monotonic() - self.last_answer
        return (f"stopped: no {self.what} for {quiet:.0f} s ({self.failures} failed attempts; last error: "
                f"{self.last_error}), and the endpoint did not answer probes for {self.probe_for:.0f} s; everything "
                "finished is kept, rerun the same command to continue")  # fmt: skip
