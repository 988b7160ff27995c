"""The training loop: `train(cfg, out_dir)` reads as phases (setup, resume, data, steps, checkpoints).

Exactness (docs/training.md#exact-resume): step s draws its randomness from Generator(seed, s) for the
global batch (`ptdit.train.step`), and data sample i is a pure function of (dataset seed, i) with step s
using samples [s B, (s + 1) B). So a resumed run equals an uninterrupted one, on any number of processes.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ptdit.train.config import TrainConfig
from ptdit.train.distributed import DistInfo, all_reduce_sum, setup_distributed, teardown_distributed
from ptdit.train.logging import RunLog
from ptdit.train.setup import build_dataset, build_loader, build_network, build_state, build_text_encoder, check_batch
from ptdit.train.state import latest_checkpoint, load_training_checkpoint, save_training_checkpoint, step_folder
from ptdit.train.step import NonFiniteLossError, TrainState, train_step

# preview(state, pipeline settings, png path): writes a sample grid of the EMA model (see ptdit.eval.previews).
PreviewFn = Callable[[TrainState, dict[str, Any], Path], Any]
# evaluate(state, pipeline settings) -> flat metrics of the EMA model (see ptdit.eval.during_training).
EvaluateFn = Callable[[TrainState, dict[str, Any]], dict[str, float]]


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    steps: int
    samples_seen: int
    train_seconds: float
    final_loss: float
    checkpoint: Path | None


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    show_progress: bool = True,
    preview: PreviewFn | None = None,
    evaluate: EvaluateFn | None = None,
) -> TrainResult:
    """Trains from `cfg`, writing checkpoints, metrics and samples under `out_dir`.

    Args:
        cfg: the validated configuration.
        out_dir: run folder (checkpoints/, metrics.jsonl, loss.png, samples/).
        resume: continue from `out_dir/checkpoints/latest`.
        stop_at: stop after this many total steps (default train.max_steps; the LR schedule always spans
            train.max_steps, so stopping early and resuming reproduces an uninterrupted run).
        show_progress: progress bar on rank 0 (a log line per interval when stderr is not a terminal).
        preview: writes the EMA sample grid every `train.sample_every` steps; `ptdit train` passes
            `ptdit.eval.previews.write_sample_grid`. None writes no grids.
        evaluate: evaluates the EMA weights every `train.eval_every` steps (rank 0; the metrics go to
            metrics.jsonl); `ptdit train` passes `ptdit.eval.during_training.make_training_evaluator(cfg)`.
    """
    if cfg.train.num_threads is not None:
        torch.set_num_threads(cfg.train.num_threads)
    if cfg.train.sample_every and preview is None:
        warnings.warn(
            "train.sample_every is set but no preview function was given, so no sample grids are written "
            "(pass preview=ptdit.eval.previews.write_sample_grid)",
            stacklevel=2,
        )
    if cfg.train.eval_every and evaluate is None:
        warnings.warn(
            "train.eval_every is set but no evaluate function was given, so nothing is evaluated "
            "(pass evaluate=ptdit.eval.during_training.make_training_evaluator(cfg))",
            stacklevel=2,
        )
    info = setup_distributed(cfg.train.device)
    hooks = _Hooks(preview=preview, evaluate=evaluate)
    try:
        return _train(
            cfg, Path(out_dir), info, resume=resume, stop_at=stop_at, show_progress=show_progress, hooks=hooks
        )
    finally:
        teardown_distributed()


def _existing_checkpoint(out: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from; refuses to train over an existing run without --resume."""
    existing = latest_checkpoint(out)
    if existing is not None and not resume:
        raise ValueError(f"{out} already holds checkpoint {existing.name}: pass --resume, or choose a new --out")
    if resume and existing is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {out}/checkpoints to resume from")
    return existing


