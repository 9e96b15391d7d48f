"""The predicted end of the whole run: the time the requests still need, or grading, whichever ends later.

Requests: the expected completion tokens left (the expected lengths of :mod:`.order` for the requests not yet sent,
plus half the expected length of those in flight: on average half generated) / the rate at which the server
delivers completion tokens over the last :data:`WINDOW_S` seconds. Grading: the answers waiting to be graded / the
grading rate since the first grade. No prediction before :data:`MIN_DONE` answers have finished. Predictions are
recorded at fixed shares of the requests, so results.json can set them against the actual end.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WINDOW_S = 30.0
MIN_DONE = 20
CHECKPOINTS = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass
class Rate:
    """Events per second (weighted by their size) over a sliding window."""

    window_s: float = WINDOW_S
    started: float = field(default_factory=time.monotonic)
    n: int = 0
    _events: deque[tuple[float, float]] = field(default_factory=deque)
    _sum: float = 0.0
    _evicted: bool = False

    def add(self, size: float = 1.0) -> None:
        now = time.monotonic()
        self.n += 1
        self._events.append((now, size))
        self._sum += size
        while len(self._events) > MIN_DONE and now - self._events[0][0] > self.window_s:
            self._sum -= self._events.popleft()[1]
            self._evicted = True

    def per_s(self) -> float | None:
        if self.n < MIN_DONE:
            return None
        start = self._events[0][0] if self._evicted else self.started
        return self._sum / max(time.monotonic() - start, 1e-3)


@dataclass
class Eta:
    total_requests: int
    started: float = field(default_factory=time.monotonic)
    tokens: Rate = field(default_factory=Rate)
    graded: Rate = field(default_factory=lambda: Rate(window_s=float("inf")))
    """Grading runs in bursts (a slow eval, then a fast one): its rate over the whole run."""
    predictions: list[dict[str, Any]] = field(default_factory=list)
    _next_checkpoint: int = 0
    last: tuple[float, float] | None = None
    """(seconds left, tokens left) of the latest prediction."""

    def completed(self, tokens: int | None) -> None:
        self.tokens.add(float(tokens or 0))

    def update(self, tokens_left: float, grading_left: int) -> tuple[float, float] | None:
        """A new prediction (seconds left, tokens left), or None before there is a rate."""
        r = self.tokens.per_s()
        if r is None or r <= 0:
            return None
        secs = tokens_left / r
        g = self.graded.per_s()
        if grading_left and g:
            secs = max(secs, grading_left / g)
        self.last = (secs, tokens_left)
        share = self.tokens.n / max(self.total_requests, 1)
        while self._next_checkpoint < len(CHECKPOINTS) and share >= CHECKPOINTS[self._next_checkpoint]:
            elapsed = time.monotonic() - self.started
            self.predictions.append({"at_share": CHECKPOINTS[self._next_checkpoint], "at_s": round(elapsed, 2),
                                     "predicted_total_s": round(elapsed + secs, 2),
                                     "predicted_tokens_left": round(tokens_left)})  # fmt: skip
            self._next_checkpoint += 1
        return self.last

    def summary(self) -> dict[str, Any]:
        """For results.json: the recorded predictions and the actual time of the run's requests and grading."""
        actual = time.monotonic() - self.started
        preds = [{**p, "error": round(p["predicted_total_s"] / actual - 1, 4) if actual > 0 else None}
                 for p in self.predictions]  # fmt: skip
        return {"actual_s": round(actual, 2), "predictions": preds}
