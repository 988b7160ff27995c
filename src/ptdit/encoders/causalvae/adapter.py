"""The CausalVAE behind ptdit's VAE interface: scaled latents, frame rule, loading from a folder or file.

Latents are scaled exactly where the reference scales them (docs/inference.md#the-released-pipeline): `encode`
returns the posterior
mean (or a sample) times 0.18215, `decode` divides by 0.18215 before anything else, ahead of the choice
between tiled and whole decoding. No shift and no per-channel statistics.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
from torch import Tensor

from ptdit.encoders.causalvae.config import CausalVAEConfig
from ptdit.encoders.causalvae.loading import find_weights_file, load_causalvae_model
from ptdit.encoders.causalvae.model import CausalVAEModel, posterior_mean_logvar
from ptdit.encoders.hub import MissingWeightsError, read_model_config
from ptdit.encoders.vae import VAE, CausalFrames

__all__ = ["LATENT_SCALE", "CausalVAE", "load_causalvae"]

LATENT_SCALE = 0.18215  # the reference's literal, applied in encode and decode (Stable Diffusion's VAE value)


def _check_5d(x: Tensor, channels: int, what: str) -> None:
    if x.ndim != 5 or x.shape[1] != channels:
        raise ValueError(f"{what} must have shape (B, {channels}, F, H, W), got {tuple(x.shape)}")


class CausalVAE(CausalFrames, VAE):
    """Open-Sora-Plan v1.2 CausalVAE: pixels (B, 3, F, H, W) <-> latents (B, 4, 1 + (F - 1) / 4, H / 8, W / 8).

    Factors follow the config (8 and 4 for the released one). Whether encode and decode tile follows the
    model's `use_tiling` (from the config; change it with `enable_tiling`). Inputs run in the weight dtype;
    outputs are float32.

    Args:
        model: the network (see `load_causalvae` to build it from weights).
    """

    def __init__(self, model: CausalVAEModel) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.latent_channels = model.config.latent_channels
        self.spatial_factor = model.config.spatial_factor
        self.temporal_factor = model.config.temporal_factor

    @property
    def use_tiling(self) -> bool:
        return self.model.use_tiling

    def enable_tiling(self, use_tiling: bool = True) -> None:
        """Tile (and chunk) inputs larger than one tile in `encode` and `decode`."""
        self.model.enable_tiling(use_tiling)

    @torch.no_grad()
    def encode(self, pixels: Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Encode pixels (B, 3, F, H, W) in [-1, 1] into scaled latents (B, 4, F', H / 8, W / 8) float32.

        Args:
            pixels: images (F = 1) or videos with F = 1 + 4k frames; H and W multiples of 8.
            sample: return a posterior sample (mean + std * noise) instead of the mean.
            generator: source of the noise for `sample=True` (noise drawn on its device, in the weight dtype).
        """
        _check_5d(pixels, 3, "pixels")
        self.latent_shape(*pixels.shape[2:])  # validates F, H, W
        moments = self.model.encode(pixels.to(device=self.device, dtype=self.dtype))
        mean, logvar = posterior_mean_logvar(moments)
        z = mean
        if sample:
            noise_device = generator.device if generator is not None else mean.device
            noise = torch.randn(mean.shape, generator=generator, device=noise_device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * noise.to(mean.device)
        return z.float() * LATENT_SCALE

    @torch.no_grad()
    def encode_distribution(self, pixels: Tensor) -> tuple[Tensor, Tensor | None]:
        """The scaled posterior (mean, std), each (B, 4, F', H / 8, W / 8) float32 (docs/data.md#feature-caches)."""
        _check_5d(pixels, 3, "pixels")
        self.latent_shape(*pixels.shape[2:])
        mean, logvar = posterior_mean_logvar(self.model.encode(pixels.to(device=self.device, dtype=self.dtype)))
        return mean.float() * LATENT_SCALE, torch.exp(0.5 * logvar.float()) * LATENT_SCALE

    @torch.no_grad()
    def decode(self, latents: Tensor, *, clamp: bool = False) -> Tensor:
        """Decode scaled latents (B, 4, F', Y, X) into pixels (B, 3, 1 + 4 (F' - 1), 8 Y, 8 X) float32.

        Args:
            latents: as returned by `encode` or a sampler.
            clamp: clamp to [-1, 1]. Off by default: the reference's decode does not clamp (its pipeline
                does, afterwards), and unclamped output keeps parity with it.
        """
        _check_5d(latents, self.latent_channels, "latents")
        z = (latents.to(self.device).float() / LATENT_SCALE).to(self.dtype)
        pixels = self.model.decode(z).float()
        return pixels.clamp(-1.0, 1.0) if clamp else pixels


def load_causalvae(
    path: str | os.PathLike[str],
    *,
    config: CausalVAEConfig | None = None,
    weights_key: str | None = "auto",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    use_tiling: bool | None = None,
) -> CausalVAE:
    """Load a CausalVAE from a folder (`config.json` + one weights file) or from a weights file.

    Args:
        path: a folder, or a `.safetensors` / `.ckpt` / `.pt` / `.pth` file.
        config: the architecture; default: `config.json` in the folder (or next to the file).
        weights_key: nesting of the state dict in a pickle (see `load_causalvae_model`; default "auto":
            `model`, then `state_dict`, then `ema_state_dict`, as the reference pipeline's loader).
        dtype: weight dtype, e.g. torch.bfloat16 as in the released pipeline; read straight into it.
        device: device for the weights.
        use_tiling: override the config's `use_tiling`.

    Raises:
        MissingWeightsError: if there is no config.json (and no `config`) or no weights file.
        ValueError: for unreadable or mismatching weights (see `load_causalvae_model`).
    """
    path = Path(path).expanduser()
    folder = path if path.is_dir() else path.parent
    if not path.exists():
        raise MissingWeightsError(f"no CausalVAE folder or weights file at {str(path)!r}")
    if config is None:
        config = CausalVAEConfig.from_dict(read_model_config(folder))
    if use_tiling is not None:
        config = dataclasses.replace(config, use_tiling=use_tiling)
    weights = find_weights_file(folder) if path.is_dir() else path
    model = load_causalvae_model(config, weights, weights_key=weights_key, dtype=dtype, device=device)
    return CausalVAE(model)
