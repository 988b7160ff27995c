"""Generation pipeline: text (or label) encoding -> guided sampling -> VAE decoding.

Glue only: the network predicts, the schedule/denoiser converts, the sampler integrates, encoders encode.
Shape legend: B batch, C latent channels, F frames, H/W height/width, S text tokens, E text width.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ptdit.attention.window import nearest_multiples
from ptdit.config import PipelineConfig
from ptdit.diffusion.guidance import ClassifierFreeGuidance
from ptdit.diffusion.parameterization import Denoiser
from ptdit.models.registry import resolve_checkpoint
from ptdit.recipe import build_objective, conditioning_for, get_task, resolve_window, window_tiling
from ptdit.sampling.solvers import SAMPLERS, build_timesteps, get_sampler


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
        self.objective = build_objective(config, spatial_factor=vae.spatial_factor, temporal_factor=vae.temporal_factor)
        self.schedule = self.objective.schedule
        self.prediction = self.objective.prediction
        kind = get_task(config.task).conditioning
        if kind == "text" and text_encoder is None:
            raise ValueError(f"a {config.task} pipeline needs a text encoder")
        model_text_dim = getattr(model.config, "context_dim", None)
        if text_encoder is not None and model_text_dim is not None and text_encoder.dim != model_text_dim:
            raise ValueError(
                f"text encoder width {text_encoder.dim} does not match the model's context_dim {model_text_dim}"
            )
        self.conditioner = conditioning_for(
            kind, text_encoder=text_encoder, num_classes=getattr(model.config, "num_classes", None)
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
        if get_task(config.task).conditioning == "text":
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

    def _tokens_per_window(self) -> tuple[int, int, int]:
        """Window tiling in tokens (temporal, rows, cols) that sizes must be multiples of."""
        return window_tiling(self.model.config, task=self.config.task, window=self.config.window_size)

    def _check_pixel_size(self, height: int, width: int) -> None:
        rows, cols = self._tokens_per_window()[1:]
        step = self.vae.spatial_factor * self.model.config.patch_size
        for name, value, multiple in (("height", height, step * rows), ("width", width, step * cols)):
            if value % multiple:
                raise ValueError(
                    f"{name} {value} does not fit this model: it must be a multiple of {multiple} (VAE x"
                    f"{self.vae.spatial_factor}, patch {self.model.config.patch_size}, window grid); nearest valid: "
                    f"{nearest_multiples(value, multiple)}"
                )

    def _check_frames(self, frames: int, latent_frames: int) -> None:
        temporal = 1 if latent_frames == 1 else self._tokens_per_window()[0]
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
        return resolve_window(
            latent_shape, model_config=self.model.config, task=self.config.task, window=self.config.window_size
        )

    # ------------------------------------------------------------------------------------------------------------
    # Generation
    # ------------------------------------------------------------------------------------------------------------

    def conditioning(
        self, prompts: list[str] | None, class_labels: list[int] | None, negative_prompt: str | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(cond, uncond) keyword arguments for the network."""
        device = next(self.model.parameters()).device
        kind = self.conditioner.kind
        if kind == "none":
            return {}, {}
        inputs = prompts if kind == "text" else class_labels
        neg = self.config.negative_prompt if negative_prompt is None else negative_prompt
        return self.conditioner.encode(inputs or [], device), self.conditioner.null(device, neg)

    def check_class_labels(self, class_labels: list[int]) -> None:
        """Raises ValueError naming every label outside [0, num_classes)."""
        self.conditioner.check(class_labels)

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
        timesteps = build_timesteps(
            self.schedule, steps, shift=self.objective.shift_ratio(req.height, req.width, req.frames)
        )
        device = next(self.model.parameters()).device
        noise = torch.cat(
            [torch.randn(1, *req.latent_shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(batch)]
        )
        latents = sampler_fn(denoise, noise.to(device), timesteps, progress=progress)
        pixels = self.vae.decode(latents.to(self.vae.dtype)).float().cpu()
        return pixels[:, :, : req.frames, : req.height, : req.width].clamp(-1, 1)


__all__ = ["SAMPLERS", "GenerationPipeline", "GenerationRequest", "resolve_checkpoint"]
