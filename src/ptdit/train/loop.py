"""The training loop (`train`) and one optimizer step (`train_step`).

Exactness: every random draw of step s (caption dropout, t, noise) comes from a generator seeded with
(seed, s) for the whole global batch, and each process takes its slice. So a resumed run, and a run on any
number of processes with the same global batch, sees exactly the samples, times and noise of a single
uninterrupted run. Data sample i is a pure function of (dataset seed, i), and step s uses samples
[s B, (s + 1) B).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptdit.diffusion.losses import DiffusionLoss
from ptdit.models.registry import build_model
from ptdit.train.config import TrainConfig
from ptdit.train.distributed import DistInfo, all_reduce_sum, gradient_sync, setup_distributed, teardown_distributed
from ptdit.train.ema import EMA
from ptdit.train.optim import build_optimizer, set_lr
from ptdit.train.state import latest_checkpoint, load_training_checkpoint, save_training_checkpoint, step_folder


class NonFiniteLossError(ValueError):
    """The loss or the gradient norm became NaN / Inf; nothing was updated or saved for that step."""


@dataclass
class TrainState:
    """Everything a step needs. `model` is what is called (maybe DDP-wrapped); `module` is the bare network."""

    cfg: TrainConfig
    info: DistInfo
    model: nn.Module
    module: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    loss_fn: DiffusionLoss
    vae: Any
    text_encoder: Any | None
    null_condition: tuple[torch.Tensor, torch.Tensor] | None
    autocast: Any
    step: int = 0


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    steps: int
    samples_seen: int
    train_seconds: float
    final_loss: float
    checkpoint: Path | None


# ----------------------------------------------------------------------------------------------------------------
# One step
# ----------------------------------------------------------------------------------------------------------------


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random source of step `step`: a pure function of (seed, step)."""
    return torch.Generator().manual_seed((seed % 2**31) * 2**32 + step)


def conditioning(state: TrainState, batch: dict[str, Any], rows: slice, drop_B: torch.Tensor) -> dict[str, Any]:
    """Model keyword arguments for `rows` of the local batch, with dropped captions / labels (CFG training)."""
    device = state.info.device
    kind = state.module.conditioning
    drop_B = drop_B.to(device)
    if kind == "text":
        emb, mask = state.text_encoder.encode(batch["caption"][rows])
        null_emb, null_mask = state.null_condition
        emb = torch.where(drop_B[:, None, None], null_emb.to(device), emb.to(device))
        mask = torch.where(drop_B[:, None], null_mask.to(device), mask.to(device))
        return {"context": emb, "context_mask": mask}
    if kind == "class":
        return {"class_labels": batch["label"][rows].to(device), "force_drop_mask": drop_B}
    return {}


def train_step(state: TrainState, batch: dict[str, Any]) -> dict[str, float]:
    """Forward, backward (with accumulation), NaN check, clip, optimizer and EMA update for `state.step`."""
    cfg, info = state.cfg, state.info
    global_batch, accum = cfg.train.batch_size, cfg.optim.grad_accum
    with torch.no_grad():
        x0 = state.vae.encode(batch["pixels"].to(info.device)).float()  # (B_local, C, F, H, W)
    local, micro = x0.shape[0], x0.shape[0] // accum
    gen = step_generator(cfg.train.seed, state.step)
    drop_G = torch.rand(global_batch, generator=gen) < cfg.train.caption_dropout
    t_G, noise_G = state.loss_fn.draw((global_batch, *x0.shape[1:]), generator=gen)
    offset = info.rank * local
    total = torch.zeros((), device=info.device)
    for k in range(accum):
        rows, grows = slice(k * micro, (k + 1) * micro), slice(offset + k * micro, offset + (k + 1) * micro)
        cond = conditioning(state, batch, rows, drop_G[grows])
        with gradient_sync(state.model, k == accum - 1), state.autocast():
            loss_B = state.loss_fn.compute(
                state.model, x0[rows], cond, t_G[grows].to(info.device), noise_G[grows].to(info.device)
            )
        # Sum / global batch, times world size because DDP and FSDP average gradients over processes:
        # the gradient is then that of the mean loss over the global batch, as in a single process.
        (loss_B.sum() * info.world_size / global_batch).backward()
        total += loss_B.detach().sum()
    loss = float(all_reduce_sum(total) / global_batch)
    if not math.isfinite(loss):
        raise NonFiniteLossError(f"loss became {loss} at step {state.step}")
    clip = cfg.optim.grad_clip if cfg.optim.grad_clip > 0 else float("inf")
    grad_norm = float(torch.nn.utils.clip_grad_norm_(state.module.parameters(), clip))
    if not math.isfinite(grad_norm):
        raise NonFiniteLossError(f"gradient norm became {grad_norm} at step {state.step} (loss {loss:.4g})")
    lr = set_lr(state.optimizer, cfg.optim, state.step, cfg.train.max_steps)
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    state.ema.update(state.module, state.step)
    state.step += 1
    return {"loss": loss, "grad_norm": grad_norm, "lr": lr}


