"""The training loop: `train(cfg, out_dir)` reads as phases (setup, resume, data, steps, checkpoints).

Exactness (docs/training.md#exact-resume): step s draws its randomness from Generator(seed, s) for the
global batch (`ptdit.train.step`), and data sample i is a pure function of (dataset seed, i) with step s
using samples [s B, (s + 1) B). So a resumed run equals an uninterrupted one, on any number of processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ptdit.data.cache import FeatureCache
from ptdit.io import CONFIG_NAME, check_writable, read_json
from ptdit.train.config import TrainConfig
from ptdit.train.distributed import DistInfo, all_reduce_sum, setup_distributed, teardown_distributed
from ptdit.train.features import use_cache
from ptdit.train.lock import LOCK_NAME, RunLock
from ptdit.train.logging import RunLog, truncate_metrics
from ptdit.train.resume import check_resume_config, describe
from ptdit.train.setup import (
    build_dataset,
    build_loader,
    build_network,
    build_state,
    build_text_encoder,
    check_batch,
    sample_frames,
)
from ptdit.train.stages import Stage, resolve_stages, written_by
from ptdit.train.state import (
    CheckpointWriteError,
    checkpoint_step,
    fault_point,
    latest_checkpoint,
    load_training_checkpoint,
    remove_interrupted_saves,
    save_training_checkpoint,
    step_folder,
)
from ptdit.train.step import NonFiniteLossError, TrainState, train_step
from ptdit.train.stopping import StopRequests
from ptdit.train.warmstart import load_initial_weights

# What a run folder holds; `train --out` refuses a non-empty folder with anything else.
RUN_ENTRIES = {
    "checkpoints", "metrics.jsonl", "loss.png", "samples", "tensorboard", "text_encoder", LOCK_NAME,
    ".metrics.jsonl.tmp", ".loss.png.tmp.png", "metrics.json", "report.html", ".ptdit-demo",
}  # fmt: skip

# preview(state, pipeline settings, png path): writes a sample grid of the EMA model (see ptdit.eval.previews).
PreviewFn = Callable[[TrainState, dict[str, Any], Path], Any]
# evaluate(state, pipeline settings) -> metrics of the EMA model (see ptdit.eval.during_training).
EvaluateFn = Callable[[TrainState, dict[str, Any]], dict[str, float]]


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


@dataclass(frozen=True)
class TrainResult:
    """What a `train` call did. `stopped_by` says why it stopped before the stop step: "max_minutes", a signal
    name ("SIGINT", "SIGTERM"), or None when it reached the stop step."""

    out_dir: Path
    steps: int
    samples_seen: int
    train_seconds: float
    final_loss: float
    checkpoint: Path | None
    start_step: int = 0
    stop_step: int = 0
    stopped_by: str | None = None


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    show_progress: bool = True,
    preview: PreviewFn | None = None,
    evaluate: EvaluateFn | None = None,
    allow_config_change: bool = False,
) -> TrainResult:
    """Trains from `cfg`, writing checkpoints, metrics and samples under `out_dir`.

    Args:
        cfg: the validated configuration.
        out_dir: run folder (checkpoints/, metrics.jsonl, loss.png, samples/). One training at a time writes
            into it (a lock refuses a second one).
        resume: continue from `out_dir/checkpoints/latest`. A different model or task is refused; settings that
            change the numbers (batch, data, optimizer, ...) need `allow_config_change`.
        stop_at: stop after this many total steps (default train.max_steps; the LR schedule always spans
            train.max_steps, so stopping early and resuming reproduces an uninterrupted run).
        show_progress: progress bar on rank 0 (a log line per interval when stderr is not a terminal).
        preview: writes the EMA sample grid every `train.sample_every` steps; `ptdit train` passes
            `ptdit.eval.previews.write_sample_grid`. None writes no grids.
        evaluate: evaluates the EMA weights every `train.eval_every` steps (rank 0; the metrics go to
            metrics.jsonl); `ptdit train` passes `ptdit.eval.during_training.make_training_evaluator(cfg)`.
        allow_config_change: resume although settings that change the numbers differ (recorded in metrics.jsonl).

    SIGINT / SIGTERM finish the current step, write a checkpoint and return (`stopped_by` names the signal).
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
    hooks = _Hooks(preview=preview, evaluate=evaluate)
    info = setup_distributed(cfg.train.device)
    stop = cfg.train.max_steps if stop_at is None else min(stop_at, cfg.train.max_steps)
    try:
        if cfg.stages and cfg.stage is None:
            options = {"show_progress": show_progress, "hooks": hooks, "allow_config_change": allow_config_change}
            return _train_stages(cfg, Path(out_dir), info, resume=resume, stop=stop, **options)
        run = _prepare(cfg, Path(out_dir), info, resume=resume, allow_config_change=allow_config_change)
        with _run_folder(run.out, info), StopRequests(announce=info.is_main) as signals:
            return _train(run, info, stop=stop, show_progress=show_progress, hooks=hooks, signals=signals)
    finally:
        teardown_distributed()


