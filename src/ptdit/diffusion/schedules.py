"""Noise schedules: rectified flow and discrete variance-preserving (VP) diffusion
(docs/training.md#objectives, docs/inference.md#samplers).

Every schedule is a path `x_t = alpha(t) x0 + sigma(t) noise` indexed by a time `t` on the *network scale*
(the number the network receives as its timestep):

* `FlowSchedule`: rectified flow as the reference code, t in [0, 1000], alpha = 1 - t/1000, sigma = t/1000;
  t = 1000 is pure noise. Training times are uniform or logit-normal, optionally moved towards noise by the
  resolution/frame-dependent timestep shift (`TimestepShift`).
* `VPSchedule`: 1000 discrete steps with linear (DDPM) or cosine (Nichol & Dhariwal) betas, alpha =
  sqrt(alphabar_t), sigma = sqrt(1 - alphabar_t); t is the integer step index as a float (0..999). The
  empty product alphabar_{-1} = 1 labels the clean end point of a sampling grid as t = -1.

A schedule also builds the sampling grid (`TimestepGrid`): the S + 1 times a sampler visits, with their
alpha and sigma, so that samplers need nothing but the grid and a denoiser.

Schedule maths runs in float64 (it is cheap); callers cast the coefficients to the latent dtype.

Shapes: B batch; S number of sampling steps; latents are (B, C, F, H, W) but nothing here depends on it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_TIMESTEP_SHIFT",
    "FLOW_T_MAX",
    "FlowSchedule",
    "NoiseSchedule",
    "TimestepGrid",
    "TimestepShift",
    "VPSchedule",
    "cosine_betas",
    "linear_betas",
    "shift_timesteps",
    "timestep_shift_ratio",
]

FLOW_T_MAX = 1000.0  # network time of pure noise for rectified flow (the reference's num_timesteps)

TimestepSampling = Literal["uniform", "logit_normal"]
BetaSchedule = Literal["linear", "cosine"]


# --------------------------------------------------------------------------------------------------------
# Timestep shift (docs/training.md#timestep-shift)
# --------------------------------------------------------------------------------------------------------


def timestep_shift_ratio(height: int, width: int, num_frames: int = 1, *, scale: float = 1.0) -> float:
    """Shift ratio r of the reference's resolution/frame-dependent timestep transform.

    `r = sqrt(height * width / 512^2) * sqrt(k) * scale` with k = 1 for images and
    `k = max((num_frames // 17) * 5, 1)` for videos. The reference has no clamp and gives k = 0 (r = 0,
    every t mapped to 0) for 2..16 frames; clamping to 1 is our decision (docs/decisions.md#timestep-shift).

    Args:
        height: image height in pixels (not latents).
        width: image width in pixels.
        num_frames: number of pixel frames (1 for images).
        scale: extra multiplier (the reference's `scale`, 1.0).

    Returns:
        r > 0; 2.0 for a 1024x1024 image, 1.0 for 512x512.
    """
    if height < 1 or width < 1 or num_frames < 1:
        raise ValueError(f"height, width and num_frames must be >= 1, got {height}, {width}, {num_frames}")
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    k = 1 if num_frames == 1 else max((num_frames // 17) * 5, 1)
    return math.sqrt(height * width / 512**2) * math.sqrt(k) * scale


def shift_timesteps(t: Tensor, ratio: float) -> Tensor:
    """Apply the timestep shift `tau' = r tau / (1 + (r - 1) tau)` to flow times on the network scale.

    r > 1 moves times towards noise (t = 1000), r = 1 is the identity; the end points 0 and 1000 are fixed.

    Args:
        t: flow times in [0, 1000], any shape.
        ratio: the shift ratio r (see `timestep_shift_ratio`).

    Returns:
        Shifted times, same shape and dtype as `t`.
    """
    if ratio <= 0:
        raise ValueError(f"timestep shift ratio must be > 0, got {ratio}")
    tau = t / FLOW_T_MAX
    return ratio * tau / (1 + (ratio - 1) * tau) * FLOW_T_MAX


@dataclass(frozen=True, kw_only=True)
class TimestepShift:
    """How to derive the shift ratio r from a latent batch
    (docs/training.md#timestep-shift: pixel size and pixel frames).

    The latent shape does not determine the pixel frame count uniquely; we invert the causal 3D VAE rule
    (`frames = (F - 1) * temporal_compression + 1`), which is exact for the odd frame counts the causal VAE
    is built for (17 -> 5 latent frames). Pipelines that know the pixel size call `ratio` directly.
    """

    scale: float = 1.0  # the reference's extra multiplier
    spatial_compression: int = 8  # VAE downsampling of height and width
    temporal_compression: int = 4  # VAE downsampling of frames (videos only)

    def ratio(self, height: int, width: int, num_frames: int = 1) -> float:
        """Shift ratio for a pixel size; see `timestep_shift_ratio`."""
        return timestep_shift_ratio(height, width, num_frames, scale=self.scale)

    def ratio_for_latents(self, shape: Sequence[int]) -> float:
        """Shift ratio for a latent batch.

        Args:
            shape: latent shape (B, C, F, H, W) or (B, C, H, W).

        Returns:
            r > 0.
        """
        if len(shape) not in (4, 5):
            raise ValueError(f"expected a latent shape (B, C, F, H, W) or (B, C, H, W), got {tuple(shape)}")
        num_latent_frames = shape[2] if len(shape) == 5 else 1
        height, width = shape[-2] * self.spatial_compression, shape[-1] * self.spatial_compression
        num_frames = (num_latent_frames - 1) * self.temporal_compression + 1
        return self.ratio(height, width, num_frames)


DEFAULT_TIMESTEP_SHIFT = TimestepShift()  # frozen, so safe to share as a default argument


# --------------------------------------------------------------------------------------------------------
# Sampling grid
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimestepGrid:
    """The S + 1 points a sampler visits, from noise (index 0) to the end point (index S, usually clean).

    The network is evaluated at `t[0] .. t[S-1]` (second-order solvers also at interior points); `t[S]` is a
    label for the end point and never reaches the network (for VP it is -1, alphabar = 1).

    Attributes:
        t: (S + 1,) float64 times on the network scale, decreasing.
        alpha: (S + 1,) float64 signal coefficients.
        sigma: (S + 1,) float64 noise coefficients; > 0 except possibly at the end point.
    """

    t: Tensor
    alpha: Tensor
    sigma: Tensor

    def __post_init__(self) -> None:
        shapes = (tuple(self.t.shape), tuple(self.alpha.shape), tuple(self.sigma.shape))
        if self.t.ndim != 1 or len(self.t) < 2 or len(set(shapes)) != 1:
            raise ValueError(f"t, alpha and sigma must be 1-D with equal length >= 2, got shapes {shapes}")
        if not bool((self.sigma[:-1] > 0).all()):
            raise ValueError(f"sigma must be > 0 before the end point, got {self.sigma.tolist()}")

    @property
    def num_steps(self) -> int:
        """Number of steps S."""
        return len(self.t) - 1


def _make_grid(schedule: NoiseSchedule, t: Tensor) -> TimestepGrid:
    """Grid for the float64 times `t` (S + 1,) with the schedule's coefficients."""
    alpha, sigma = schedule.alpha_sigma(t)
    return TimestepGrid(t=t, alpha=alpha, sigma=sigma)


def _check_num_steps(num_steps: int, max_steps: int | None = None) -> None:
    if num_steps < 1 or (max_steps is not None and num_steps > max_steps):
        bound = f"between 1 and {max_steps}" if max_steps is not None else ">= 1"
        raise ValueError(f"num_steps must be {bound}, got {num_steps}")


# --------------------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------------------


class NoiseSchedule(ABC):
    """A noising path `x_t = alpha(t) x0 + sigma(t) noise` with its training times and sampling grid."""

    @abstractmethod
    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """Coefficients at network times `t` (any shape); float64, on `t`'s device."""

    @abstractmethod
    def sample_t(
        self,
        batch_size: int,
        *,
        shift: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Training times (B,) float32 on the network scale; `shift` is the ratio r (flow only)."""

    @abstractmethod
    def timestep_grid(self, num_steps: int, *, shift: float = 1.0) -> TimestepGrid:
        """Sampling grid with `num_steps` steps from noise to clean."""

    def shift_ratio(self, latent_shape: Sequence[int]) -> float:
        """Shift ratio r to use for latents of this shape (1.0: no shift)."""
        del latent_shape
        return 1.0

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """Noise clean latents: `x_t = alpha(t) x0 + sigma(t) noise`.

        Args:
            x0: (B, ...) clean latents.
            noise: (B, ...) standard normal noise.
            t: (B,) network times.

        Returns:
            x_t, (B, ...), in x0's dtype.
        """
        alpha, sigma = self.alpha_sigma(t)
        alpha, sigma = (_expand_like(c, x0) for c in (alpha, sigma))
        return alpha * x0 + sigma * noise


def _expand_like(coef: Tensor, x: Tensor) -> Tensor:
    """(B,) float64 coefficients -> (B, 1, ..., 1) in x's dtype and device, broadcastable against x."""
    return coef.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def _rng_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    # Draw on the generator's device so a CPU generator gives the same numbers whatever the target device.
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


class FlowSchedule(NoiseSchedule):
    """Rectified flow of the reference code: `x_t = (1 - t/1000) x0 + (t/1000) noise`, t in [0, 1000].

    Args:
        timestep_sampling: training times, "logit_normal" (`1000 * sigmoid(u)`, u ~ N(0, 1), the reference)
            or "uniform" on [0, 1000).
        shift: how to derive the timestep-shift ratio from a latent batch; None switches the shift off.
    """

    def __init__(
        self,
        *,
        timestep_sampling: TimestepSampling = "logit_normal",
        shift: TimestepShift | None = DEFAULT_TIMESTEP_SHIFT,
    ) -> None:
        if timestep_sampling not in ("uniform", "logit_normal"):
            raise ValueError(f"timestep_sampling must be 'uniform' or 'logit_normal', got {timestep_sampling!r}")
        self.timestep_sampling = timestep_sampling
        self.shift = shift

    def __repr__(self) -> str:
        return f"FlowSchedule(timestep_sampling={self.timestep_sampling!r}, shift={self.shift!r})"

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """alpha = 1 - t/1000, sigma = t/1000 (float64); 1 - tau + tau is exactly 1 in floating point."""
        tau = t.to(torch.float64) / FLOW_T_MAX
        return 1 - tau, tau

    def shift_ratio(self, latent_shape: Sequence[int]) -> float:
        """Shift ratio for the latent shape, 1.0 when the shift is off."""
        return 1.0 if self.shift is None else self.shift.ratio_for_latents(latent_shape)

    def sample_t(
        self,
        batch_size: int,
        *,
        shift: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Training times (B,) float32 in [0, 1000]: uniform or logit-normal, then shifted by ratio `shift`.

        Drawn on the generator's device (CPU without one) and moved to `device`.
        """
        rng_device = _rng_device(generator, device)
        if self.timestep_sampling == "logit_normal":
            tau = torch.sigmoid(torch.randn(batch_size, generator=generator, device=rng_device))
        else:
            tau = torch.rand(batch_size, generator=generator, device=rng_device)
        t = shift_timesteps(tau.double() * FLOW_T_MAX, shift)
        return t.to(device=device if device is not None else rng_device, dtype=torch.float32)

    def timestep_grid(self, num_steps: int, *, shift: float = 1.0) -> TimestepGrid:
        """The reference grid: `t_i = (1 - i/S) * 1000` for i < S, shifted by ratio `shift`, then t_S = 0.

        With S = 30 and shift 2: 1000, 983.051, 965.517, ..., 125.0, 64.516, 0.
        """
        _check_num_steps(num_steps)
        t = (1 - torch.arange(num_steps, dtype=torch.float64) / num_steps) * FLOW_T_MAX
        t = torch.cat([shift_timesteps(t, shift), t.new_zeros(1)])
        return _make_grid(self, t)


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> Tensor:
    """DDPM linear betas (Ho et al. 2020), (num_timesteps,) float64."""
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int = 1000, *, offset: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine betas (Nichol & Dhariwal 2021): alphabar(u) = cos^2((u + s) / (1 + s) * pi / 2) / alphabar(0).

    `beta_i = 1 - alphabar((i + 1) / T) / alphabar(i / T)`, clipped to `max_beta` to avoid the singularity
    at u = 1. Returns (num_timesteps,) float64.
    """
    u = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    alphabar = torch.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - alphabar[1:] / alphabar[:-1]).clamp(max=max_beta)


class VPSchedule(NoiseSchedule):
    """Discrete variance-preserving diffusion: `x_t = sqrt(alphabar_t) x0 + sqrt(1 - alphabar_t) noise`.

    Times are step indices 0..T-1 given as floats (the network input); t = -1 is the clean end point.

    Args:
        beta_schedule: "linear" (1e-4 to 2e-2, docs/training.md#vp-schedules) or "cosine".
        num_timesteps: number of discrete steps T.
    """

    def __init__(self, beta_schedule: BetaSchedule = "linear", *, num_timesteps: int = 1000) -> None:
        if beta_schedule == "linear":
            betas = linear_betas(num_timesteps)
        elif beta_schedule == "cosine":
            betas = cosine_betas(num_timesteps)
        else:
            raise ValueError(f"beta_schedule must be 'linear' or 'cosine', got {beta_schedule!r}")
        self.beta_schedule = beta_schedule
        self.num_timesteps = num_timesteps
        self.betas = betas  # (T,) float64
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)  # (T,) float64, decreasing
        # Index t + 1 of this table is alphabar_t, with alphabar_{-1} = 1 (the empty product).
        self._table = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])

    def __repr__(self) -> str:
        return f"VPSchedule(beta_schedule={self.beta_schedule!r}, num_timesteps={self.num_timesteps})"

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """alpha = sqrt(alphabar_t), sigma = sqrt(1 - alphabar_t) for integer-valued t in [-1, T-1].

        Values are checked only for CPU tensors (checking a GPU tensor would synchronise the device).
        """
        if t.device.type == "cpu" and not bool(((t >= -1) & (t <= self.num_timesteps - 1) & (t == t.round())).all()):
            raise ValueError(f"VP times must be integers in [-1, {self.num_timesteps - 1}], got {t.tolist()}")
        alphabar = self._table.to(t.device)[t.round().long() + 1]
        return alphabar.sqrt(), (1 - alphabar).sqrt()

    def sample_t(
        self,
        batch_size: int,
        *,
        shift: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Training times (B,) float32, uniform over the integers 0..T-1."""
        if shift != 1.0:
            raise ValueError(f"the timestep shift is defined for the flow schedule only, got shift={shift}")
        rng_device = _rng_device(generator, device)
        t = torch.randint(0, self.num_timesteps, (batch_size,), generator=generator, device=rng_device)
        return t.to(device=device if device is not None else rng_device, dtype=torch.float32)

    def timestep_grid(self, num_steps: int, *, shift: float = 1.0) -> TimestepGrid:
        """Evenly spaced "trailing" grid `round(T (1 - i/S)) - 1` for i < S, then the clean point t = -1.

        With T = 1000, S = 50: 999, 979, ..., 19, -1 (every step index is used when S = T).
        """
        if shift != 1.0:
            raise ValueError(f"the timestep shift is defined for the flow schedule only, got shift={shift}")
        _check_num_steps(num_steps, self.num_timesteps)
        t = torch.round(self.num_timesteps * (1 - torch.arange(num_steps, dtype=torch.float64) / num_steps)) - 1
        return _make_grid(self, torch.cat([t, t.new_full((1,), -1.0)]))
