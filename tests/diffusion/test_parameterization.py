"""Prediction conversions (eps, v, x0, velocity) and the Denoiser."""

from __future__ import annotations

import pytest
import torch

from ptdit.diffusion import (
    PREDICTIONS,
    Denoiser,
    FlowSchedule,
    NoiseSchedule,
    VPSchedule,
    convert_prediction,
    prediction_target,
    prediction_to_x0,
)
from ptdit.diffusion.parameterization import velocity_target, velocity_to_x0
from tests.helpers.diffusion import latents, oracle_model

# (alpha, sigma) pairs of a VP schedule, the flow schedule and an arbitrary path.
COEFS = [(0.8, 0.6), (0.3, 0.7), (0.9, 0.2)]


@pytest.mark.parametrize("alpha,sigma", COEFS)
@pytest.mark.parametrize("source", PREDICTIONS)
@pytest.mark.parametrize("target", PREDICTIONS)
def test_target_roundtrip_eps_v_x0(alpha: float, sigma: float, source: str, target: str) -> None:
    x0, noise = latents(0).double(), latents(1).double()
    x_t = alpha * x0 + sigma * noise
    pred = prediction_target(x0, noise, alpha, sigma, source)  # type: ignore[arg-type]
    converted = convert_prediction(pred, x_t, alpha, sigma, source=source, target=target)  # type: ignore[arg-type]
    torch.testing.assert_close(converted, prediction_target(x0, noise, alpha, sigma, target))  # type: ignore[arg-type]
    back = convert_prediction(converted, x_t, alpha, sigma, source=target, target=source)  # type: ignore[arg-type]
    torch.testing.assert_close(back, pred)


def test_flow_velocity_conversions() -> None:
    schedule = FlowSchedule()
    x0, noise = latents(0), latents(1)
    t = torch.tensor([300.0, 1000.0])
    x_t = schedule.add_noise(x0, noise, t)
    u = velocity_target(x0, noise)
    torch.testing.assert_close(u, x0 - noise)
    tau = (t / 1000).view(2, 1, 1, 1, 1)
    # x0 = x_t + tau u, including at pure noise (alpha = 0), where eps-prediction would be singular.
    torch.testing.assert_close(velocity_to_x0(x_t, u, 1 - tau, tau), x0)
    torch.testing.assert_close(prediction_to_x0(u, x_t, 1 - tau, tau, "velocity"), x_t + tau * u)


def test_unknown_prediction_raises() -> None:
    with pytest.raises(ValueError, match="prediction"):
        prediction_target(latents(0), latents(1), 0.5, 0.5, "score")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "schedule,prediction,t",
    [(FlowSchedule(), "velocity", 730.0), (VPSchedule(), "v", 500.0), (VPSchedule("cosine"), "eps", 200.0)],
)
def test_denoiser_returns_x0_and_ignores_extra_channels(schedule: NoiseSchedule, prediction: str, t: float) -> None:
    x0, noise = latents(0), latents(1)
    x_t = schedule.add_noise(x0, noise, torch.full((2,), t))
    for extra in (0.0, 123.0):
        denoiser = Denoiser(oracle_model(x0, noise, schedule, prediction, extra), schedule, prediction)
        torch.testing.assert_close(denoiser(x_t, torch.tensor(t)), x0, atol=1e-5, rtol=1e-5)
    eps_denoiser = Denoiser(oracle_model(x0, noise, schedule, prediction), schedule, prediction, output="eps")
    torch.testing.assert_close(eps_denoiser(x_t, t), noise, atol=1e-5, rtol=1e-5)
