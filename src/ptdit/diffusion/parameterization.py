"""What the network predicts, and the conversions between predictions (docs/training.md#objectives).

For any schedule `x_t = alpha x0 + sigma noise` (alpha, sigma broadcastable against the latents):

| prediction | network output                          | recover x0                                   |
|------------|-----------------------------------------|----------------------------------------------|
| "x0"       | x0                                      | -                                            |
| "eps"      | noise                                   | (x_t - sigma eps) / alpha                    |
| "v"        | alpha noise - sigma x0 (VP v-pred)      | (alpha x_t - sigma v) / (alpha^2 + sigma^2)  |
| "velocity" | x0 - noise (rectified-flow target)      | (x_t + sigma u) / (alpha + sigma)            |

The general denominators make every conversion exact for any (alpha, sigma): for VP alpha^2 + sigma^2 = 1,
for flow alpha + sigma = 1 (so x0 = x_t + tau u, the reference Euler step). "velocity" follows the
reference's sign: the target is x0 - noise and the sampler steps `x <- x + u (t_i - t_{i+1}) / 1000`.

`Denoiser` wraps a raw network `model(x_t, t, **cond)` and a schedule into `denoiser(x_t, t, **cond) -> x0`
(or another prediction), which is what every sampler in `ptdit.sampling` consumes. Only the first C output
channels (C = x_t.shape[1]) are the prediction; extra channels (the released model's learned-sigma
leftover) are dropped here and in the loss.

Shapes: B batch, C latent channels; latents (B, C, F, H, W) but any (B, C, ...) works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from ptdit.diffusion.schedules import NoiseSchedule

__all__ = [
    "PREDICTIONS",
    "Denoiser",
    "Prediction",
    "append_dims",
    "check_prediction",
    "convert_prediction",
    "eps_to_x0",
    "prediction_channels",
    "prediction_target",
    "prediction_to_eps",
    "prediction_to_x0",
    "v_target",
    "v_to_eps",
    "v_to_x0",
    "velocity_target",
    "velocity_to_eps",
    "velocity_to_x0",
    "x0_to_eps",
]

Prediction = Literal["eps", "x0", "v", "velocity"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)

Coef = Tensor | float  # alpha / sigma: a float or a tensor broadcastable against the latents


def check_prediction(prediction: str) -> None:
    """Raise ValueError unless `prediction` is one of `PREDICTIONS`."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def append_dims(coef: Tensor, ndim: int) -> Tensor:
    """(B,) -> (B, 1, ..., 1) with `ndim` dims in total, to broadcast per-sample coefficients over latents."""
    if coef.ndim > ndim:
        raise ValueError(f"cannot expand a {coef.ndim}-D tensor to {ndim} dims")
    return coef.reshape(*coef.shape, *([1] * (ndim - coef.ndim)))


# --------------------------------------------------------------------------------------------------------
# Pure conversions
# --------------------------------------------------------------------------------------------------------


