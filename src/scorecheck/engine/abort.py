"""One early-stop policy for every kind of request a run sends (model answers, judge verdicts).

A run whose first answers are mostly errors (a wrong key, a dead endpoint, parameters the server rejects) stops
early instead of retrying every request to exhaustion; everything finished is kept and a rerun continues.
"""

from __future__ import annotations

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
