"""Run logging on rank 0: `metrics.jsonl` (+ TensorBoard when installed) and the progress bar with ETA.

None of it affects training: the loop hands each step's metrics to `RunLog.step`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ptdit.optional import optional


class MetricsWriter:
    """Appends one JSON object per line to `metrics.jsonl`; mirrors scalars to TensorBoard if available."""

    def __init__(self, out_dir: Path, enabled: bool = True) -> None:
        self.path = out_dir / "metrics.jsonl"
        self.enabled = enabled
        self.tensorboard = None
        if enabled:
            tensorboard = optional("torch.utils.tensorboard")  # needs the optional tensorboard package
            if tensorboard is not None:
                self.tensorboard = tensorboard.SummaryWriter(str(out_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tensorboard.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def truncate_metrics(out_dir: Path, step: int) -> float:
    """Keeps the records of `metrics.jsonl` up to `step` (a resumed run rewrites the later ones, so no step is
    repeated) and drops a line cut short by a kill. Returns the last kept loss (NaN when there is none)."""
    path = out_dir / "metrics.jsonl"
    if not path.is_file():
        return float("nan")
    kept, last_loss = [], float("nan")
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("step", 0) <= step:
            kept.append(line)
            last_loss = record.get("loss", last_loss)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept))
    tmp.replace(path)
    return last_loss


class ProgressBar:
    """tqdm bar with step, loss, samples/s and ETA; a plain log line per ~5% when stderr is not a terminal."""

    def __init__(self, start: int, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.enabled, self.total, self.tty = enabled, total, sys.stderr.isatty()
        self.every, self.last_print = max(total // 20, 1), time.perf_counter()
        self.start, self.started = start, self.last_print
        self.bar = tqdm(total=total, initial=start, unit="step", disable=not (enabled and self.tty), dynamic_ncols=True)

    def update(self, step: int, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if self.tty:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", samples_s=f"{record['samples_per_second']:.1f}")
        elif step % self.every == 0 or step == self.total or time.perf_counter() - self.last_print >= 30:
            self.last_print = time.perf_counter()
            print(
                f"step {step}/{self.total}  loss {record['loss']:.4f}  {record['samples_per_second']:.1f} samples/s  "
                f"{record['elapsed_seconds']:.0f}s  ETA {self.eta(step)}",
                file=sys.stderr,
                flush=True,
            )

    def eta(self, step: int) -> str:
        """Time left at this invocation's mean speed so far, as m:ss (tqdm shows its own on a terminal)."""
        done = step - self.start
        if done <= 0:
            return "?"
        left = round((time.perf_counter() - self.started) / done * (self.total - step))
        return f"{left // 60}:{left % 60:02d}"

    def close(self) -> None:
        self.bar.close()


class RunLog:
    """Averages the loss between log lines and writes one record per `log_every` steps (and the last step).

    Args:
        out_dir: the run folder (metrics.jsonl goes there).
        start_step, stop_step: the steps this invocation trains.
        batch_size: global batch, to count samples.
        frames: frames per sample, to count frames.
        samples_before, seconds_before: progress of earlier invocations of a resumed run.
        log_every: steps between records.
        enabled: rank 0 writes; the others keep count silently.
        show_progress: show the progress bar.
        stage: the name of a staged run's stage, written into every record.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        start_step: int,
        stop_step: int,
        batch_size: int,
        frames: int,
        samples_before: int,
        seconds_before: float,
        log_every: int,
        skipped_before: int = 0,
        enabled: bool,
        show_progress: bool,
        stage: str | None = None,
    ) -> None:
        self.stage = stage  # a staged run's current stage, named in every record (docs/training.md#stages)
        self.writer = MetricsWriter(out_dir, enabled=enabled)
        self.bar = ProgressBar(start_step, stop_step, enabled=enabled and show_progress)
        self.start_step, self.stop_step, self.batch_size, self.frames = start_step, stop_step, batch_size, frames
        self.samples_before, self.seconds_before, self.log_every = samples_before, seconds_before, log_every
        self.start_time = self.last_log = time.perf_counter()
        self.losses: list[float] = []
        self.last_loss = float("nan")
        self.skipped = skipped_before  # bad stored samples skipped so far (all processes, earlier invocations too)

    def elapsed(self) -> float:
        """Training seconds of the whole run, earlier invocations included."""
        return self.seconds_before + time.perf_counter() - self.start_time

    def samples_seen(self, step: int) -> int:
        return self.samples_before + (step - self.start_step) * self.batch_size

    def count_skipped(self, skipped: float) -> None:
        """Adds the bad samples one step's batch skipped (summed over processes)."""
        self.skipped += int(skipped)

    def progress(self, step: int) -> dict[str, Any]:
        """The progress record stored in checkpoints."""
        samples = self.samples_seen(step)
        record = {"samples_seen": samples, "frames_seen": samples * self.frames, "train_seconds": self.elapsed()}
        return {**record, "data_skipped": self.skipped} if self.skipped else record

    def step(self, step: int, metrics: dict[str, float]) -> None:
        """Records the metrics of the step that just finished (`step` is the new step count)."""
        self.last_loss = metrics["loss"]
        self.losses.append(metrics["loss"])
        if step % self.log_every and step != self.stop_step:
            return
        now = time.perf_counter()
        record = {
            "step": step,
            "loss": sum(self.losses) / len(self.losses),
            "lr": metrics["lr"],
            "grad_norm": metrics["grad_norm"],
            "samples_seen": self.samples_seen(step),
            "samples_per_second": len(self.losses) * self.batch_size / max(now - self.last_log, 1e-9),
            "elapsed_seconds": self.elapsed(),
        }
        record["frames_seen"] = record["samples_seen"] * self.frames
        if self.stage is not None:
            record["stage"] = self.stage
        if "data_skipped" in metrics:
            record["data_skipped"] = int(metrics["data_skipped"])
        self.writer.write(record)
        self.bar.update(step, record)
        self.losses, self.last_log = [], now

    def note(self, step: int, metrics: dict[str, float]) -> None:
        """Shows an evaluation's headline numbers (its full record goes to metrics.jsonl by the caller)."""
        if not self.bar.enabled:
            return
        shown = ", ".join(f"{k.split('/', 1)[-1]} {v:.4g}" for k, v in metrics.items() if k.count("/") <= 1)
        if self.bar.tty:
            self.bar.bar.write(f"step {step} evaluation: {shown}")
        else:
            print(f"step {step} evaluation: {shown}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()
        self.writer.close()


__all__ = ["MetricsWriter", "ProgressBar", "RunLog"]
