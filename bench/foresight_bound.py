"""What a client that cannot see answer lengths can reach on the simulated server: the no-foresight reference.

The server-bound ideal of ``bench/batch_throughput.py`` starts every request at time 0 *longest first by its drawn
length*: it knows which 0.2% of the answers will run to max_tokens. A client knows only the prompt (its kind) and the
answers finished so far, and the simulator draws lengths from a hash of the conversation, independently of the kind
within a kind. So the best order a client can choose is by expected length: the kinds by their expected answer
(math 450 > other 400 > multiple choice 350 > code 300 tokens median; the runaway share is the same in every kind),
in an order within a kind that cannot depend on the draws. This script builds the full six-eval suite's requests
offline exactly as scorecheck sends them (glaive-2024, Reflection system prompt; the same conversation text the
simulator hashes), draws each one's length with the simulator's own function, and computes for each configuration:

- the ideal (all at time 0, longest first by drawn length);
- the no-foresight reference: all at time 0 in the expected-length order, within a kind in a random order, over
  ``--orders`` random orders (mean and range of makespan / ideal).

No server, no client: pure computation of the simulator's model (``sim_server.makespan_in_order``). Two replicas:
the requests dealt to the two in turn, the larger makespan.

Usage: ``python bench/foresight_bound.py [--orders N] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_server import MEDIANS, draw_length, ideal_makespan, kind_of, makespan_in_order  # noqa: E402

EVALS = ["mmlu", "gpqa", "math", "gsm8k", "humaneval", "ifeval"]
CONFIGS = [("256 slots", 256, 1), ("64 slots", 64, 1), ("1024 slots", 1024, 1), ("2 replicas x 256", 256, 2)]


def requests() -> list[tuple[str, float, int]]:
    """(kind, prompt tokens, drawn completion tokens) of every request the full suite sends, deduplicated as
    scorecheck deduplicates them (identical requests are sent once)."""
    from scorecheck.config import Resolved, RunConfig

    rc = Resolved(RunConfig(evals=EVALS, system_prompt="reflection", reasoning="reflection"))
    max_tokens = int(rc.sampling().get("max_tokens") or 6000)
    seen: dict[tuple[str, int], tuple[str, float, int]] = {}
    for b in rc.benchmarks:
        items, _ = b.load(None)
        for item in items:
            messages = rc.messages(item.prompt, b)
            conversation = json.dumps(messages, sort_keys=True)
            text = "\n".join(str(m.get("content") or "") for m in messages)
            kind = kind_of(text)
            for s in range(rc.samples_for(b)):
                # The simulator hashes the conversation only: repeats of one prompt draw one length.
                seen.setdefault((conversation, s), (kind, len(text) / 4.0, draw_length(conversation, kind, max_tokens)))
    return list(seen.values())


def makespan(reqs: list[tuple[float, int]], slots: int, replicas: int) -> float:
    return max(makespan_in_order(reqs[i::replicas], slots) for i in range(replicas))


_REQUESTS: list[tuple[str, float, int]] = []


def no_foresight(slots: int, replicas: int, orders: int = 20) -> dict[str, float]:
    """The ideal and the no-foresight reference / ideal (mean, min, max over ``orders`` random within-kind orders)
    for the full suite on ``replicas`` servers of ``slots`` slots."""
    if not _REQUESTS:
        _REQUESTS.extend(requests())
    reqs = _REQUESTS
    by_length = sorted(((p, n) for _, p, n in reqs), key=lambda r: -r[1])
    ideal = makespan(by_length, slots, replicas) if replicas > 1 else ideal_makespan(by_length, slots)
    ratios = []
    for seed in range(orders):
        rng = random.Random(seed)
        keyed = sorted((-MEDIANS[k], rng.random(), p, n) for k, p, n in reqs)
        ratios.append(makespan([(p, n) for *_, p, n in keyed], slots, replicas) / ideal)
    return {"ideal_s": round(ideal, 1), "mean": round(statistics.mean(ratios), 4), "min": round(min(ratios), 4),
            "max": round(max(ratios), 4)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=20, help="random within-kind orders per configuration")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    _REQUESTS.extend(requests())
    runaways = sum(1 for k, _, n in _REQUESTS if n >= 6000)
    print(f"{len(_REQUESTS):,} requests, {runaways} run to max_tokens")
    out: dict = {"requests": len(_REQUESTS), "runaways": runaways, "configs": {}}
    for name, slots, replicas in CONFIGS:
        row = no_foresight(slots, replicas, a.orders)
        ideal = row["ideal_s"]
        out["configs"][name] = row
        print(f"{name:>18}: ideal {ideal:8.1f} s; no-foresight / ideal mean {row['mean']:.3f} "
              f"(range {row['min']:.3f}-{row['max']:.3f}, {a.orders} orders)")  # fmt: skip
    if a.json:
        a.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
