"""Generation pipeline: text (or label) encoding -> guided sampling -> VAE decoding.

Glue only: the network predicts, the schedule/denoiser converts, the sampler integrates, encoders encode.
Shape legend: B batch, C latent channels, F frames, H/W height/width, S text tokens, E text width.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptdit.attention.window import nearest_multiples
from ptdit.config import PipelineConfig
from ptdit.diffusion.guidance import ClassifierFreeGuidance
from ptdit.diffusion.parameterization import Denoiser
from ptdit.diffusion.schedules import FlowSchedule, NoiseSchedule, TimestepShift, VPSchedule, timestep_shift_ratio
from ptdit.presets.windows import MULTIVIEW_TEMPORAL_WINDOW, VIDEO_TEMPORAL_WINDOW, WINDOWS_PER_SIDE, paper_window
from ptdit.sampling.solvers import SAMPLERS, build_timesteps, get_sampler

PREDICTION_OF = {"flow": "velocity", "vp-v": "v", "vp-eps": "eps"}


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint folder, or a training run folder (then its `checkpoints/latest`)."""
    folder = Path(path)
    pointer = folder / "checkpoints" / "latest"
    if not (folder / "config.json").is_file() and pointer.is_file():
        return folder / "checkpoints" / pointer.read_text().strip()
    return folder


def make_schedule(config: PipelineConfig, *, spatial_factor: int = 8, temporal_factor: int = 4) -> NoiseSchedule:
    """The noise schedule a checkpoint was trained with; the VAE factors turn latent sizes into pixel sizes
    for the timestep shift during training."""
    if config.objective == "flow":
        shift = (
            TimestepShift(
                scale=config.shift_scale, spatial_compression=spatial_factor, temporal_compression=temporal_factor
            )
            if config.timestep_shift
            else None
        )
        return FlowSchedule(shift=shift)
    return VPSchedule(config.beta_schedule)


def shift_ratio(config: PipelineConfig, height: int, width: int, frames: int) -> float:
    """The reference's timestep-shift ratio r for a pixel size (1.0 when the shift is off or for VP)."""
    if config.objective != "flow" or not config.timestep_shift:
        return 1.0
    return timestep_shift_ratio(height, width, frames, scale=config.shift_scale)


@dataclass(frozen=True)
class GenerationRequest:
    """Validated sizes of one generation call."""

    height: int
    width: int
    frames: int
    latent_shape: tuple[int, int, int, int]  # (C, F', H', W')
    window_size: tuple[int, int, int] | None