def x0_to_eps(x_t: Tensor, x0: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """noise = (x_t - alpha x0) / sigma; undefined at sigma = 0."""
    return (x_t - alpha * x0) / sigma


def eps_to_x0(x_t: Tensor, eps: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """x0 = (x_t - sigma eps) / alpha; undefined at alpha = 0."""
    return (x_t - sigma * eps) / alpha


def v_target(x0: Tensor, noise: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """VP v-prediction target v = alpha noise - sigma x0 (Salimans & Ho 2022)."""
    return alpha * noise - sigma * x0


def v_to_x0(x_t: Tensor, v: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """x0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2); the denominator is 1 on a VP schedule."""
    return (alpha * x_t - sigma * v) / (alpha * alpha + sigma * sigma)


def v_to_eps(x_t: Tensor, v: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """noise = (sigma x_t + alpha v) / (alpha^2 + sigma^2)."""
    return (sigma * x_t + alpha * v) / (alpha * alpha + sigma * sigma)


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """Rectified-flow velocity u = x0 - noise (the reference's target, docs/training.md#objectives)."""
    return x0 - noise


def velocity_to_x0(x_t: Tensor, velocity: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """x0 = (x_t + sigma u) / (alpha + sigma); on the flow schedule x0 = x_t + (t/1000) u."""
    return (x_t + sigma * velocity) / (alpha + sigma)


def velocity_to_eps(x_t: Tensor, velocity: Tensor, alpha: Coef, sigma: Coef) -> Tensor:
    """noise = (x_t - alpha u) / (alpha + sigma)."""
    return (x_t - alpha * velocity) / (alpha + sigma)


def prediction_target(x0: Tensor, noise: Tensor, alpha: Coef, sigma: Coef, prediction: Prediction) -> Tensor:
    """What a network trained for `prediction` should output for x_t = alpha x0 + sigma noise."""
    check_prediction(prediction)
    if prediction == "x0":
        return x0
    if prediction == "eps":
        return noise
    if prediction == "v":
        return v_target(x0, noise, alpha, sigma)
    return velocity_target(x0, noise)


def prediction_to_x0(pred: Tensor, x_t: Tensor, alpha: Coef, sigma: Coef, prediction: Prediction) -> Tensor:
    """Turn a network prediction of kind `prediction` into x0."""
    check_prediction(prediction)
    if prediction == "x0":
        return pred
    if prediction == "eps":
        return eps_to_x0(x_t, pred, alpha, sigma)
    if prediction == "v":
        return v_to_x0(x_t, pred, alpha, sigma)
    return velocity_to_x0(x_t, pred, alpha, sigma)


def prediction_to_eps(pred: Tensor, x_t: Tensor, alpha: Coef, sigma: Coef, prediction: Prediction) -> Tensor:
    """Turn a network prediction of kind `prediction` into the noise."""
    check_prediction(prediction)
    if prediction == "x0":
        return x0_to_eps(x_t, pred, alpha, sigma)
    if prediction == "eps":
        return pred
    if prediction == "v":
        return v_to_eps(x_t, pred, alpha, sigma)
    return velocity_to_eps(x_t, pred, alpha, sigma)


def convert_prediction(
    pred: Tensor, x_t: Tensor, alpha: Coef, sigma: Coef, *, source: Prediction, target: Prediction
) -> Tensor:
    """Convert a prediction of kind `source` into kind `target` (through the (x0, noise) pair).

    Args:
        pred: (B, C, ...) prediction of kind `source`.
        x_t: (B, C, ...) the noisy latents it was made from.
        alpha: signal coefficient, broadcastable against x_t.
        sigma: noise coefficient, broadcastable against x_t.
        source: kind of `pred`.
        target: kind wanted.

    Returns:
        (B, C, ...) prediction of kind `target`.
    """
    check_prediction(target)
    if source == target:
        check_prediction(source)
        return pred
    if target == "x0":
        return prediction_to_x0(pred, x_t, alpha, sigma, source)
    if target == "eps":
        return prediction_to_eps(pred, x_t, alpha, sigma, source)
    x0 = prediction_to_x0(pred, x_t, alpha, sigma, source)
    noise = prediction_to_eps(pred, x_t, alpha, sigma, source)
    return prediction_target(x0, noise, alpha, sigma, target)


def prediction_channels(out: Tensor, num_channels: int) -> Tensor:
    """The first `num_channels` channels of a raw network output (B, C_out, ...); the rest are ignored."""
    if out.ndim < 2 or out.shape[1] < num_channels:
        raise ValueError(f"network output {tuple(out.shape)} has fewer than {num_channels} channels")
    return out[:, :num_channels]


# --------------------------------------------------------------------------------------------------------
# Denoiser
# --------------------------------------------------------------------------------------------------------


class Denoiser:
    """Wrap a raw network so that it returns an x0 prediction (or any other kind) for the samplers.

    `denoiser(x_t, t, **cond)` runs `model(x_t, t_B, **cond)` with `t_B` the (B,) float32 network times,
    keeps the first C output channels and converts them from `prediction` to `output`. Samplers call a
    denoiser with two arguments; bind the conditioning first, e.g. `functools.partial(denoiser, **cond)`.
    For classifier-free guidance wrap the model in `ClassifierFreeGuidance` before passing it here (the
    conversions are affine in the prediction, so guiding the raw output equals guiding x0).

    Args:
        model: the network, `model(x_t, t, **cond) -> (B, C_out, ...)` with C_out >= C.
        schedule: the schedule the network was trained on.
        prediction: what the network predicts.
        output: what the denoiser returns (samplers in `ptdit.sampling` expect "x0").
    """

    def __init__(
        self,
        model: Callable[..., Tensor],
        schedule: NoiseSchedule,
        prediction: Prediction,
        *,
        output: Prediction = "x0",
    ) -> None:
        check_prediction(prediction)
        check_prediction(output)
        self.model = model
        self.schedule = schedule
        self.prediction = prediction
        self.output = output

    def __call__(self, x_t: Tensor, t: Tensor | float, **cond: Any) -> Tensor:
        """Denoise.

        Args:
            x_t: (B, C, ...) noisy latents.
            t: network time, a scalar (shared by the batch) or (B,).
            **cond: conditioning passed to the model unchanged (context, context_mask, class labels, ...).

        Returns:
            (B, C, ...) prediction of kind `output`, in x_t's dtype.
        """
        batch_size = x_t.shape[0]
        t_B = torch.as_tensor(t, dtype=torch.float64)
        if t_B.ndim == 0:
            t_B = t_B.expand(batch_size)
        if t_B.shape != (batch_size,):
            raise ValueError(f"t must be a scalar or have shape ({batch_size},), got {tuple(t_B.shape)}")
        alpha, sigma = (append_dims(c.to(x_t), x_t.ndim) for c in self.schedule.alpha_sigma(t_B))
        out = self.model(x_t, t_B.to(device=x_t.device, dtype=torch.float32), **cond)
        pred = prediction_channels(out, x_t.shape[1]).to(x_t.dtype)
        return convert_prediction(pred, x_t, alpha, sigma, source=self.prediction, target=self.output)
