"""Training losses: one object per objective, one call signature
(docs/training.md#the-loss-object; EDM `training/loss.py` style).

`loss_fn(model, x0, cond, *, generator=None) -> loss_B`:
1. sample network times t (B,) (with the timestep shift for flow, from the latent shape),
2. sample noise and form x_t = alpha(t) x0 + sigma(t) noise,
3. run `model(x_t, t, **cond)` and keep the first C output channels,
4. per-sample MSE against the objective's target, averaged over all non-batch elements.

The random draws happen in that order (t, then noise) from `generator`, so a seeded generator reproduces
a loss exactly. The pieces (`sample_t`, `sample_noise`, `add_noise`, `target`) are public so that a
training loop or a test never writes noising maths itself.

Shapes: B batch, C latent channels; x0 is (B, C, F, H, W) (any (B, C, ...) works).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from ptdit.diffusion.parameterization import (
    Prediction,
    append_dims,
    check_prediction,
    prediction_channels,
    prediction_target,
)
from ptdit.diffusion.schedules import FlowSchedule, NoiseSchedule, VPSchedule

__all__ = ["DiffusionLoss", "FlowMatchingLoss", "FlowX0Loss", "VPLoss", "mean_flat"]


def mean_flat(x: Tensor) -> Tensor:
    """Mean over all non-batch dimensions: (B, ...) -> (B,)."""
    return x.reshape(x.shape[0], -1).mean(dim=1)


class DiffusionLoss:
    """Unweighted MSE between the network's prediction and the target of `prediction` on `schedule`.

    Args:
        schedule: the noising path and its training-time distribution.
        prediction: what the network is trained to predict.
    """

    def __init__(self, schedule: NoiseSchedule, prediction: Prediction) -> None:
        check_prediction(prediction)
        self.schedule = schedule
        self.prediction = prediction

    def __repr__(self) -> str:
        return f"{type(self).__name__}(schedule={self.schedule!r}, prediction={self.prediction!r})"

    def sample_t(self, x0: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Training times (B,) float32 on x0's device, shifted for x0's resolution when the schedule says so."""
        shift = self.schedule.shift_ratio(x0.shape)
        return self.schedule.sample_t(x0.shape[0], shift=shift, generator=generator, device=x0.device)

    def sample_noise(self, x0: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Standard normal noise like x0, drawn on the generator's device (x0's without one)."""
        device = generator.device if generator is not None else x0.device
        return torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype).to(x0.device)

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """x_t = alpha(t) x0 + sigma(t) noise; see `NoiseSchedule.add_noise`."""
        return self.schedule.add_noise(x0, noise, t)

    def target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """The regression target for x_t = add_noise(x0, noise, t), (B, C, ...) in x0's dtype."""
        alpha, sigma = (append_dims(c.to(x0), x0.ndim) for c in self.schedule.alpha_sigma(t))
        return prediction_target(x0, noise, alpha, sigma, self.prediction)

    def __call__(
        self,
        model: Callable[..., Tensor],
        x0: Tensor,
        cond: Mapping[str, Any],
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Per-sample loss.

        Args:
            model: the network, `model(x_t, t, **cond) -> (B, C_out, ...)` with C_out >= C.
            x0: (B, C, ...) clean latents.
            cond: keyword arguments for the model (context, context_mask, class labels, ...).
            generator: source of t and noise (drawn in that order).

        Returns:
            (B,) float32 loss per sample; average it for the batch loss.
        """
        t, noise = self.draw(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return self.compute(model, x0, cond, t, noise)

    def draw(
        self,
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[Tensor, Tensor]:
        """Training times (B,) and noise of `shape`, drawn in that order from `generator`.

        Drawing for a whole global batch and slicing per rank gives every sample the same t and noise
        whatever the number of processes.
        """
        shift = self.schedule.shift_ratio(shape)
        gen_device = generator.device if generator is not None else device
        t = self.schedule.sample_t(shape[0], shift=shift, generator=generator, device=gen_device)
        noise = torch.randn(tuple(shape), generator=generator, device=gen_device, dtype=dtype)
        return t.to(device), noise.to(device)

    def compute(
        self, model: Callable[..., Tensor], x0: Tensor, cond: Mapping[str, Any], t: Tensor, noise: Tensor
    ) -> Tensor:
        """Per-sample loss (B,) float32 for given times and noise."""
        x_t = self.add_noise(x0, noise, t)
        pred = prediction_channels(model(x_t, t, **cond), x0.shape[1])
        target = self.target(x0, noise, t)
        # The MSE is taken in float32 whatever the autocast dtype of the model output.
        return mean_flat((pred.float() - target.float()).square())


class FlowMatchingLoss(DiffusionLoss):
    """Rectified-flow loss of the reference (docs/training.md#objectives): target x0 - noise, logit-normal shifted
    times.

    Args:
        schedule: the flow schedule (timestep sampling and shift); the default is logit-normal with the
            resolution/frame-dependent shift on.
    """

    def __init__(self, schedule: FlowSchedule | None = None) -> None:
        super().__init__(schedule if schedule is not None else FlowSchedule(), "velocity")


class FlowX0Loss(DiffusionLoss):
    """Rectified flow with x0-prediction and the velocity loss (docs/training.md#objectives; Li & He 2025, "Back to
    Basics: Let Denoising Generative Models Denoise", Sec. 4): the network outputs x0, its velocity
    (x0_hat - x_t) / sigma is regressed on the true one, i.e. MSE(x0_hat, x0) / max(sigma, sigma_min)^2.

    Why: a token that carries more values than the network is wide (a packed clip, a large pixel patch) cannot
    pass noise through to a velocity or epsilon output, and the samples keep that noise; clean data lies on a
    low-dimensional set that a narrow network can still predict.

    Args:
        schedule: the flow schedule (timestep sampling and shift).
        sigma_min: floor of sigma in the weight, so the loss stays finite near t = 0 (0.05 as in the paper above).
    """

    def __init__(self, schedule: FlowSchedule | None = None, *, sigma_min: float = 0.05) -> None:
        super().__init__(schedule if schedule is not None else FlowSchedule(), "x0")
        if not 0.0 < sigma_min <= 1.0:
            raise ValueError(f"sigma_min must be in (0, 1], got {sigma_min!r}")
        self.sigma_min = sigma_min

    def compute(
        self, model: Callable[..., Tensor], x0: Tensor, cond: Mapping[str, Any], t: Tensor, noise: Tensor
    ) -> Tensor:
        """Per-sample velocity-space loss (B,) float32 for given times and noise."""
        mse_B = super().compute(model, x0, cond, t, noise)
        sigma_B = self.schedule.alpha_sigma(t)[1].to(mse_B)
        return mse_B / sigma_B.clamp_min(self.sigma_min).square()


class VPLoss(DiffusionLoss):
    """Discrete VP loss with v- or epsilon-prediction, t uniform in {0..T-1} (docs/decisions.md#training-objective).

    Args:
        schedule: the VP schedule; default linear betas, 1000 steps.
        prediction: "v" (the paper's "v-prediction") or "eps".
    """

    def __init__(self, schedule: VPSchedule | None = None, *, prediction: Literal["v", "eps"] = "v") -> None:
        if prediction not in ("v", "eps"):
            raise ValueError(f"VPLoss prediction must be 'v' or 'eps', got {prediction!r}")
        super().__init__(schedule if schedule is not None else VPSchedule(), prediction)
