"""The run's engine: what is sent when, where, and how the answers are graded while the run goes on.

- :mod:`.order`: which request next: longest expected answer first (a run does not end waiting on a few long
  requests), identical prompts and shared prefixes adjacent (the server's prefix cache);
- :mod:`.concurrency`: how many requests in flight on each replica: read from the server's Prometheus ``/metrics``
  when it has them, else learned from the latency of finished requests; backs off on 429/5xx; or fixed
  (``--concurrency N``);
- :mod:`.grading`: the grading pool (worker processes sized to the machine's cores within a memory budget) and the
  grading queue, so a slow grade never holds a request slot;
- :mod:`.abort`: one early-stop policy for model and judge requests;
- :mod:`.eta`: the predicted end of the whole run, from the expected lengths of what is left.

``scorecheck.runner`` wires them into a run; ``scorecheck.store`` stays the only place with SQL.
"""