# ----------------------------------------------------------------------------------------------------------------
# Setup helpers
# ----------------------------------------------------------------------------------------------------------------


class _StepBatches(torch.utils.data.Sampler):
    """Index lists per step for this process: step s uses dataset indices [s B, (s + 1) B) (mod length)."""

    def __init__(self, start_step: int, stop_step: int, global_batch: int, info: DistInfo, length: int) -> None:
        self.start, self.stop, self.global_batch, self.info, self.length = (
            start_step,
            stop_step,
            global_batch,
            info,
            length,
        )

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self):
        local = self.global_batch // self.info.world_size
        for step in range(self.start, self.stop):
            first = step * self.global_batch + self.info.rank * local
            yield [(first + i) % self.length for i in range(local)]


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {
        "pixels": torch.stack([it["pixels"] for it in items]),
        "caption": [it.get("caption", "") for it in items],
    }
    if "label" in items[0]:
        batch["label"] = torch.tensor([it["label"] for it in items])
    return batch


def build_text_encoder(cfg: TrainConfig, model_config: Any, out_dir: Path, is_main: bool):
    """(encoder, folder to store with checkpoints or None, pipeline dict for config.json)."""
    from ptdit.encoders import load_text_encoder

    pipeline = cfg.pipeline.to_dict()
    conditioning = model_config.conditioning
    if conditioning != "text":
        return None, None, pipeline
    if cfg.pipeline.text_encoder == "words":
        from ptdit.data import VOCABULARY
        from ptdit.encoders.words import WordTextEncoder

        encoder = WordTextEncoder(VOCABULARY, dim=model_config.context_dim, max_length=cfg.pipeline.text_max_length)
        folder = out_dir / "text_encoder"
        if is_main:
            encoder.save(folder)
        pipeline["text_encoder"] = "text_encoder"  # relative: a copy travels inside every checkpoint folder
        return encoder, folder, pipeline
    encoder = load_text_encoder(cfg.pipeline.text_encoder, max_length=cfg.pipeline.text_max_length)
    if encoder.dim != model_config.context_dim:
        raise ValueError(
            f"text encoder width {encoder.dim} != model context_dim {model_config.context_dim}; "
            f"set model.context_dim={encoder.dim}"
        )
    return encoder, None, pipeline


def build_loss(cfg: TrainConfig, vae: Any) -> DiffusionLoss:
    from ptdit.diffusion.losses import FlowMatchingLoss, VPLoss
    from ptdit.sampling.pipeline import make_schedule

    schedule = make_schedule(cfg.pipeline, spatial_factor=vae.spatial_factor, temporal_factor=vae.temporal_factor)
    if cfg.pipeline.objective == "flow":
        return FlowMatchingLoss(schedule)
    return VPLoss(schedule, prediction="v" if cfg.pipeline.objective == "vp-v" else "eps")


def build_dataset_for(cfg: TrainConfig):
    from ptdit.data import build_dataset
    from ptdit.data.folders import ImageFolderDataset, VideoFolderDataset

    folders = {"image-folder": ImageFolderDataset, "video-folder": VideoFolderDataset}
    try:
        if cfg.data.dataset in folders:
            return folders[cfg.data.dataset](size=cfg.data.size, seed=cfg.data.seed, **cfg.data.options)
        return build_dataset(cfg.data.dataset, size=cfg.data.size, seed=cfg.data.seed, **cfg.data.options)
    except TypeError as err:  # an unknown option for that dataset
        raise ValueError(f"data.options for {cfg.data.dataset!r}: {err}") from None


