"""The diffusion process: schedules, prediction conversions, losses and classifier-free guidance.

Depends only on torch; the network is a callable `model(x_t, t, **cond) -> out`.
"""

from ptdit.diffusion.guidance import ClassifierFreeGuidance, batch_cond_uncond, cfg_combine
from ptdit.diffusion.losses import DiffusionLoss, FlowMatchingLoss, FlowX0Loss, VPLoss, mean_flat
from ptdit.diffusion.parameterization import (
    PREDICTIONS,
    Denoiser,
    Prediction,
    convert_prediction,
    prediction_channels,
    prediction_target,
    prediction_to_eps,
    prediction_to_x0,
)
from ptdit.diffusion.schedules import (
    FLOW_T_MAX,
    FlowSchedule,
    NoiseSchedule,
    TimestepGrid,
    TimestepShift,
    VPSchedule,
    cosine_betas,
    linear_betas,
    shift_timesteps,
    timestep_shift_ratio,
)

__all__ = [
    "FLOW_T_MAX",
    "PREDICTIONS",
    "ClassifierFreeGuidance",
    "Denoiser",
    "DiffusionLoss",
    "FlowMatchingLoss",
    "FlowSchedule",
    "FlowX0Loss",
    "NoiseSchedule",
    "Prediction",
    "TimestepGrid",
    "TimestepShift",
    "VPLoss",
    "VPSchedule",
    "batch_cond_uncond",
    "cfg_combine",
    "convert_prediction",
    "cosine_betas",
    "linear_betas",
    "mean_flat",
    "prediction_channels",
    "prediction_target",
    "prediction_to_eps",
    "prediction_to_x0",
    "shift_timesteps",
    "timestep_shift_ratio",
]