def _train_stages(
    cfg: TrainConfig, out: Path, info: DistInfo, *, resume: bool, stop: int, allow_config_change: bool, **options: Any
) -> TrainResult:
    """A staged run (docs/training.md#stages): each stage trains up to its last step with its own config, then the
    next one continues from the boundary checkpoint (model, EMA and optimizer state, step count) like a resume."""
    stages = resolve_stages(cfg)
    existing = latest_checkpoint(out) if resume else None
    step = checkpoint_step(existing) if existing is not None else 0
    results: list[TrainResult] = []
    for stage in stages:
        if stage.stop <= step and stage is not stages[-1]:
            continue
        writer = written_by(stages, step).config
        run = _prepare(stage.config, out, info, resume=resume or bool(results),
                       allow_config_change=allow_config_change, reference=writer)  # fmt: skip
        if results:
            run.announce = f"stage {stage.name} ({stage.index + 1} of {len(stages)}) starts at step {step}"
        with _run_folder(run.out, info), StopRequests(announce=info.is_main) as signals:
            result = _train(run, info, stop=min(stop, stage.stop), signals=signals, stage=stage, **options)
        results.append(result)
        step = result.steps
        if result.stopped_by is not None or step < stage.stop or step >= stop:
            break
    return dataclasses.replace(results[-1], start_step=results[0].start_step, stop_step=stop)


@dataclass
class _Run:
    """What `_prepare` validated before anything is written: the run folder, the checkpoint to resume from,
    the settings changed since it, and the dataset."""

    cfg: TrainConfig
    out: Path
    existing: Path | None
    changes: dict[str, Any]
    dataset: Any
    announce: str | None = None  # said instead of "resuming from ..." (a staged run entering its next stage)


def _prepare(
    cfg: TrainConfig,
    out: Path,
    info: DistInfo,
    *,
    resume: bool,
    allow_config_change: bool,
    reference: TrainConfig | None = None,
) -> _Run:
    """Every check that can fail on the input, before the run folder is touched. A resumed checkpoint is compared
    with `reference` (default `cfg`): in a staged run, the config of the stage that wrote it."""
    check_batch(cfg, info)
    check_run_folder(out)
    existing = _existing_checkpoint(out, resume)
    changes: dict[str, Any] = {}
    if existing is not None:
        saved = read_json(existing / CONFIG_NAME, what="checkpoint config")
        changes = check_resume_config(saved, reference or cfg, allow_change=allow_config_change)
    return _Run(cfg=cfg, out=out, existing=existing, changes=changes, dataset=build_dataset(cfg))


def check_run_folder(out: Path) -> None:
    """Refuses an `--out` that is a file, or a non-empty folder that is not a ptdit run folder."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} exists and is a file; choose a folder path for the run")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_ENTRIES)
        if foreign:
            raise FileExistsError(
                f"--out {out} holds files that are not part of a ptdit run ({', '.join(foreign[:5])}); "
                "choose a new or empty folder"
            )
    check_writable(out)


@contextlib.contextmanager
def _run_folder(out: Path, info: DistInfo) -> Iterator[None]:
    """Holds the run lock (rank 0) and removes leftovers of killed saves. A folder this call created is removed
    again if the run fails before writing anything into it."""
    if not info.is_main:
        yield
        return
    created = not out.exists()
    lock = RunLock(out).acquire()
    try:
        removed = remove_interrupted_saves(out)
        if removed:
            print(f"removed {len(removed)} incomplete checkpoint(s) left by an interrupted save", file=sys.stderr)
        yield
    except BaseException:
        if created and {p.name for p in out.iterdir()} <= {LOCK_NAME}:
            lock.release()
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        lock.release()


def _existing_checkpoint(out: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from; refuses to train over an existing run without --resume."""
    existing = latest_checkpoint(out)
    if existing is not None and not resume:
        raise ValueError(f"{out} already holds checkpoint {existing.name}: pass --resume, or choose a new --out")
    if resume and existing is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {out}/checkpoints to resume from")
    return existing


