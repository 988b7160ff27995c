"""Latents and an oracle "network" shared by the diffusion tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ptdit.diffusion import NoiseSchedule, prediction_target

LATENT_SHAPE = (2, 4, 1, 8, 8)  # (B, C, F, H, W)


def latents(seed: int = 0, shape: tuple[int, ...] = LATENT_SHAPE) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def oracle_model(
    x0: Tensor, noise: Tensor, schedule: NoiseSchedule, prediction: str, extra: float = 0.0
) -> Callable[..., Tensor]:
    """A "network" that returns the exact target (recovering the noise from x_t) plus 4 junk channels."""

    def model(x_t: Tensor, t: Tensor, **cond: object) -> Tensor:
        assert t.shape == (x_t.shape[0],) and t.dtype == torch.float32
        alpha, sigma = (c.float().view(-1, 1, 1, 1, 1) for c in schedule.alpha_sigma(t))
        target = prediction_target(x0, noise, alpha, sigma, prediction)  # type: ignore[arg-type]
        return torch.cat([target, torch.full_like(target, extra)], dim=1)

    return model
