"""How many requests each replica gets at once.

The goal is the server's batch full from the first request to the last, without a deep queue (a queued request
holds nothing but adds latency, and a deep queue at the end of a run is time no one else can use the server).

**Fixed** (``--concurrency N``): N in flight on each replica.

**From the server's metrics** (default, when ``GET <root>/metrics`` answers with a known gauge pair; vLLM:
``vllm:num_requests_running`` / ``vllm:num_requests_waiting``, SGLang: ``sglang:num_running_reqs`` /
``sglang:num_queue_reqs``, llama.cpp ``--metrics``: ``llamacpp:requests_processing`` /
``llamacpp:requests_deferred``), read every :data:`POLL_S`: while nothing waits and our requests use the whole
limit, the limit grows (doubling until the server first queues, then by 3% and one); when more than twice a small
headroom (:func:`headroom`: 4% of the running requests, at least 2) waits at two polls running and the batch did
not grow between them, it drops to the running requests plus the headroom. It
settles at the server's batch size plus the headroom, so a finished sequence is replaced at the next step.

**From latency** (no metrics): a request's latency is its queue wait plus its completion tokens times the step
time. Over each window of requests sent since the last change, a least-squares fit of latency against completion
tokens gives both (less the least wait any window has shown: network and prefill, not queueing). While the wait is
under :data:`FREE_WAIT` of the service time the server has free slots (more requests raise throughput, not latency)
and the limit grows as above; otherwise the server is full (more requests only add latency) and the limit is set to
the busy slots that explain the wait (in flight / (1 + wait / service), Little's law) plus the headroom, at most a
quarter lower per window.

**Back-off**: a 429 or 5xx from a replica cuts its limit by 30% (once per :data:`BACKOFF_COOLDOWN_S`), whatever the
mode; it then grows again by 3% steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from scorecheck.client import EndpointState

START = 32
MAX = 4096
POLL_S = 0.5
FREE_WAIT = 0.05
BACKOFF = 0.7
BACKOFF_COOLDOWN_S = 2.0
GROW_AFTER_FULL = 1.03

GAUGES = {
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "sglang": ("sglang:num_running_reqs", "sglang:num_queue_reqs"),
    "llama.cpp": ("llamacpp:requests_processing", "llamacpp:requests_deferred"),
}


def headroom(running: float) -> int:
    return max(2, math.ceil(0.04 * running))


def parse_metrics(text: str) -> tuple[str, float, float] | None:
    """(server kind, running, waiting) from a Prometheus text exposition (summed over label sets), or None."""
    wanted = {name for pair in GAUGES.values() for name in pair}
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        brace = line.find("{")
        space = line.find(" ")
        end = brace if 0 <= brace < space or (brace >= 0 and space < 0) else space
        name = line[:end] if end > 0 else line
        if name not in wanted:
            continue
        rest = line[line.rindex("}") + 1 :] if brace >= 0 else line[len(name) :]
        try:
            sums[name] = sums.get(name, 0.0) + float(rest.split()[0])
        except (IndexError, ValueError):
            continue
    for kind, (running, waiting) in GAUGES.items():
        if running in sums and waiting in sums:
            return kind, sums[running], sums[waiting]
    return None


def metrics_url(base_url: str) -> str:
    """The server's root ``/metrics`` (vLLM and SGLang serve it beside ``/v1``)."""
    root = base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url
    return root.rstrip("/") + "/metrics"