def _train(  # long function: the phases of a run, in order, read best in one place
    run: _Run,
    info: DistInfo,
    *,
    stop: int,
    show_progress: bool,
    hooks: _Hooks,
    signals: StopRequests,
    stage: Stage | None = None,
) -> TrainResult:
    cfg, out = run.cfg, run.out
    with tempfile.TemporaryDirectory(prefix="ptdit-text-encoder-") as scratch:
        cache = run.dataset if isinstance(run.dataset, FeatureCache) else None
        state, encoder_dir, pipeline = _setup(cfg, Path(scratch), info, fresh=run.existing is None, cache=cache)
        if isinstance(run.dataset, FeatureCache):
            use_cache(state, run.dataset)

        # Resume
        progress, last_loss = _resume(run, state, info)

        # Data, and the sampling settings stored with every checkpoint (the trained size and window)
        loader = build_loader(cfg, run.dataset, info, state.step, stop, vae=state.vae)
        frames = sample_frames(run.dataset)
        pipeline.update(height=cfg.data.size, width=cfg.data.size, frames=frames)
        if pipeline.get("window_size") is None and hasattr(state.module.config, "window_size"):
            pipeline["window_size"] = list(state.module.config.window_size)

        # Steps, with periodic logging, checkpoints and previews
        log = RunLog(
            out, start_step=state.step, stop_step=stop, batch_size=cfg.train.batch_size, frames=frames,
            samples_before=progress.get("samples_seen", 0), seconds_before=progress.get("train_seconds", 0.0),
            skipped_before=progress.get("data_skipped", 0),
            log_every=cfg.train.log_every, enabled=info.is_main, show_progress=show_progress,
            stage=stage.name if stage else None,
        )  # fmt: skip
        if stage is not None and state.step == stage.start < stop:
            log.writer.write({"step": state.step, "event": "stage", "stage": stage.name, "index": stage.index})
        if run.changes:
            log.writer.write({"step": state.step, "event": "config_change", "changes": _jsonable(run.changes)})
        save = _saver(state, out, pipeline, encoder_dir, log)
        start_step = state.step
        checkpoint, stopped_by = _loop(state, loader, log, save, hooks, pipeline, out, stop, signals, run.existing)
        log.bar.close()
        if state.step > start_step or checkpoint is None:
            checkpoint = save() or step_folder(out, state.step)
        if stopped_by is not None:  # read back by a launcher of several processes (ptdit/train/launch.py)
            log.writer.write({"step": state.step, "event": "stopped", "stopped_by": stopped_by})
        log.writer.close()
    return TrainResult(
        out_dir=out, steps=state.step, samples_seen=log.samples_seen(state.step), train_seconds=log.elapsed(),
        final_loss=log.last_loss if state.step > start_step else last_loss, checkpoint=checkpoint,
        start_step=start_step, stop_step=stop, stopped_by=stopped_by,
    )  # fmt: skip


def _loop(
    state: TrainState,
    loader: Any,
    log: RunLog,
    save: Callable[[], Path | None],
    hooks: _Hooks,
    pipeline: dict[str, Any],
    out: Path,
    stop: int,
    signals: StopRequests,
    checkpoint: Path | None,
) -> tuple[Path | None, str | None]:
    """The steps: train, log, checkpoint, preview; then stop at `stop`, on the time budget or on a signal.
    Returns (the last checkpoint written or resumed from, why it stopped early or None)."""
    cfg, info = state.cfg, state.info
    for batch in loader:
        skipped = batch.pop("skipped", None)  # bad stored samples this batch replaced (docs/data.md#bad-data)
        if skipped is not None:
            log.count_skipped(float(all_reduce_sum(torch.tensor(float(skipped)))))
            check_skip_fraction(log.skipped, log.samples_seen(state.step + 1), cfg.data.max_skip_fraction)
        metrics = _checked_step(state, batch, out)  # advances state.step
        if skipped is not None:
            metrics["data_skipped"] = log.skipped
        fault_point("step", state.step)
        log.step(state.step, metrics)
        if state.step % cfg.train.checkpoint_every == 0 and state.step < stop:
            checkpoint = save() or checkpoint
        if info.is_main:
            hooks.run(state, pipeline, out, log)
        out_of_time = cfg.train.max_minutes is not None and (
            log.elapsed() - log.seconds_before >= cfg.train.max_minutes * 60
        )
        if state.step < stop and _agree(out_of_time or signals.received is not None):
            return checkpoint, signals.received or "max_minutes"
    return checkpoint, None


