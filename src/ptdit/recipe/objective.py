"""Objective name -> noise schedule, prediction type, training loss and timestep shift.

The objectives (docs/training.md#objectives): "flow" is the reference's rectified flow (velocity
prediction, logit-normal times with the resolution/frame-dependent timestep shift, paper App. A.1);
"flow-x0" is the same flow with x0-prediction and the velocity loss (for tokens wider than the network);
"vp-v" and "vp-eps" are v- and epsilon-prediction on a discrete VP schedule. The trainer takes its loss from
here and the generation pipeline its schedule, prediction and shift, so both always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ptdit.diffusion.losses import DiffusionLoss, FlowMatchingLoss, FlowX0Loss, VPLoss
from ptdit.diffusion.parameterization import Prediction
from ptdit.diffusion.schedules import FlowSchedule, NoiseSchedule, TimestepShift, VPSchedule, timestep_shift_ratio

if TYPE_CHECKING:
    from ptdit.config import PipelineConfig

OBJECTIVES = ("flow", "flow-x0", "vp-v", "vp-eps")
PREDICTION_OF: dict[str, Prediction] = {"flow": "velocity", "flow-x0": "x0", "vp-v": "v", "vp-eps": "eps"}
FLOW_OBJECTIVES = ("flow", "flow-x0")


@dataclass(frozen=True)
class Objective:
    """A training objective and what sampling needs of it.

    Attributes:
        name: "flow", "flow-x0", "vp-v" or "vp-eps".
        schedule: the noising path; its `sample_t` already applies the training-time shift.
        prediction: what the network predicts ("velocity", "x0", "v" or "eps").
        shift_scale: the timestep-shift multiplier, or None when the shift is off (always None for VP).
    """

    name: str
    schedule: NoiseSchedule
    prediction: Prediction
    shift_scale: float | None

    def loss(self) -> DiffusionLoss:
        """The per-sample training loss `loss(model, x0, cond) -> (B,)` of this objective."""
        if self.name == "flow":
            return FlowMatchingLoss(self.schedule)
        if self.name == "flow-x0":
            return FlowX0Loss(self.schedule)
        return VPLoss(self.schedule, prediction=self.prediction)

    def shift_ratio(self, height: int, width: int, frames: int) -> float:
        """The sampling grid's timestep-shift ratio r for a pixel size (1.0 without a shift)."""
        if self.shift_scale is None:
            return 1.0
        return timestep_shift_ratio(height, width, frames, scale=self.shift_scale)


def build_objective(config: PipelineConfig, *, spatial_factor: int = 8, temporal_factor: int = 4) -> Objective:
    """The objective a checkpoint was trained with.

    Args:
        config: the checkpoint's pipeline settings (`objective`, `beta_schedule`, `timestep_shift`, `shift_scale`).
        spatial_factor: the VAE's spatial compression; with `temporal_factor` it turns latent sizes back into the
            pixel sizes that the training-time shift is defined on.
        temporal_factor: the VAE's temporal compression.
    """
    if config.objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {config.objective!r}; expected one of {list(OBJECTIVES)}")
    if config.objective not in FLOW_OBJECTIVES:
        return Objective(config.objective, VPSchedule(config.beta_schedule), PREDICTION_OF[config.objective], None)
    shift = None
    if config.timestep_shift:
        shift = TimestepShift(
            scale=config.shift_scale, spatial_compression=spatial_factor, temporal_compression=temporal_factor
        )
    scale = config.shift_scale if config.timestep_shift else None
    return Objective(config.objective, FlowSchedule(shift=shift), PREDICTION_OF[config.objective], scale)


__all__ = ["FLOW_OBJECTIVES", "OBJECTIVES", "PREDICTION_OF", "Objective", "build_objective"]
