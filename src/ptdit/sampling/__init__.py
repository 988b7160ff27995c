"""Samplers: ODE/SDE solvers with one signature over an x0-prediction denoiser and a timestep grid."""

from ptdit.sampling.solvers import (
    SAMPLERS,
    Callback,
    DenoiseFn,
    Sampler,
    build_timesteps,
    get_sampler,
    sample_ddim,
    sample_dpmpp_2m,
    sample_flow_euler,
    sample_flow_heun,
)

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
