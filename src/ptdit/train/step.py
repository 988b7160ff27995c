"""One optimizer step (`train_step`) and the state it works on.

Exactness: every random draw of step s (caption dropout, t, noise) comes from a generator seeded with
(seed, s) for the whole global batch, and each process takes its slice. So a resumed run, and a run on any
number of processes with the same global batch, sees exactly the samples, times and noise of a single
uninterrupted run (docs/training.md#exact-resume).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ptdit.diffusion.losses import DiffusionLoss
from ptdit.recipe.conditioning import Cond, Conditioning
from ptdit.train.config import TrainConfig
from ptdit.train.distributed import DistInfo, all_reduce_sum, gradient_sync
from ptdit.train.ema import EMA
from ptdit.train.features import batch_latents, condition_inputs
from ptdit.train.optim import set_lr


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
    conditioner: Conditioning
    null_condition: Cond
    autocast: Callable[[], Any]
    step: int = 0


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random source of step `step`: a pure function of (seed, step)."""
    return torch.Generator().manual_seed((seed % 2**31) * 2**32 + step)


def condition_rows(state: TrainState, batch: dict[str, Any], rows: slice, drop_B: torch.Tensor) -> Cond:
    """Model keyword arguments for `rows` of the local batch, with the dropped rows set to the null condition."""
    cond = state.conditioner.encode(condition_inputs(state, batch, rows), state.info.device)
    return state.conditioner.drop(cond, drop_B.to(state.info.device), state.null_condition)


def train_step(state: TrainState, batch: dict[str, Any]) -> dict[str, float]:
    """Forward, backward (with accumulation), NaN check, clip, optimizer and EMA update for `state.step`."""
    cfg, info = state.cfg, state.info
    global_batch, accum = cfg.train.batch_size, cfg.optim.grad_accum
    x0 = batch_latents(state, batch)  # (B_local, C, F, H, W): VAE-encoded pixels or cached latents
    local, micro = x0.shape[0], x0.shape[0] // accum
    gen = step_generator(cfg.train.seed, state.step)
    drop_G = torch.rand(global_batch, generator=gen) < cfg.train.caption_dropout
    t_G, noise_G = state.loss_fn.draw((global_batch, *x0.shape[1:]), generator=gen)
    offset = info.rank * local
    total = torch.zeros((), device=info.device)
    for k in range(accum):
        rows, grows = slice(k * micro, (k + 1) * micro), slice(offset + k * micro, offset + (k + 1) * micro)
        cond = condition_rows(state, batch, rows, drop_G[grows])
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


__all__ = ["NonFiniteLossError", "TrainState", "condition_rows", "step_generator", "train_step"]
