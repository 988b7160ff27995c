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
from ptdit.recipe import Conditioning, build_objective, conditioning_for, get_task, resolve_window
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

    def __init__(
        self,
        model: nn.Module | None,
        config: PipelineConfig,
        vae: Any,
        text_encoder: Any | None = None,
        *,
        model_config: Any | None = None,
    ) -> None:
        if model is None and model_config is None:
            raise ValueError("give the network, or its config (model_config=) to load the network later")
        self.model = model
        self.model_config = model.config if model is not None else model_config
        self.config = config
        self.vae = vae
        self.text_encoder = text_encoder
        self.objective = build_objective(config, spatial_factor=vae.spatial_factor, temporal_factor=vae.temporal_factor)
        self.schedule = self.objective.schedule
        self.prediction = self.objective.prediction
        self.kind = get_task(config.task).conditioning
        self._loaders: dict[str, Any] = {}
        self._check_text_encoder()

    def _check_text_encoder(self) -> None:
        model_text_dim = getattr(self.model_config, "context_dim", None)
        encoder = self.text_encoder
        if encoder is not None and model_text_dim is not None and encoder.dim != model_text_dim:
            raise ValueError(
                f"text encoder width {encoder.dim} does not match the model's context_dim {model_text_dim}"
            )

    @property
    def conditioner(self) -> Conditioning:
        """The conditioning strategy (`ptdit.recipe`) over the current text encoder."""
        if self.kind == "text" and self.text_encoder is None:
            raise ValueError(
                f"this {self.config.task} pipeline has no text encoder loaded: call load_text_encoder(), or pass "
                "conditions=(cond, uncond) encoded earlier"
            )
        num_classes = getattr(self.model_config, "num_classes", None)
        return conditioning_for(self.kind, text_encoder=self.text_encoder, num_classes=num_classes)

    # ------------------------------------------------------------------------------------------------------------
    # Loading (one large component at a time, if wanted: see `ptdit.cli.sample`)
    # ------------------------------------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike[str],
        *,
        weights: str | None = None,
        text_encoder: str | None = None,
        vae: str | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        text_encoder_dtype: torch.dtype = torch.float32,
        load: tuple[str, ...] = ("model", "text_encoder"),
    ) -> GenerationPipeline:
        """Loads network, VAE and text encoder named by the checkpoint's config.json (overridable).

        `weights` defaults to `ema.safetensors` when the folder has one (training checkpoints), else
        `model.safetensors`. The network and VAE are read straight into `dtype` (None: bf16 where it is measured
        faster for this network on this device, else fp32: `ptdit.precision.auto_precision`); the text encoder stays in
        float32 (the reference runs T5 in float32) unless `text_encoder_dtype` says otherwise. The VAE is always
        loaded (it decides the sizes); the network and text encoder only when named in `load`: the others load
        later with `load_model()` / `load_text_encoder()` and are freed with `release(name)`.
        """
        from ptdit.config import config_from_dict
        from ptdit.encoders import load_text_encoder as load_text
        from ptdit.encoders import load_vae
        from ptdit.models.registry import check_model_weights, load_model, read_checkpoint_config
        from ptdit.precision import auto_precision, torch_dtype

        folder = resolve_checkpoint(checkpoint)
        data = read_checkpoint_config(folder)
        config = PipelineConfig.from_dict(data.get("pipeline") or {})
        model_config = config_from_dict(data["model"])
        if dtype is None:
            dtype = torch_dtype(auto_precision(model_config.dim, device, "inference"))
        if weights is None:
            weights = "ema.safetensors" if (folder / "ema.safetensors").is_file() else "model.safetensors"

        def resolve(name: str | None) -> str | None:
            # Encoders stored inside the checkpoint folder are named relative to it.
            return str(folder / name) if name and (folder / name).is_dir() else name

        loaders = {
            "model": lambda: load_model(folder, device=device, dtype=dtype, weights=weights),
            "text_encoder": lambda: load_text(
                text_encoder or resolve(config.text_encoder),
                max_length=config.text_max_length,
                device=device,
                dtype=text_encoder_dtype,
            ),
        }
        if get_task(config.task).conditioning != "text":
            loaders.pop("text_encoder")
        if "model" not in load:
            check_model_weights(folder, weights)  # a damaged file fails now, not after the text encoder ran
        pipe = cls(
            None, config, load_vae(vae or resolve(config.vae), device=device, dtype=dtype), model_config=model_config
        )
        pipe._loaders = loaders
        for name in load:
            if name in loaders:
                getattr(pipe, f"load_{name}")()
        return pipe

    def load_model(self) -> nn.Module:
        """Loads the network (if not loaded) from the checkpoint this pipeline came from."""
        if self.model is None:
            self.model = self._load("model")
        return self.model

    def load_text_encoder(self) -> Any:
        """Loads the text encoder (if not loaded) named by the checkpoint."""
        if self.text_encoder is None:
            self.text_encoder = self._load("text_encoder")
            self._check_text_encoder()
        return self.text_encoder

    def _load(self, name: str) -> Any:
        if name not in self._loaders:
            raise ValueError(f"this pipeline was not made by from_checkpoint, so it cannot load its {name}")
        return self._loaders[name]()

    def release(self, name: str) -> None:
        """Frees a loaded component ("model" or "text_encoder") and hands its memory back."""
        if name not in ("model", "text_encoder"):
            raise ValueError(f"can release 'model' or 'text_encoder', not {name!r}")
        setattr(self, name, None)
        free_memory()

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
        channels = self.model_config.in_channels
        if self.vae.latent_channels != channels:
            raise ValueError(f"the VAE gives {self.vae.latent_channels} latent channels, the model takes {channels}")
        self._check_pixel_size(height, width)
        latent_f, latent_h, latent_w = self.vae.latent_shape(frames, height, width)  # names valid frame counts
        shape = (1, channels, latent_f, latent_h, latent_w)
        return GenerationRequest(height, width, frames, shape[1:], self._window(shape))

    def _check_pixel_size(self, height: int, width: int) -> None:
        """Pixels must be whole patches of latents; any window works, padded where it does not tile
        (docs/architecture.md#padding-and-masking)."""
        step = self.vae.spatial_factor * self.model_config.patch_size
        for name, value in (("height", height), ("width", width)):
            if value % step:
                raise ValueError(
                    f"{name} {value} does not fit this model: it must be a multiple of {step} (VAE x"
                    f"{self.vae.spatial_factor}, patch {self.model_config.patch_size}); nearest valid: "
                    f"{nearest_multiples(value, step)}"
                )

    def _window(self, latent_shape: tuple[int, ...]) -> tuple[int, int, int] | None:
        return resolve_window(
            latent_shape, model_config=self.model_config, task=self.config.task, window=self.config.window_size
        )

    # ------------------------------------------------------------------------------------------------------------
    # Generation
    # ------------------------------------------------------------------------------------------------------------

    def conditioning(
        self, prompts: list[str] | None, class_labels: list[int] | None, negative_prompt: str | None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(cond, uncond) keyword arguments for the network."""
        if self.kind == "none":
            return {}, {}
        conditioner, device = self.conditioner, self.device
        inputs = prompts if self.kind == "text" else class_labels
        neg = self.config.negative_prompt if negative_prompt is None else negative_prompt
        return conditioner.encode(inputs or [], device), conditioner.null(device, neg)

    @property
    def device(self) -> torch.device:
        """Where the network runs (the VAE's device while the network is not loaded)."""
        if self.model is not None:
            return next(self.model.parameters()).device
        return self.vae.device

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
        latents: torch.Tensor | None = None,
        conditions: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Generates one sample per prompt (or label). Sample i uses seed `seed + i`, so results do not depend on
        how the prompts are batched.

        Args:
            latents: (B, C, F', H', W') initial noise to start from instead of drawing it from the seeds
                (diffusers-style reproducibility hook).
            conditions: (cond, uncond) network keyword arguments computed earlier (`conditioning`), instead
                of encoding `prompts` / `class_labels` here.

        Returns:
            (B, 3, F, H, W) float32 pixels in [-1, 1] on the CPU.
        """
        req = self.request(height, width, frames)
        final = self.sample_latents(
            prompts, class_labels=class_labels, negative_prompt=negative_prompt, steps=steps, cfg_scale=cfg_scale,
            sampler=sampler, seed=seed, request=req, latents=latents, conditions=conditions, progress=progress,
        )  # fmt: skip
        return self.decode(final, req)

    @torch.no_grad()
    def sample_latents(
        self,
        prompts: list[str] | None = None,
        *,
        class_labels: list[int] | None = None,
        negative_prompt: str | None = None,
        steps: int | None = None,
        cfg_scale: float | None = None,
        sampler: str | None = None,
        seed: int = 0,
        request: GenerationRequest | None = None,
        latents: torch.Tensor | None = None,
        conditions: tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]] | None = None,
        num_samples: int | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """The denoised latents (B, C, F', H', W') for `__call__`'s arguments, before VAE decoding."""
        cfg = self.config
        steps = cfg.steps if steps is None else steps
        cfg_scale = cfg.cfg_scale if cfg_scale is None else cfg_scale
        sampler_fn = get_sampler(sampler or cfg.sampler)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        req = request or self.request()
        cond, uncond = conditions or self.conditioning(prompts, class_labels, negative_prompt)
        batch = len(prompts) if prompts else len(class_labels) if class_labels else 1
        if conditions is not None:
            batch = next(iter(cond.values())).shape[0] if cond else num_samples or 1
        model = self.load_model() if self.model is None else self.model
        model_fn = model if req.window_size is None else functools.partial(model, window_size=req.window_size)
        guided = (
            model_fn
            if cfg_scale == 1.0 or not uncond
            else ClassifierFreeGuidance(model_fn, scale=cfg_scale, uncond=uncond)
        )
        denoise = functools.partial(Denoiser(guided, self.schedule, self.prediction), **cond)
        timesteps = build_timesteps(
            self.schedule, steps, shift=self.objective.shift_ratio(req.height, req.width, req.frames)
        )
        device = self.device
        noise = self.initial_noise(req, batch, seed) if latents is None else self._check_latents(latents, req, batch)
        return sampler_fn(denoise, noise.to(device), timesteps, progress=progress)

    @staticmethod
    def initial_noise(req: GenerationRequest, batch: int, seed: int) -> torch.Tensor:
        """(B, C, F', H', W') standard normal noise; sample i from Generator(seed + i)."""
        return torch.cat(
            [torch.randn(1, *req.latent_shape, generator=torch.Generator().manual_seed(seed + i)) for i in range(batch)]
        )

    @staticmethod
    def _check_latents(latents: torch.Tensor, req: GenerationRequest, batch: int) -> torch.Tensor:
        expected = (batch, *req.latent_shape)
        if tuple(latents.shape) != expected:
            raise ValueError(
                f"latents have shape {tuple(latents.shape)}, expected {expected} (batch, channels, latent frames, "
                f"latent height, latent width) for {req.frames} frame(s) of {req.height}x{req.width}"
            )
        if not latents.is_floating_point() or not torch.isfinite(latents).all():
            raise ValueError("latents must be finite floating-point values")
        return latents.float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, req: GenerationRequest | None = None) -> torch.Tensor:
        """Latents (B, C, F', H', W') -> (B, 3, F, H, W) float32 pixels in [-1, 1] on the CPU."""
        req = req or self.request()
        pixels = self.vae.decode(latents.to(self.vae.dtype)).float().cpu()
        return pixels[:, :, : req.frames, : req.height, : req.width].clamp(-1, 1)


__all__ = ["SAMPLERS", "GenerationPipeline", "GenerationRequest", "resolve_checkpoint"]


def free_memory() -> None:
    """Collects garbage and hands freed heap pages back to the OS (glibc), so a freed component's memory is
    available to the next stage rather than kept by the allocator."""
    import gc

    from ptdit.allocator import glibc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc = glibc()
    if libc is not None:  # not glibc: nothing to hand back
        libc.malloc_trim(0)
