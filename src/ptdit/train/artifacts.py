"""Run artifacts written by rank 0: reading metrics back, the loss-curve PNG and sample strips. None of them
affects training."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ptdit.optional import optional


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (a last line cut short by a kill is skipped)."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in records if isinstance(r, dict)]


def plot_loss_curve(metrics_path: Path, out_png: Path) -> Path | None:
    """Loss against step (log scale) from metrics.jsonl; None when matplotlib is missing or no data yet."""
    records = [r for r in read_metrics(metrics_path) if "loss" in r]
    if not records:
        return None
    matplotlib = optional("matplotlib")
    if matplotlib is None:
        print("note: matplotlib is not installed, so no loss-curve PNG (pip install 'ptdit[eval]')", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    losses = [r["loss"] for r in records]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, losses, lw=1.2)
    if len(losses) >= 10:  # a running mean makes the trend readable through the minibatch noise
        k = max(len(losses) // 20, 2)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, lw=2, label=f"mean of {k}")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = out_png.with_name(f".{out_png.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(out_png)
    return out_png
