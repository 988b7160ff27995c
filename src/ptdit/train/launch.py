"""Launching `ptdit train` in several local processes (torchrun, DDP on CPU with gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ptdit.train.loop import TrainResult


def train_in_processes(config: Path, overrides: list[str], out: Path, processes: int):
    """Runs `ptdit train` under torchrun (DDP on CPU with gloo) and reads the result back from the run folder."""
    from ptdit.train.artifacts import read_metrics
    from ptdit.train.state import STATE_DIR, latest_checkpoint

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "ptdit",
        "train",
        "--config",
        str(config),
        "--out",
        str(out),
    ]
    for item in overrides:
        cmd += ["--set", item]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    print(f"training with {processes} processes (torchrun, DDP): {' '.join(cmd[2:])}", file=sys.stderr)
    code = subprocess.run(cmd, env=env).returncode
    if code != 0:
        raise ValueError(f"training failed (exit code {code}); see the messages above")
    folder = latest_checkpoint(out)
    if folder is None:
        raise ValueError(f"training wrote no checkpoint under {out}; see the messages above")
    progress = json.loads((folder / STATE_DIR / "progress.json").read_text())
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]  # evaluation records have none
    return TrainResult(
        out_dir=out,
        steps=progress["step"],
        samples_seen=progress["samples_seen"],
        train_seconds=progress["train_seconds"],
        final_loss=losses[-1] if losses else float("nan"),
        checkpoint=folder,
    )


__all__ = ["train_in_processes"]
