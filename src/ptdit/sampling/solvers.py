"""ODE / SDE samplers with one signature (k-diffusion style; docs/inference.md#samplers).

Every sampler is

    sample_xxx(denoise_fn, x, timesteps, *, callback=None, progress=False, generator=None) -> x

* `denoise_fn(x, t) -> x0_hat`: an **x0-prediction** denoiser, `x` (B, C, ...) noisy latents and `t` a 0-d
  float64 tensor on the network scale. Build it with `ptdit.diffusion.Denoiser` (which converts eps / v /
  flow-velocity network outputs to x0) and bind the conditioning with `functools.partial`.
* `x`: (B, C, ...) the state at `timesteps.t[0]`; standard normal noise for our schedules, whose first grid
  point is (numerically) pure noise.
* `timesteps`: a `TimestepGrid` (`build_timesteps`) with the times and their (alpha, sigma); the sampler
  never sees the schedule, only these numbers, so every sampler runs on every schedule.
* `callback(i, x, t, denoised)`: called once per step with the step index, the state at `t = t[i]` (before
  the update) and the x0 prediction there.
* `progress`: show a tqdm bar. `generator`: noise source of stochastic samplers (DDIM with eta > 0);
  deterministic samplers ignore it, and the same generator state always gives bitwise-identical results.

All updates use per-step coefficients computed in float64 from the grid and applied in x's dtype:
* `flow-euler` / `flow-heun`: Euler / Heun on the probability-flow ODE in flow coordinates
  `y = x / (alpha + sigma)`, `tau = sigma / (alpha + sigma)` (so `y = (1 - tau) x0 + tau noise`), where
  `dy/dtau = (y - x0) / tau`. On the flow schedule alpha + sigma = 1 and flow Euler is the reference update
  `x <- x + u (t_i - t_{i+1}) / 1000`; on VP it is DDIM. Heun takes an Euler step on the last interval.
* `ddim`: DDIM (Song et al. 2021), eta = 0 deterministic; eta > 0 adds the posterior noise (eta = 1: DDPM).
* `dpmpp-2m`: DPM-Solver++(2M) (Lu et al. 2022), data prediction, multistep in lambda = log(alpha / sigma);
  first order on the first step (or when the previous step started from alpha = 0) and on a step to
  sigma = 0.

Shapes: B batch, C latent channels; S steps; latents (B, C, F, H, W).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Protocol

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ptdit.diffusion.schedules import NoiseSchedule, TimestepGrid

__all__ = [
    "SAMPLERS",
    "Callback",
    "DenoiseFn",
    "Sampler",
    "build_timesteps",
    "get_sampler",
    "sample_ddim",
    "sample_dpmpp_2m",
    "sample_flow_euler",
    "sample_flow_heun",
]

DenoiseFn = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[int, Tensor, Tensor, Tensor], None]


class Sampler(Protocol):
    """The common sampler signature."""

    def __call__(
        self,
        denoise_fn: DenoiseFn,
        x: Tensor,
        timesteps: TimestepGrid,
        *,
        callback: Callback | None = None,
        progress: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor: ...


def build_timesteps(schedule: NoiseSchedule, num_steps: int, *, shift: float = 1.0) -> TimestepGrid:
    """The sampling grid for `schedule` with `num_steps` steps, from noise to clean.

    Flow: the reference grid `t_i = (1 - i/S) * 1000` shifted with ratio `shift`, ending at t = 0
        (docs/inference.md#samplers).
    VP: evenly spaced step indices 999, ..., ending at the clean point t = -1 (`shift` must be 1).

    Args:
        schedule: the schedule the model was trained on.
        num_steps: number of steps S >= 1 (network evaluations for first-order samplers).
        shift: timestep-shift ratio r (flow only), e.g. `schedule.shift_ratio(latents.shape)`.

    Returns:
        A grid with S + 1 points.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return schedule.timestep_grid(num_steps, shift=shift)


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def _steps(timesteps: TimestepGrid, progress: bool, name: str) -> Iterator[int]:
    return iter(tqdm(range(timesteps.num_steps), desc=name, disable=not progress, leave=False))


def _denoise(denoise_fn: DenoiseFn, x: Tensor, timesteps: TimestepGrid, i: int, callback: Callback | None) -> Tensor:
    """x0 prediction at step i; reports (i, x, t, denoised) to the callback."""
    t = timesteps.t[i]
    denoised = denoise_fn(x, t)
    if callback is not None:
        callback(i, x, t, denoised)
    return denoised


def _flow_derivative(y: Tensor, denoised: Tensor, tau: float) -> Tensor:
    """dy/dtau of the flow ODE in flow coordinates; on the flow schedule this is -velocity."""
    return (y - denoised) / tau


def _flow_coords(alpha: float, sigma: float) -> tuple[float, float]:
    """(scale, tau): `x = scale * y` with `y = (1 - tau) x0 + tau noise`; for flow scale = 1, tau = t/1000."""
    scale = alpha + sigma
    return scale, sigma / scale


def _half_log_snr(alpha: float, sigma: float) -> float:
    """lambda = log(alpha / sigma), -inf at pure noise and +inf at clean data."""
    if alpha == 0:
        return -math.inf
    if sigma == 0:
        return math.inf
    return math.log(alpha) - math.log(sigma)


def _ddim_step(x: Tensor, denoised: Tensor, a: float, s: float, a_next: float, s_next: float) -> Tensor:
    """Deterministic DDIM step `a_next x0 + s_next (x - a x0) / s` (= first-order DPM-Solver++)."""
    ratio = s_next / s
    return ratio * x + (a_next - ratio * a) * denoised


# --------------------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_flow_euler(
    denoise_fn: DenoiseFn,
    x: Tensor,
    timesteps: TimestepGrid,
    *,
    callback: Callback | None = None,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Euler on the flow ODE: the reference sampler (docs/inference.md#the-reference-sampler, step 4) on the flow
    schedule.

    Args:
        denoise_fn: x0-prediction denoiser `denoise_fn(x, t)`.
        x: (B, C, ...) initial noise at `timesteps.t[0]`.
        timesteps: sampling grid.
        callback: `callback(i, x, t, denoised)` per step.
        progress: show a progress bar.
        generator: unused (deterministic sampler).

    Returns:
        (B, C, ...) samples at `timesteps.t[-1]`.
    """
    del generator
    alpha, sigma = timesteps.alpha.tolist(), timesteps.sigma.tolist()
    for i in _steps(timesteps, progress, "flow-euler"):
        denoised = _denoise(denoise_fn, x, timesteps, i, callback)
        scale, tau = _flow_coords(alpha[i], sigma[i])
        scale_next, tau_next = _flow_coords(alpha[i + 1], sigma[i + 1])
        y = x / scale
        d = _flow_derivative(y, denoised, tau)
        x = (y + (tau_next - tau) * d) * scale_next
    return x


@torch.no_grad()
def sample_flow_heun(
    denoise_fn: DenoiseFn,
    x: Tensor,
    timesteps: TimestepGrid,
    *,
    callback: Callback | None = None,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Heun (trapezoidal predictor-corrector) on the flow ODE; 2 S - 1 network evaluations.

    Args:
        denoise_fn: x0-prediction denoiser `denoise_fn(x, t)`.
        x: (B, C, ...) initial noise at `timesteps.t[0]`.
        timesteps: sampling grid.
        callback: `callback(i, x, t, denoised)` per step (first evaluation of the step).
        progress: show a progress bar.
        generator: unused (deterministic sampler).

    Returns:
        (B, C, ...) samples at `timesteps.t[-1]`.
    """
    del generator
    alpha, sigma = timesteps.alpha.tolist(), timesteps.sigma.tolist()
    for i in _steps(timesteps, progress, "flow-heun"):
        denoised = _denoise(denoise_fn, x, timesteps, i, callback)
        scale, tau = _flow_coords(alpha[i], sigma[i])
        scale_next, tau_next = _flow_coords(alpha[i + 1], sigma[i + 1])
        y = x / scale
        d = _flow_derivative(y, denoised, tau)
        y_next = y + (tau_next - tau) * d
        # The derivative at tau = 0 is undefined (division by tau), so the last step to clean stays Euler.
        if tau_next > 0:
            denoised_next = denoise_fn(y_next * scale_next, timesteps.t[i + 1])
            d_next = _flow_derivative(y_next, denoised_next, tau_next)
            y_next = y + (tau_next - tau) * (d + d_next) / 2
        x = y_next * scale_next
    return x


@torch.no_grad()
def sample_ddim(
    denoise_fn: DenoiseFn,
    x: Tensor,
    timesteps: TimestepGrid,
    *,
    callback: Callback | None = None,
    progress: bool = False,
    generator: torch.Generator | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM: `x_next = a_next x0 + sqrt(s_next^2 - c^2) eps + c z` with `c = eta * posterior std`.

    Args:
        denoise_fn: x0-prediction denoiser `denoise_fn(x, t)`.
        x: (B, C, ...) initial noise at `timesteps.t[0]`.
        timesteps: sampling grid.
        callback: `callback(i, x, t, denoised)` per step.
        progress: show a progress bar.
        generator: source of the step noise when eta > 0 (drawn on its device, then moved to x's).
        eta: 0 for the deterministic DDIM ODE solver, 1 for DDPM-like ancestral sampling.

    Returns:
        (B, C, ...) samples at `timesteps.t[-1]`.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    alpha, sigma = timesteps.alpha.tolist(), timesteps.sigma.tolist()
    for i in _steps(timesteps, progress, "ddim"):
        denoised = _denoise(denoise_fn, x, timesteps, i, callback)
        a, s, a_next, s_next = alpha[i], sigma[i], alpha[i + 1], sigma[i + 1]
        if eta == 0 or s_next == 0:
            x = _ddim_step(x, denoised, a, s, a_next, s_next)
            continue
        # Std of q(x_next | x_t, x0) for the path x = a x0 + s noise, scaled by eta (DDIM eq. 16).
        c = eta * s_next * math.sqrt(max(0.0, 1 - (a * s_next / (a_next * s)) ** 2))
        eps = (x - a * denoised) / s
        device = generator.device if generator is not None else x.device
        z = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        x = a_next * denoised + math.sqrt(max(0.0, s_next**2 - c**2)) * eps + c * z
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    denoise_fn: DenoiseFn,
    x: Tensor,
    timesteps: TimestepGrid,
    *,
    callback: Callback | None = None,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """DPM-Solver++(2M): second-order multistep exponential integrator on the data prediction.

    With lambda = log(alpha / sigma), h_i = lambda_{i+1} - lambda_i and r = h_{i-1} / h_i, the step is
    DDIM applied to `D = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1}` (Lu et al. 2022, Algorithm 2).

    Args:
        denoise_fn: x0-prediction denoiser `denoise_fn(x, t)`.
        x: (B, C, ...) initial noise at `timesteps.t[0]`.
        timesteps: sampling grid.
        callback: `callback(i, x, t, denoised)` per step.
        progress: show a progress bar.
        generator: unused (deterministic sampler).

    Returns:
        (B, C, ...) samples at `timesteps.t[-1]`.
    """
    del generator
    alpha, sigma = timesteps.alpha.tolist(), timesteps.sigma.tolist()
    lam = [_half_log_snr(a, s) for a, s in zip(alpha, sigma, strict=True)]
    old_denoised: Tensor | None = None
    for i in _steps(timesteps, progress, "dpmpp-2m"):
        denoised = _denoise(denoise_fn, x, timesteps, i, callback)
        h = lam[i + 1] - lam[i]
        # First order on the first step, after a step from pure noise (h_last = inf, so r = inf and the
        # correction vanishes anyway) and on the step to clean data (h = inf).
        h_last = lam[i] - lam[i - 1] if i > 0 else math.inf
        if old_denoised is None or not (math.isfinite(h) and math.isfinite(h_last)):
            d = denoised
        else:
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = _ddim_step(x, d, alpha[i], sigma[i], alpha[i + 1], sigma[i + 1])
        old_denoised = denoised
    return x


# --------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------

SAMPLERS: dict[str, Sampler] = {
    "flow-euler": sample_flow_euler,
    "flow-heun": sample_flow_heun,
    "ddim": sample_ddim,
    "dpmpp-2m": sample_dpmpp_2m,
}


def get_sampler(name: str) -> Sampler:
    """The sampler registered under `name` (one of `SAMPLERS`)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name]
