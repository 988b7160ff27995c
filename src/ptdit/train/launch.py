"""Launching `ptdit train` in several local processes (torchrun, DDP on CPU with gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ptdit.train.loop import TrainResult

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def torchrun_command(config: Path, overrides: list[str], out: Path, processes: int) -> list[str]:
    """`python -m torch.distributed.run ... -m ptdit train --config CONFIG --out OUT --set ...`."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    cmd += ["-m", "ptdit", "train", "--config", str(config), "--out", str(out)]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def run_forwarding_stops(cmd: list[str], env: dict[str, str]) -> tuple[int, str | None]:
    """Runs `cmd` and passes this process's SIGINT / SIGTERM on to it as one SIGTERM. Returns (exit code, the name
    of the signal received, or None).

    torchrun runs in its own session, so a Ctrl-C reaches it only through this forwarding, once: it then sends
    SIGTERM to its workers, which finish their step and write a checkpoint (docs/training.md, "Faults"), as
    one process does. Without it, the workers outlived a SIGTERMed parent and trained on unseen."""
    received: list[str] = []
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)

    def forward(signum: int, frame: object) -> None:
        if not received:
            received.append(signal.Signals(signum).name)
            proc.send_signal(signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code, (received[0] if received else None)


def train_in_processes(config: Path, overrides: list[str], out: Path, processes: int, *, stop_step: int) -> TrainResult:
    """Runs `ptdit train` under torchrun (DDP on CPU with gloo) and reads the result back from the run folder.

    `stopped_by` is set as `train` sets it in one process: the signal's name when a SIGINT / SIGTERM stopped the
    workers (after their step and checkpoint) before `stop_step`, "max_minutes" when the time budget did."""
    from ptdit.train.artifacts import read_metrics
    from ptdit.train.state import STATE_DIR, latest_checkpoint

    cmd = torchrun_command(config, overrides, out, processes)
    print(f"training with {processes} processes (torchrun, DDP): {' '.join(cmd[2:])}", file=sys.stderr)
    code, stopped_by = run_forwarding_stops(cmd, {**os.environ, "OMP_NUM_THREADS": "1"})
    if code != 0 and stopped_by is None:
        raise ValueError(f"training failed (exit code {code}); see the messages above")
    folder = latest_checkpoint(out)
    if folder is None:
        raise ValueError(f"training wrote no checkpoint under {out}; see the messages above")
    progress = json.loads((folder / STATE_DIR / "progress.json").read_text())
    records = read_metrics(out / "metrics.jsonl")
    if progress["step"] >= stop_step:
        stopped_by = None  # the signal came after the last step
    elif stopped_by is None:  # a signal the workers got themselves, or the time budget: the run's own record
        stops = [r["stopped_by"] for r in records if r.get("event") == "stopped" and r["step"] == progress["step"]]
        stopped_by = stops[-1] if stops else None
    losses = [r["loss"] for r in records if "loss" in r]  # evaluation and event records have none
    return TrainResult(
        out_dir=out,
        steps=progress["step"],
        samples_seen=progress["samples_seen"],
        train_seconds=progress["train_seconds"],
        final_loss=losses[-1] if losses else float("nan"),
        checkpoint=folder,
        stop_step=stop_step,
        stopped_by=stopped_by,
    )


__all__ = ["train_in_processes"]