def _train(
    cfg: TrainConfig,
    out: Path,
    info: DistInfo,
    *,
    resume: bool,
    stop_at: int | None,
    show_progress: bool,
    hooks: _Hooks,
) -> TrainResult:
    check_batch(cfg, info)
    stop = cfg.train.max_steps if stop_at is None else min(stop_at, cfg.train.max_steps)
    existing = _existing_checkpoint(out, resume)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    state, encoder_dir, pipeline = _setup(cfg, out, info)

    # Resume
    progress: dict[str, Any] = {}
    if resume:
        progress = load_training_checkpoint(existing, model=state.module, ema=state.ema, optimizer=state.optimizer)
        state.step = progress["step"]

    # Data, and the sampling settings stored with every checkpoint (the trained size and window)
    dataset = build_dataset(cfg)
    loader = build_loader(cfg, dataset, info, state.step, stop)
    frames = int(dataset[0]["pixels"].shape[1])
    pipeline.update(height=cfg.data.size, width=cfg.data.size, frames=frames)
    if pipeline.get("window_size") is None and hasattr(state.module.config, "window_size"):
        pipeline["window_size"] = list(state.module.config.window_size)

    # Steps, with periodic logging, checkpoints and previews
    log = RunLog(
        out, start_step=state.step, stop_step=stop, batch_size=cfg.train.batch_size, frames=frames,
        samples_before=progress.get("samples_seen", 0), seconds_before=progress.get("train_seconds", 0.0),
        log_every=cfg.train.log_every, enabled=info.is_main, show_progress=show_progress,
    )  # fmt: skip
    save = _saver(state, out, pipeline, encoder_dir, log)
    start_step, checkpoint = state.step, existing
    for batch in loader:
        metrics = _checked_step(state, batch, out)  # advances state.step
        log.step(state.step, metrics)
        if state.step % cfg.train.checkpoint_every == 0 and state.step < stop:
            checkpoint = save() or checkpoint
        if info.is_main:
            hooks.run(state, pipeline, out, log)
        if cfg.train.max_minutes is not None and _agree(
            log.elapsed() - log.seconds_before >= cfg.train.max_minutes * 60
        ):
            break
    log.bar.close()
    if state.step > start_step or checkpoint is None:
        checkpoint = save() or step_folder(out, state.step)
    log.writer.close()
    return TrainResult(
        out_dir=out, steps=state.step, samples_seen=log.samples_seen(state.step), train_seconds=log.elapsed(),
        final_loss=log.last_loss, checkpoint=checkpoint,
    )  # fmt: skip


@dataclass(frozen=True)
class _Hooks:
    """What rank 0 does beside training at a step: sample grids and evaluations of the EMA weights."""

    preview: PreviewFn | None
    evaluate: EvaluateFn | None

    def run(self, state: TrainState, pipeline: dict[str, Any], out: Path, log: RunLog) -> None:
        every = state.cfg.train
        if self.preview and every.sample_every and state.step % every.sample_every == 0:
            self.preview(state, pipeline, out / "samples" / f"step-{state.step:07d}.png")
        if self.evaluate and every.eval_every and state.step % every.eval_every == 0:
            metrics = self.evaluate(state, pipeline)
            log.writer.write({"step": state.step, **metrics})
            log.note(state.step, metrics)


def _setup(cfg: TrainConfig, out: Path, info: DistInfo) -> tuple[TrainState, Path | None, dict[str, Any]]:
    """Network, VAE, text encoder, then the step state; in this order, since each may draw from the seeded global
    generator. Returns (state, text-encoder folder to copy into checkpoints, pipeline settings)."""
    from ptdit.encoders import load_vae

    module = build_network(cfg, info)
    vae = load_vae(cfg.pipeline.vae, device=info.device)
    encoder, encoder_dir, pipeline = build_text_encoder(cfg, module.config, out, info.is_main)
    return build_state(cfg, info, module, vae, encoder), encoder_dir, pipeline


def _saver(
    state: TrainState, out: Path, pipeline: dict[str, Any], encoder_dir: Path | None, log: RunLog
) -> Callable[[], Path | None]:
    """A function that writes a training checkpoint of the current step (and redraws loss.png on rank 0)."""
    cfg, info = state.cfg, state.info

    def save() -> Path | None:
        folder = save_training_checkpoint(
            out, step=state.step, progress=log.progress(state.step), model=state.module, ema=state.ema,
            optimizer=state.optimizer, model_config=state.module.config, pipeline=pipeline,
            train_config=cfg.to_dict(), extra_dirs={"text_encoder": encoder_dir} if encoder_dir else None,
            keep_last=cfg.train.keep_last, is_writer=info.is_main,
        )  # fmt: skip
        if info.is_main:
            from ptdit.train.artifacts import plot_loss_curve

            plot_loss_curve(out / "metrics.jsonl", out / "loss.png")
        return folder

    return save


def _checked_step(state: TrainState, batch: dict[str, Any], out: Path) -> dict[str, float]:
    """`train_step`, with a non-finite loss turned into an error that names the intact checkpoint."""
    try:
        return train_step(state, batch)
    except NonFiniteLossError as err:
        last = latest_checkpoint(out)
        where = f"the last good checkpoint {last} is intact" if last else "no checkpoint was written"
        raise NonFiniteLossError(f"{err}; training stopped, {where}; lower optim.lr or check the data") from None


def _agree(flag: bool) -> bool:
    """True when any process says so: every process must leave the loop at the same step, or the others would
    wait forever in the next gradient all-reduce."""
    return bool(all_reduce_sum(torch.tensor(float(flag))) > 0)


__all__ = ["EvaluateFn", "NonFiniteLossError", "PreviewFn", "TrainResult", "train"]
