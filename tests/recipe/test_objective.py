"""The objective decision: name -> schedule, prediction, loss and timestep shift, made in one place."""

from __future__ import annotations

import pytest
import torch

from ptdit.config import PipelineConfig
from ptdit.diffusion.losses import FlowMatchingLoss, FlowX0Loss, VPLoss
from ptdit.diffusion.schedules import FlowSchedule, VPSchedule, timestep_shift_ratio
from ptdit.recipe import build_objective
from ptdit.recipe.objective import OBJECTIVES


@pytest.mark.parametrize(
    ("name", "prediction", "schedule", "loss"),
    [
        ("flow", "velocity", FlowSchedule, FlowMatchingLoss),
        ("flow-x0", "x0", FlowSchedule, FlowX0Loss),
        ("vp-v", "v", VPSchedule, VPLoss),
        ("vp-eps", "eps", VPSchedule, VPLoss),
    ],
)
def test_objective_maps_to_schedule_prediction_and_loss(name, prediction, schedule, loss):
    objective = build_objective(PipelineConfig(objective=name))
    assert objective.name == name and objective.prediction == prediction
    assert isinstance(objective.schedule, schedule)
    built = objective.loss()
    assert isinstance(built, loss) and built.prediction == prediction and built.schedule is objective.schedule


def test_every_objective_the_config_accepts_is_built():
    assert set(OBJECTIVES) == {"flow", "flow-x0", "vp-v", "vp-eps"}
    for name in OBJECTIVES:
        build_objective(PipelineConfig(objective=name))


def test_shift_ratio_follows_the_config():
    shifted = build_objective(PipelineConfig(objective="flow", timestep_shift=True, shift_scale=0.5))
    assert shifted.shift_ratio(1024, 1024, 1) == timestep_shift_ratio(1024, 1024, 1, scale=0.5) == 1.0
    assert build_objective(PipelineConfig(timestep_shift=False)).shift_ratio(1024, 1024, 1) == 1.0
    assert build_objective(PipelineConfig(objective="vp-v")).shift_ratio(1024, 1024, 1) == 1.0


def test_training_shift_uses_the_vae_factors():
    """The flow schedule turns latent sizes back into pixels with the VAE's factors: 128 latents x 8 = 1024 px."""
    objective = build_objective(PipelineConfig(), spatial_factor=8, temporal_factor=4)
    assert objective.schedule.shift_ratio((1, 4, 1, 128, 128)) == 2.0
    pixel_space = build_objective(PipelineConfig(), spatial_factor=1, temporal_factor=1)
    assert pixel_space.schedule.shift_ratio((1, 3, 1, 1024, 1024)) == 2.0


def test_loss_and_sampler_agree_on_the_target():
    """The loss's target at t is what the pipeline's denoiser turns back into x0 (same schedule and prediction)."""
    from ptdit.diffusion.parameterization import Denoiser

    for name in OBJECTIVES:
        objective = build_objective(PipelineConfig(objective=name, timestep_shift=False))
        loss = objective.loss()
        x0, noise = torch.randn(2, 3, 1, 4, 4), torch.randn(2, 3, 1, 4, 4)
        t = torch.tensor([300.0, 700.0]) if name.startswith("flow") else torch.tensor([300, 700])
        x_t = loss.add_noise(x0, noise, t)
        target = loss.target(x0, noise, t)
        denoise = Denoiser(lambda x, tt, target=target, **_: target, objective.schedule, objective.prediction)
        torch.testing.assert_close(denoise(x_t, t), x0, atol=1e-4, rtol=1e-4)


def test_unknown_objective_is_refused():
    with pytest.raises(ValueError, match="objective"):
        PipelineConfig(objective="edm")


def test_flow_x0_shares_the_flow_schedule_and_shift():
    """flow-x0 changes only what the network predicts: same times, same shift, same noising as flow."""
    cfg = {"timestep_shift": True, "shift_scale": 48.0}
    flow, flow_x0 = (build_objective(PipelineConfig(objective=o, **cfg), spatial_factor=1) for o in ("flow", "flow-x0"))
    assert flow_x0.shift_ratio(32, 32, 8) == flow.shift_ratio(32, 32, 8) == 3.0
    assert flow_x0.schedule.shift_ratio((1, 3, 1, 32, 32)) == flow.schedule.shift_ratio((1, 3, 1, 32, 32))
