"""A grouped bar chart: one group per benchmark, one bar per configuration, 95% intervals as error bars, flagged
cells hatched, claimed numbers as markers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from scorecheck.compare.model import Comparison


def plot_png(cmp: Comparison, path: Path | None = None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(e, m) for e, m in cmp.rows if m == "score" or m == "macro"]
    labels = [e if m == "score" else f"{e}\n({m})" for e, m in rows]
    k = max(1, len(cmp.runs))
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(8.0, 1.3 * len(rows) * max(1, k / 2) + 4), 4.5), dpi=120)
    cmap = plt.get_cmap("tab10")
    colors = [cmap(i) for i in range(cmap.N)]  # tab10's ten colours (RGBA)
    for j, run in enumerate(cmp.runs):
        xs, ys, lo, hi, hatch = [], [], [], [], []
        for i, (e, m) in enumerate(rows):
            c = cmp.cells.get((e, m, run.label))
            if c is None or c.score is None:
                continue
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(c.score)
            ci = c.ci95 or [c.score, c.score]
            lo.append(max(0.0, c.score - ci[0]))
            hi.append(max(0.0, ci[1] - c.score))
            hatch.append(bool(c.problems))
        bars = ax.bar(xs, ys, width * 0.92, yerr=[lo, hi], capsize=3, label=run.label, color=colors[j % 10],
                      error_kw={"elinewidth": 1, "ecolor": "#333"})  # fmt: skip
        for b, h, y in zip(bars, hatch, ys, strict=True):
            if h:
                b.set_hatch("//")
                b.set_edgecolor("#000")
            ax.annotate(f"{y:.3f}", (b.get_x() + b.get_width() / 2, y), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)  # fmt: skip
    claimed: dict[str, list[tuple[int, float]]] = {}
    for claim in cmp.claims:
        if (claim["eval"], claim["metric"]) in rows:
            at = rows.index((claim["eval"], claim["metric"]))
            claimed.setdefault(claim["column"], []).append((at, claim["claimed"]))
    markers = "D^sv*"
    for n, (col, pts) in enumerate(claimed.items()):
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=markers[n % len(markers)], s=40, zorder=5,
                   color="#000", facecolors="none", label=f"claim: {col}")  # fmt: skip
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (95% CI)")
    ax.set_title("scorecheck compare" + ("  (hatched: cell has a problem, see diagnostics)" if any(
        c.problems for c in cmp.cells.values()) else ""), fontsize=10)  # fmt: skip
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return save_png(fig, path)


def save_png(fig: Any, path: Path | None) -> bytes:
    """The figure as PNG bytes (also written to ``path`` when given); the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