class GenerationPipeline:
    """Samples images, videos or multi-view sets from a ptdit network.

    Args:
        model: the network (any ptdit model); put it in eval mode on the target device first.
        config: the checkpoint's pipeline settings.
        vae: a `ptdit.encoders.VAE`.
        text_encoder: a `ptdit.encoders.TextEncoder` for text tasks, else None.
    """

    def __init__(self, model: nn.Module, config: PipelineConfig, vae: Any, text_encoder: Any | None = None) -> None:
        self.model = model
        self.config = config
        self.vae = vae
        self.text_encoder = text_encoder
        self.schedule = make_schedule(config, spatial_factor=vae.spatial_factor, temporal_factor=vae.temporal_factor)
        self.prediction = PREDICTION_OF[config.objective]
        if config.task in ("t2i", "t2v", "t2mv") and text_encoder is None:
            raise ValueError(f"a {config.task} pipeline needs a text encoder")
        model_text_dim = getattr(model.config, "context_dim", None)
        if text_encoder is not None and model_text_dim is not None and text_encoder.dim != model_text_dim:
            raise ValueError(
                f"text encoder width {text_encoder.dim} does not match the model's context_dim {model_text_dim}"
            )

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike[str],
        *,
        weights: str | None = None,
        text_encoder: str | None = None,
        vae: str | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> GenerationPipeline:
        """Loads network, VAE and text encoder named by the checkpoint's config.json (overridable).

        `weights` defaults to `ema.safetensors` when the folder has one (training checkpoints), else
        `model.safetensors`.
        """
        from ptdit.encoders import load_text_encoder, load_vae
        from ptdit.models.registry import load_model, read_checkpoint_config

        folder = resolve_checkpoint(checkpoint)
        data = read_checkpoint_config(folder)
        config = PipelineConfig.from_dict(data.get("pipeline") or {})
        if weights is None:
            weights = "ema.safetensors" if (folder / "ema.safetensors").is_file() else "model.safetensors"
        model = load_model(folder, device=device, dtype=dtype, weights=weights)

        def resolve(name: str | None) -> str | None:
            # Encoders stored inside the checkpoint folder are named relative to it.
            return str(folder / name) if name and (folder / name).is_dir() else name

        encoder = None
        if config.task in ("t2i", "t2v", "t2mv"):
            name = text_encoder or resolve(config.text_encoder)
            encoder = load_text_encoder(name, max_length=config.text_max_length, device=device)
        return cls(model, config, load_vae(vae or resolve(config.vae), device=device, dtype=dtype), encoder)

    # ------------------------------------------------------------------------------------------------------------
    # Validation (everything is checked before any work, so bad input never leaves partial outputs)
    # ------------------------------------------------------------------------------------------------------------

    def request(
        self, height: int | None = None, width: int | None = None, frames: int | None = None
    ) -> GenerationRequest:
        """Validates a pixel size for this model, VAE and window rule; errors name the nearest valid sizes."""
        cfg = self.config
        height, width, frames = height or cfg.height, width or cfg.width, frames or cfg.frames
        if min(height, width, frames) < 1:
            raise ValueError(f"height, width and frames must be positive, got {height}x{width}, {frames} frames")
        channels = self.model.config.in_channels
        if self.vae.latent_channels != channels:
            raise ValueError(f"the VAE gives {self.vae.latent_channels} latent channels, the model takes {channels}")
        self._check_pixel_size(height, width)
        latent_f, latent_h, latent_w = self.vae.latent_shape(frames, height, width)
        self._check_frames(frames, latent_f)
        shape = (1, channels, latent_f, latent_h, latent_w)
        return GenerationRequest(height, width, frames, shape[1:], self._window(shape))

    def _tokens_per_window(self) -> tuple[int, int, int] | None:
        """Window in tokens (temporal, rows, cols) that sizes must tile; rows/cols 8 = the paper's 8 x 8 grid."""
        if not hasattr(self.model, "layout"):
            return None
        if self.config.window_size is not None:
            return tuple(self.config.window_size)
        temporal = MULTIVIEW_TEMPORAL_WINDOW if self.config.task == "t2mv" else VIDEO_TEMPORAL_WINDOW
        return (temporal, WINDOWS_PER_SIDE, WINDOWS_PER_SIDE)

    def _check_pixel_size(self, height: int, width: int) -> None:
        window = self._tokens_per_window()
        rows, cols = (1, 1) if window is None else window[1:]
        step = self.vae.spatial_factor * self.model.config.patch_size
        for name, value, multiple in (("height", height, step * rows), ("width", width, step * cols)):
            if value % multiple:
                raise ValueError(
                    f"{name} {value} does not fit this model: it must be a multiple of {multiple} (VAE x"
                    f"{self.vae.spatial_factor}, patch {self.model.config.patch_size}, window grid); nearest valid: "
                    f"{nearest_multiples(value, multiple)}"
                )

    def _check_frames(self, frames: int, latent_frames: int) -> None:
        window = self._tokens_per_window()
        temporal = 1 if window is None or latent_frames == 1 else window[0]
        if latent_frames % temporal == 0:
            return
        valid = [f for f in range(max(frames - 64, 2), frames + 64) if self._frames_fit(f, temporal)]
        nearest = sorted(valid, key=lambda f: abs(f - frames))[:2]
        raise ValueError(
            f"{frames} frames give {latent_frames} latent frames, not a multiple of the temporal window {temporal}; "
            f"nearest valid frame counts: {' or '.join(map(str, sorted(nearest)))}"
        )

    def _frames_fit(self, frames: int, temporal: int) -> bool:
        try:
            return self.vae.latent_frames(frames) % temporal == 0
        except ValueError:
            return False

    def _window(self, latent_shape: tuple[int, ...]) -> tuple[int, int, int] | None:
        model = self.model
        if not hasattr(model, "layout"):  # global-attention baselines have no windows
            return None
        if self.config.window_size is not None:
            window = tuple(self.config.window_size)
        else:
            grid = model.pos_embed.token_grid(latent_shape)
            temporal = MULTIVIEW_TEMPORAL_WINDOW if self.config.task == "t2mv" else VIDEO_TEMPORAL_WINDOW
            window = paper_window(grid, temporal=temporal)
        model.layout(latent_shape, window)  # raises ValueError naming the sizes
        return window

    # ------------------------------------------------------------------------------------------------------------
    # Generation
    # ------------------------------------------------------------------------------------------------------------

    def conditioning(
        self, prompts: list[str] | None, class_labels: list[int] | None, negative_prompt: str | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(cond, uncond) keyword arguments for the network."""
        device = next(self.model.parameters()).device
        task = self.config.task
        if task in ("t2i", "t2v", "t2mv"):
            if not prompts:
                raise ValueError("this checkpoint is text-conditional: give at least one prompt")
            emb, mask = self.text_encoder.encode(list(prompts))
            neg = self.config.negative_prompt if negative_prompt is None else negative_prompt
            neg_emb, neg_mask = self.text_encoder.encode([neg], negative=True)  # lower-cased, not cleaned
            cond = {"context": emb.to(device), "context_mask": mask.to(device)}
            return cond, {"context": neg_emb.to(device), "context_mask": neg_mask.to(device)}
        if task == "class":
            if not class_labels:
                raise ValueError("this checkpoint is class-conditional: give at least one --class-label")
            self.check_class_labels(class_labels)
            labels = torch.tensor(class_labels, device=device)
            null = torch.full((1,), self.model.config.num_classes, device=device)  # the null class for CFG
            return {"class_labels": labels}, {"class_labels": null}
        return {}, {}

    def check_class_labels(self, class_labels: list[int]) -> None:
        """Raises ValueError naming every label outside [0, num_classes)."""
        num_classes = self.model.config.num_classes
        bad = [c for c in class_labels if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"class labels {bad} are outside [0, {num_classes})")

    @torch.no_grad()
    def __call__(
        self,
        prompts: list[str] | None = None,
        *,
        class_labels: list[int] | None = None,
        negative_prompt: str | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        sampler: str | None = None,
        seed: int = 0,
        height: int | None = None,
        width: int | None = None,
        frames: int | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Generates one sample per prompt (or label). Sample i uses seed `seed + i`, so results do not depend on
        how the prompts are batched.

        Returns:
            (B, 3, F, H, W) float32 pixels in [-1, 1] on the CPU.
        """
        cfg = self.config
        steps = cfg.steps if steps is None else steps
        cfg_scale = cfg.cfg_scale if cfg_scale is None else cfg_scale
        sampler_fn = get_sampler(sampler or cfg.sampler)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        req = self.request(height, width, frames)
        cond, uncond = self.conditioning(prompts, class_labels, negative_prompt)
        batch = len(prompts) if prompts else len(class_labels) if class_labels else 1
        model_fn = self.model if req.window_size is None else functools.partial(self.model, window_size=req.window_size)
        guided = (
            model_fn
            if cfg_scale == 1.0 or not uncond
            else ClassifierFreeGuidance(model_fn, scale=cfg_scale, uncond=uncond)
        )
        denoise = functools.partial(Denoiser(guided, self.schedule, self.prediction), **cond)
        timesteps = build_timesteps(self.schedule, steps, shift=shift_ratio(cfg, req.height, req.width, req.frames))
        device = next(self.model.parameters()).device
        noise = torch.cat(
            [torch.randn(1, *req.latent_shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(batch)]
        )
        latents = sampler_fn(denoise, noise.to(device), timesteps, progress=progress)
        pixels = self.vae.decode(latents.to(self.vae.dtype)).float().cpu()
        return pixels[:, :, : req.frames, : req.height, : req.width].clamp(-1, 1)


__all__ = ["SAMPLERS", "GenerationPipeline", "GenerationRequest", "make_schedule", "shift_ratio"]