@dataclass
class Limit:
    """The concurrency limit of one replica and how it is found."""

    ep: EndpointState
    fixed: int | None = None
    value: int = START
    assigned: int = 0
    """Slot workers running on this replica (the scheduler keeps it at ``value``)."""
    mode: str = "latency"
    """``fixed``, ``metrics:<server>``, ``latency``."""
    full_seen: bool = False
    changed_at: float = field(default_factory=time.monotonic)
    _samples: list[tuple[float, float, int]] = field(default_factory=list)
    _throttled_seen: int = 0
    _base_wait: float | None = None
    _prev_waiting: float = 0.0
    _prev_running: float = 0.0
    _backoff_at: float = 0.0
    history: list[tuple[float, int]] = field(default_factory=list)
    on_change: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        if self.fixed is not None:
            self.value, self.mode = self.fixed, "fixed"
        self.history.append((time.monotonic(), self.value))

    def _set(self, value: float, full: bool | None = None) -> None:
        value = max(1, min(MAX, int(value)))
        if full:
            self.full_seen = True
        if value != self.value:
            self.value = value
            self.history.append((time.monotonic(), value))
            if self.on_change is not None:
                self.on_change()
        self.changed_at = time.monotonic()
        self._samples.clear()

    def _grow(self) -> None:
        self._set(self.value * (GROW_AFTER_FULL if self.full_seen else 2.0) + (1 if self.full_seen else 0))

    def _check_throttle(self) -> bool:
        """Back off after a 429/5xx from this replica; True when it did."""
        if self.ep.throttled == self._throttled_seen:
            return False
        self._throttled_seen = self.ep.throttled
        now = time.monotonic()
        if now - self._backoff_at < BACKOFF_COOLDOWN_S:
            return True
        self._backoff_at = now
        self._set(self.value * BACKOFF, full=True)
        return True

    # -- the two sources of feedback ---------------------------------------------------------------------------
    def on_metrics(self, running: float, waiting: float) -> None:
        if self.fixed is not None or self._check_throttle():
            return
        ours = self.ep.in_flight
        head = headroom(running)
        queued, self._prev_waiting = self._prev_waiting, waiting
        was_running, self._prev_running = self._prev_running, running
        if waiting > 2 * head and queued > 2 * head and running <= was_running and ours > 0:
            # Queued at two polls running with a batch that did not grow: full (requests that just arrived wait for
            # the next step, or for a server slow to take them, and then join: that is no full batch).
            # The batch is what runs (our count also holds answers this process has not read yet on a loaded CPU).
            self._set(max(running + head, ours // 2), full=True)
        elif waiting == 0 and ours >= 0.9 * self.value:
            self._grow()

    def on_completion(self, latency: float | None, tokens: int | None, sent_at: float) -> None:
        if self.fixed is not None or self._check_throttle() or self.mode != "latency":
            return
        if latency is None or not tokens or sent_at < self.changed_at:
            return
        self._samples.append((float(tokens), latency, self.ep.in_flight + 1))
        if len(self._samples) < max(48, min(self.value // 2, 128)):
            return
        fitted, service, in_flight = fit_wait(self._samples)
        if service <= 0:
            self._samples.clear()
            return
        # What every request waits however idle the server (network, prefill) is not queueing: the least wait any
        # window has shown is the baseline (as TCP Vegas takes the least round trip seen).
        self._base_wait = fitted if self._base_wait is None else min(self._base_wait, fitted)
        wait = fitted - self._base_wait
        if wait < FREE_WAIT * service:
            if in_flight >= 0.8 * self.value:
                self._grow()
            else:
                self._samples.clear()
            return
        busy = in_flight / (1 + wait / service)
        # At most a quarter off per window: a client slow to read its answers (a loaded CPU) also looks like a wait.
        self._set(max(busy + headroom(busy), 0.75 * self.value), full=True)


def fit_wait(samples: list[tuple[float, float, int]]) -> tuple[float, float, float]:
    """(queue wait, mean service time, mean in flight) from (completion tokens, latency, in flight) samples:
    latency = wait + tokens x step, by least squares."""
    n = len(samples)
    mx = sum(s[0] for s in samples) / n
    my = sum(s[1] for s in samples) / n
    sxx = sum((s[0] - mx) ** 2 for s in samples)
    if sxx <= 0:
        return 0.0, 0.0, 0.0
    step = sum((s[0] - mx) * (s[1] - my) for s in samples) / sxx
    wait = max(my - step * mx, 0.0)
    return wait, step * mx, sum(s[2] for s in samples) / n


async def probe_metrics(session: aiohttp.ClientSession, ep: EndpointState) -> tuple[str, float, float] | None:
    with contextlib.suppress(TimeoutError, aiohttp.ClientError, OSError, UnicodeDecodeError):
        async with session.get(metrics_url(ep.base_url), headers=ep.request_headers(),
                               timeout=aiohttp.ClientTimeout(total=5)) as resp:  # fmt: skip
            if resp.status == 200:
                return parse_metrics(await resp.text())
    return None


async def watch_metrics(session: aiohttp.ClientSession, limit: Limit, stop: asyncio.Event) -> None:
    """Poll the replica's /metrics while the run lasts; returns at once (latency mode) when it has none."""
    if limit.fixed is not None:
        return
    first = await probe_metrics(session, limit.ep)
    if first is None:
        return
    limit.mode = f"metrics:{first[0]}"
    misses = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_S)
        if stop.is_set():
            return
        got = await probe_metrics(session, limit.ep)
        if got is None:
            misses += 1
            if misses >= 5:  # the metrics went away: learn from latency instead
                limit.mode = "latency"
                return
            continue
        misses = 0
        limit.on_metrics(got[1], got[2])
