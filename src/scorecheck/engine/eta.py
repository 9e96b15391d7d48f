"""The predicted end of the whole run: expected completion tokens left / the rate the server delivers them.

Tokens left = the expected lengths (:mod:`.order`) of the requests not yet sent plus half the expected length of
those in flight (on average half generated). The rate is the completion tokens of the answers finished in the last
:data:`WINDOW_S` seconds (all of them until then). Grading that lags behind adds its own time: answers waiting to be
graded / the grading rate. No prediction before :data:`MIN_DONE` answers have finished. Predictions are recorded at
fixed shares of the requests, so results.json can set them against the actual end.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

WINDOW_S = 60.0
MIN_DONE = 20
CHECKPOINTS = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass
class Eta:
    total_requests: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    _events: deque[tuple[float, int]] = field(default_factory=deque)
    _window_tokens: int = 0
    predictions: list[dict[str, Any]] = field(default_factory=list)
    _next_checkpoint: int = 0
    last: tuple[float, float] | None = None
    """(seconds left, tokens left) of the latest prediction."""

    def completed(self, tokens: int | None) -> None:
        now = time.monotonic()
        self.done += 1
        t = tokens or 0
        self._events.append((now, t))
        self._window_tokens += t
        while self._events and now - self._events[0][0] > WINDOW_S and len(self._events) > MIN_DONE:
            self._window_tokens -= self._events.popleft()[1]

    def rate(self) -> float | None:
        """Completion tokens per second over the window."""
        if self.done < MIN_DONE or not self._events:
            return None
        start = self._events[0][0] if len(self._events) < self.done else self.started
        return self._window_tokens / max(time.monotonic() - start, 1e-3)

    def update(self, tokens_left: float, grading_left: int, grading_rate: float | None) -> tuple[float, float] | None:
        """A new prediction (seconds left, tokens left), or None before there is a rate."""
        r = self.rate()
        if r is None or r <= 0:
            return None
        secs = tokens_left / r
        if grading_left and grading_rate:
            secs = max(secs, grading_left / grading_rate)
        self.last = (secs, tokens_left)
        share = self.done / max(self.total_requests, 1)
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