def _check_batch(cfg: TrainConfig, info: DistInfo) -> None:
    divisor = info.world_size * cfg.optim.grad_accum
    if cfg.train.batch_size % divisor:
        raise ValueError(
            f"train.batch_size={cfg.train.batch_size} must be divisible by processes x grad_accum = {divisor}"
        )


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Trains from `cfg`, writing checkpoints, metrics and samples under `out_dir`.

    Args:
        cfg: the validated configuration.
        out_dir: run folder (checkpoints/, metrics.jsonl, loss.png, samples/).
        resume: continue from `out_dir/checkpoints/latest`.
        stop_at: stop after this many total steps (default train.max_steps; the LR schedule always spans
            train.max_steps, so stopping early and resuming reproduces an uninterrupted run).
        show_progress: progress bar on rank 0 (a log line per interval when stderr is not a terminal).
    """
    if cfg.train.num_threads is not None:
        torch.set_num_threads(cfg.train.num_threads)
    info = setup_distributed(cfg.train.device)
    try:
        return _train(cfg, Path(out_dir), info, resume=resume, stop_at=stop_at, show_progress=show_progress)
    finally:
        teardown_distributed()


def _train(
    cfg: TrainConfig, out: Path, info: DistInfo, *, resume: bool, stop_at: int | None, show_progress: bool
) -> TrainResult:
    from ptdit.encoders import load_vae
    from ptdit.train.artifacts import MetricsWriter, plot_loss_curve
    from ptdit.train.distributed import wrap_model
    from ptdit.train.parallel import apply_activation_checkpointing

    _check_batch(cfg, info)
    stop = cfg.train.max_steps if stop_at is None else min(stop_at, cfg.train.max_steps)
    existing = latest_checkpoint(out)
    if existing is not None and not resume:
        raise ValueError(f"{out} already holds checkpoint {existing.name}: pass --resume, or choose a new --out")
    if resume and existing is None:
        raise FileNotFoundError(f"--resume: no checkpoint under {out}/checkpoints to resume from")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)

    # Build model + EMA (same seed on every process, so replicas start equal)
    torch.manual_seed(cfg.train.seed)
    model_config = cfg.model_config()
    module = build_model(model_config).to(info.device)
    if cfg.train.grad_checkpointing:
        apply_activation_checkpointing(module)
    if cfg.train.compile:
        from ptdit.train.parallel import apply_compile

        apply_compile(module)
    vae = load_vae(cfg.pipeline.vae, device=info.device)
    encoder, encoder_dir, pipeline = build_text_encoder(cfg, model_config, out, info.is_main)

    # Apply parallelism, then optimizer and EMA on the (possibly sharded) parameters
    model = wrap_model(module, info, cfg.train.parallel)
    optimizer = build_optimizer(module, cfg.optim)
    ema = EMA(module, cfg.train.ema_decay, warmup=cfg.train.ema_warmup)
    use_bf16 = cfg.train.precision == "bf16"
    state = TrainState(
        cfg=cfg,
        info=info,
        model=model,
        module=module,
        ema=ema,
        optimizer=optimizer,
        loss_fn=build_loss(cfg, vae),
        vae=vae,
        text_encoder=encoder,
        null_condition=encoder.encode([""]) if encoder is not None else None,
        autocast=lambda: torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=use_bf16),
    )

    # Resume
    samples_before, seconds_before = 0, 0.0
    if resume:
        progress = load_training_checkpoint(existing, model=module, ema=ema, optimizer=optimizer)
        state.step = progress["step"]
        samples_before, seconds_before = progress.get("samples_seen", 0), progress.get("train_seconds", 0.0)

    # Data: step s reads samples [s B, (s + 1) B), so the position is the step itself
    dataset = build_dataset_for(cfg)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_StepBatches(state.step, stop, cfg.train.batch_size, info, len(dataset)),
        num_workers=cfg.data.num_workers,
        collate_fn=_collate,
    )

    writer = MetricsWriter(out, enabled=info.is_main)
    save_kwargs = dict(
        model=module,
        ema=ema,
        optimizer=optimizer,
        model_config=model_config,
        pipeline=pipeline,
        train_config=cfg.to_dict(),
        extra_dirs={"text_encoder": encoder_dir} if encoder_dir else None,
        keep_last=cfg.train.keep_last,
        is_writer=info.is_main,
    )
    frames = int(dataset[0]["pixels"].shape[1])
    # Checkpoints sample at the trained size, with the trained window, by default.
    pipeline.update(height=cfg.data.size, width=cfg.data.size, frames=frames)
    if pipeline.get("window_size") is None and hasattr(model_config, "window_size"):
        pipeline["window_size"] = list(model_config.window_size)
    bar = _ProgressBar(state.step, stop, enabled=info.is_main and show_progress)
    start_time, start_step, last_log = time.perf_counter(), state.step, time.perf_counter()
    losses: list[float] = []
    checkpoint, loss = existing, float("nan")

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - start_time

    def save() -> Path | None:
        samples = samples_before + (state.step - start_step) * cfg.train.batch_size
        progress = {"samples_seen": samples, "frames_seen": samples * frames, "train_seconds": elapsed()}
        folder = save_training_checkpoint(out, step=state.step, progress=progress, **save_kwargs)
        if info.is_main:
            plot_loss_curve(out / "metrics.jsonl", out / "loss.png")
        return folder

    for batch in loader:
        try:
            metrics = train_step(state, batch)
        except NonFiniteLossError as err:
            last = latest_checkpoint(out)
            where = f"the last good checkpoint {last} is intact" if last else "no checkpoint was written"
            raise NonFiniteLossError(f"{err}; training stopped, {where}; lower optim.lr or check the data") from None
        loss = metrics["loss"]
        losses.append(loss)
        if state.step % cfg.train.log_every == 0 or state.step == stop:
            now = time.perf_counter()
            done = state.step - start_step
            record = {
                "step": state.step,
                "loss": sum(losses) / len(losses),
                "lr": metrics["lr"],
                "grad_norm": metrics["grad_norm"],
                "samples_seen": samples_before + done * cfg.train.batch_size,
                "samples_per_second": len(losses) * cfg.train.batch_size / max(now - last_log, 1e-9),
                "elapsed_seconds": elapsed(),
            }
            record["frames_seen"] = record["samples_seen"] * frames
            writer.write(record)
            bar.update(state.step, record)
            losses, last_log = [], now
        if state.step % cfg.train.checkpoint_every == 0 and state.step < stop:
            checkpoint = save() or checkpoint
        if cfg.train.sample_every and state.step % cfg.train.sample_every == 0 and info.is_main:
            write_sample_grid(state, pipeline, out / "samples" / f"step-{state.step:07d}.png")
        if cfg.train.max_minutes is not None and _agree(elapsed() - seconds_before >= cfg.train.max_minutes * 60):
            break
    bar.close()
    if state.step > start_step or checkpoint is None:
        checkpoint = save() or step_folder(out, state.step)
    writer.close()
    return TrainResult(
        out_dir=out,
        steps=state.step,
        samples_seen=samples_before + (state.step - start_step) * cfg.train.batch_size,
        train_seconds=elapsed(),
        final_loss=loss,
        checkpoint=checkpoint,
    )


def _agree(flag: bool) -> bool:
    """True when any process says so: every process must leave the loop at the same step, or the others would
    wait forever in the next gradient all-reduce."""
    return bool(all_reduce_sum(torch.tensor(float(flag))) > 0)


class _ProgressBar:
    """tqdm bar with step, loss, samples/s and ETA; a plain log line per ~5% when stderr is not a terminal."""

    def __init__(self, start: int, total: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.enabled, self.total, self.tty = enabled, total, sys.stderr.isatty()
        self.every, self.last_print = max(total // 20, 1), time.perf_counter()
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
                f"{record['elapsed_seconds']:.0f}s",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        self.bar.close()


@torch.no_grad()
def write_sample_grid(state: TrainState, pipeline: dict[str, Any], path: Path, prompts: list[str] | None = None):
    """Samples fixed prompts with the EMA weights and writes one row per prompt (frames side by side)."""
    from ptdit.sampling.media import save_png
    from ptdit.train.artifacts import sample_strips

    pixels, prompts = sample_with_ema(state, pipeline, prompts)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, sample_strips(pixels), {"prompts": prompts, "step": state.step})
    return path


def sample_prompts(cfg: TrainConfig, n: int, seed: int) -> list[str]:
    """Prompts from the training caption distribution (procedural datasets) or training captions (folders)."""
    from ptdit.data import DATASETS, random_captions

    if cfg.data.dataset in DATASETS:
        return random_captions(cfg.data.dataset, n, seed=seed, **cfg.data.options)
    dataset = build_dataset_for(cfg)
    return [dataset[i % len(dataset)]["caption"] for i in range(n)]


@torch.no_grad()
def sample_with_ema(
    state: TrainState, pipeline: dict[str, Any], prompts: list[str] | None = None, steps: int | None = None
) -> tuple[torch.Tensor, list[str]]:
    """(pixels (B, 3, F, H, W), prompts) sampled from a plain copy of the model holding the EMA weights."""
    from ptdit.config import PipelineConfig
    from ptdit.sampling.pipeline import GenerationPipeline

    cfg = state.cfg
    ema_model = build_model(state.module.config).to(state.info.device).eval()
    ema_model.load_state_dict(state.ema.state_dict(state.module))
    pipe_cfg = PipelineConfig.from_dict({**pipeline, "text_encoder": cfg.pipeline.text_encoder})
    pipe = GenerationPipeline(ema_model, pipe_cfg, state.vae, state.text_encoder)
    steps = steps or cfg.train.sample_steps
    if ema_model.conditioning == "class":
        labels = list(range(min(cfg.train.num_sample_prompts, ema_model.config.num_classes)))
        return pipe(class_labels=labels, steps=steps, seed=0), [f"class {c}" for c in labels]
    prompts = prompts or sample_prompts(cfg, cfg.train.num_sample_prompts, seed=1234)
    return pipe(prompts, steps=steps, seed=0), prompts