# The fraction of bad samples is taken over at least this many samples, so a few bad files early in a run do not
# stop it (docs/data.md#bad-data).
MIN_SKIP_DENOMINATOR = 1000


def check_skip_fraction(skipped: int, read: int, max_fraction: float) -> None:
    """Stops the run (one-line ValueError) when more than `max_fraction` of the samples read were bad."""
    total = max(read + skipped, MIN_SKIP_DENOMINATOR)
    if skipped > max_fraction * total:
        raise ValueError(
            f"{skipped} bad data samples were skipped in {read + skipped} read, more than data.max_skip_fraction="
            f"{max_fraction} (of at least {MIN_SKIP_DENOMINATOR}); fix the data (the warnings name the first ones) "
            "or raise data.max_skip_fraction"
        )


def _resume(run: _Run, state: TrainState, info: DistInfo) -> tuple[dict[str, Any], float]:
    """Loads the checkpoint to resume from (if any) into `state`; on rank 0 says so, rewinds metrics.jsonl to it
    and warns about changed settings. Returns (the saved progress record, the last logged loss)."""
    if run.existing is None:
        if info.is_main:
            truncate_metrics(run.out, 0)  # a run restarted from nothing (killed before its first checkpoint)
        return {}, float("nan")
    progress = load_training_checkpoint(run.existing, model=state.module, ema=state.ema, optimizer=state.optimizer)
    state.step = progress["step"]
    if not info.is_main:
        return progress, float("nan")
    print(run.announce or f"resuming from {run.existing} (step {state.step})", file=sys.stderr, flush=True)
    if run.changes:
        warnings.warn(
            f"resuming with changed settings ({describe(run.changes)}): the run is no longer bit-exact with an "
            "uninterrupted one; the change is recorded in metrics.jsonl",
            stacklevel=2,
        )
    return progress, truncate_metrics(run.out, state.step)


def _jsonable(changes: dict[str, tuple[Any, Any]]) -> dict[str, list[Any]]:
    return {key: [before, after] for key, (before, after) in changes.items()}


def _setup(
    cfg: TrainConfig, scratch: Path, info: DistInfo, *, fresh: bool = True, cache: FeatureCache | None = None
) -> tuple[TrainState, Path | None, dict[str, Any]]:
    """Network, VAE, text encoder, then the step state; in this order, since each may draw from the seeded global
    generator. Returns (state, text-encoder folder to copy into checkpoints, pipeline settings). A built-in
    word encoder is written to `scratch` (a temporary folder), so only checkpoints hold a copy. A `fresh` run
    (no checkpoint to resume) starts from `train.init_from`'s weights when set. Training from a feature `cache`,
    a pretrained text encoder loads only when a prompt needs it."""
    from ptdit.encoders import load_vae

    module = build_network(cfg, info)
    if fresh and cfg.train.init_from:
        load_initial_weights(module, cfg.train.init_from)
    vae = load_vae(cfg.pipeline.vae, device=info.device)
    encoder, encoder_dir, pipeline = build_text_encoder(cfg, module.config, scratch, info.is_main, cache=cache)
    return build_state(cfg, info, module, vae, encoder), encoder_dir, pipeline


def _saver(
    state: TrainState, out: Path, pipeline: dict[str, Any], encoder_dir: Path | None, log: RunLog
) -> Callable[[], Path | None]:
    """A function that writes a training checkpoint of the current step (and redraws loss.png on rank 0)."""
    cfg, info = state.cfg, state.info

    def save() -> Path | None:
        failure: CheckpointWriteError | None = None
        try:
            folder = save_training_checkpoint(
                out, step=state.step, progress=log.progress(state.step), model=state.module, ema=state.ema,
                optimizer=state.optimizer, model_config=state.module.config, pipeline=pipeline,
                train_config=cfg.to_dict(), extra_dirs={"text_encoder": encoder_dir} if encoder_dir else None,
                keep_last=cfg.train.keep_last, is_writer=info.is_main,
            )  # fmt: skip
        except CheckpointWriteError as err:
            failure = err
        if _agree(failure is not None):  # every process stops, or the others would wait in the next all-reduce
            log.bar.close()
            raise failure or CheckpointWriteError(f"rank 0 could not write checkpoint step {state.step}; see its error")
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


__all__ = ["EvaluateFn", "NonFiniteLossError", "PreviewFn", "TrainResult", "check_run_folder", "train"]
