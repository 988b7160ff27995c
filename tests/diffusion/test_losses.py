"""Diffusion losses: per-sample shape, extra channels ignored, zero for an oracle, conditioning passed on."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from ptdit.diffusion import (
    DiffusionLoss,
    FlowMatchingLoss,
    FlowSchedule,
    FlowX0Loss,
    VPLoss,
    VPSchedule,
    prediction_to_x0,
)
from tests.helpers.diffusion import latents, oracle_model

LOSSES = {
    "flow": lambda: FlowMatchingLoss(),
    "flow_uniform_noshift": lambda: FlowMatchingLoss(FlowSchedule(timestep_sampling="uniform", shift=None)),
    "flow_x0": lambda: FlowX0Loss(),
    "vp_v": lambda: VPLoss(),
    "vp_eps_cosine": lambda: VPLoss(VPSchedule("cosine"), prediction="eps"),
}


def _junk_model(extra: float) -> Callable[..., Tensor]:
    def model(x_t: Tensor, t: Tensor, **cond: object) -> Tensor:
        pred = 0.5 * x_t + t.view(-1, 1, 1, 1, 1) / 1000
        return torch.cat([pred, torch.full_like(pred, extra)], dim=1)

    return model


@pytest.mark.parametrize("name", LOSSES)
def test_loss_is_per_sample_shape_B(name: str) -> None:
    loss_fn = LOSSES[name]()
    x0 = latents(0, (3, 4, 2, 8, 8))
    loss = loss_fn(_junk_model(0.0), x0, {}, generator=torch.Generator().manual_seed(1))
    assert loss.shape == (3,) and loss.dtype == torch.float32 and bool((loss > 0).all())


@pytest.mark.parametrize("name", LOSSES)
def test_loss_ignores_extra_channels(name: str) -> None:
    loss_fn = LOSSES[name]()
    x0 = latents(0)
    losses = [loss_fn(_junk_model(e), x0, {}, generator=torch.Generator().manual_seed(1)) for e in (0.0, 1e3)]
    assert torch.equal(losses[0], losses[1])


@pytest.mark.parametrize("name", LOSSES)
def test_loss_zero_for_oracle_and_pieces_consistent(name: str) -> None:
    loss_fn: DiffusionLoss = LOSSES[name]()
    x0 = latents(0)
    # Replay the loss's own draws (t, then noise) to build an oracle that knows the noise.
    gen = torch.Generator().manual_seed(7)
    t = loss_fn.sample_t(x0, generator=gen)
    noise = loss_fn.sample_noise(x0, generator=gen)
    model = oracle_model(x0, noise, loss_fn.schedule, loss_fn.prediction, extra=5.0)
    loss = loss_fn(model, x0, {}, generator=torch.Generator().manual_seed(7))
    assert loss.max().item() < 1e-10
    x_t = loss_fn.add_noise(x0, noise, t)
    pred = loss_fn.target(x0, noise, t)
    alpha, sigma = (c.float().view(-1, 1, 1, 1, 1) for c in loss_fn.schedule.alpha_sigma(t))
    torch.testing.assert_close(prediction_to_x0(pred, x_t, alpha, sigma, loss_fn.prediction), x0)


def test_loss_passes_cond_and_is_deterministic() -> None:
    seen: list[dict] = []

    def model(x_t: Tensor, t: Tensor, **cond: object) -> Tensor:
        seen.append(cond)
        return torch.cat([x_t, x_t], dim=1)

    loss_fn = FlowMatchingLoss()
    x0 = latents(0)
    cond = {"context": torch.zeros(2, 3, 5), "context_mask": torch.ones(2, 3, dtype=torch.bool)}
    first = loss_fn(model, x0, cond, generator=torch.Generator().manual_seed(3))
    second = loss_fn(model, x0, cond, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second) and seen[0] is not cond and seen[0].keys() == cond.keys()


def test_vploss_rejects_other_predictions() -> None:
    with pytest.raises(ValueError, match="'v' or 'eps'"):
        VPLoss(prediction="velocity")  # type: ignore[arg-type]


def test_flow_x0_loss_is_the_velocity_error_of_its_x0_prediction() -> None:
    """MSE(x0_hat, x0) / max(sigma, 0.05)^2 equals the velocity-space error of the x0 prediction (Li & He 2025)."""
    loss_fn = FlowX0Loss()
    x0, noise = latents(0), latents(1)
    t = torch.tensor([20.0, 600.0])  # sigma 0.02 (floored to 0.05) and 0.6
    x_t = loss_fn.add_noise(x0, noise, t)
    x0_hat = 0.9 * x0 + 0.1 * x_t
    loss = loss_fn.compute(lambda x, tt, **_: x0_hat, x0, {}, t, noise)
    sigma = torch.tensor([0.05, 0.6]).view(-1, 1, 1, 1, 1)
    velocity_error = ((x0_hat - x_t) / sigma - (x0 - x_t) / sigma).square().flatten(1).mean(1)
    torch.testing.assert_close(loss, velocity_error)
    with pytest.raises(ValueError, match="sigma_min"):
        FlowX0Loss(sigma_min=0.0)
