"""Autoencoders mapping pixels to the latents PT-DiT works on, and back.

Every adapter takes and returns 5-D tensors `B C F H W` (F = 1 for images, views count as frames), with
pixels in [-1, 1] and latents already normalised for the diffusion model:

* `IdentityVAE`: pixel space, no weights (latents = pixels, factors 1, 3 channels), for small models.
* `PackVAE` ("pack-t4", "pack-t8-s2", ...): pixel space packed losslessly, t frames x s x s pixels per latent
  position, no weights (docs/decisions.md#packed-pixel-latents).
* `ImageVAE`: a diffusers `AutoencoderKL`
  (e.g. SD-VAE, docs/decisions.md#s-class-vae-and-objective: f8, 4 channels, scale 0.18215); latents =
  (z - shift_factor) * scaling_factor. Videos are encoded and decoded frame by frame: this is the per-frame 2D fallback
  for video.
* `VideoVAE`: a diffusers `AutoencoderKLWan` (causal 3D VAE, 8x spatial and 4x temporal compression as
  docs/architecture.md#video-and-multi-view assumes); latents = (z - latents_mean) / latents_std per channel when the
  config has them, identity otherwise. Frames follow the causal rule F' = 1 + (F - 1) / 4.
* `CausalVAE` (`ptdit.encoders.causalvae`): the Open-Sora-Plan v1.2 CausalVAE of the released Qihoo-T2X
  pipeline, native (no diffusers); latents = posterior mean * 0.18215, frames F' = 1 + (F - 1) / 4, tiled
  decoding as the reference. Chosen when config.json has `_class_name` "CausalVAEModel".

diffusers is imported lazily inside `load_vae` (the `[hub]` extra).

Shape legend: B batch, C channels (3 for pixels), F / F' pixel / latent frames, H / W pixel rows / cols,
Y / X latent rows / cols.
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn

from ptdit.encoders.hub import ResolvedModel, missing_weights_error, resolve_model
from ptdit.optional import available, require

__all__ = [
    "VAE",
    "VAE_ALIASES",
    "CausalFrames",
    "IdentityVAE",
    "ImageVAE",
    "PackVAE",
    "VideoVAE",
    "causal_latent_frames",
    "load_vae",
]

# Short names -> (hub id, subfolder). Only used when the name is not a local folder.
VAE_ALIASES: dict[str, tuple[str, str | None]] = {
    "sd-vae-ema": ("stabilityai/sd-vae-ft-ema", None),
    "sd-vae-mse": ("stabilityai/sd-vae-ft-mse", None),
    "wan2.1": ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "vae"),
    "opensora-plan-v1.2": ("LanguageBind/Open-Sora-Plan-v1.2.0", "vae"),  # the released Qihoo-T2X VAE
}
_IMAGE_CLASSES = ("AutoencoderKL",)
_VIDEO_CLASSES = ("AutoencoderKLWan",)


def causal_latent_frames(frames: int, temporal_factor: int, *, strict: bool = True) -> int:
    """The causal video VAE's frame rule: F' = 1 + (F - 1) / t (the first frame is encoded alone).

    Args:
        frames: pixel frames F (1 for an image).
        temporal_factor: the VAE's temporal compression t.
        strict: require F - 1 to be a multiple of t, as encoding does. With strict=False, other counts round up
            the way the reference pipeline sizes its latents (96 frames -> 24 latent frames: ceil(F / t) for an
            even F, ceil((F - 1) / t) + 1 for an odd one), which is how the paper quotes video sizes.
    """
    t = temporal_factor
    if strict and (frames < 1 or (frames - 1) % t):
        below = 1 + max(frames - 1, 0) // t * t
        nearest = f"{below}" if frames < 1 else f"{below} or {below + t}"
        raise ValueError(
            f"frames must be 1 + a multiple of {t} for this causal video VAE (1, {1 + t}, {1 + 2 * t}, ...), "
            f"got {frames}; nearest valid: {nearest}"
        )
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if strict:
        return 1 + (frames - 1) // t
    if frames % 2 == 0:
        return -(-frames // temporal_factor)
    return -(-(frames - 1) // temporal_factor) + 1


def _check_5d(x: Tensor, channels: int, what: str) -> None:
    """Raise a ValueError unless x is (B, channels, F, H, W)."""
    if x.ndim != 5 or x.shape[1] != channels:
        raise ValueError(f"{what} must have shape (B, {channels}, F, H, W), got {tuple(x.shape)}")


class VAE(nn.Module):
    """Common interface of the autoencoders: 5-D pixels in [-1, 1] <-> normalised 5-D latents.

    Attributes:
        latent_channels: C of the latents.
        spatial_factor: pixel rows (and cols) per latent row (col).
        temporal_factor: pixel frames per latent frame (1 for image and identity VAEs).
    """

    latent_channels: int
    spatial_factor: int
    temporal_factor: int

    def encode(self, pixels: Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Encode pixels (B, 3, F, H, W) in [-1, 1] into normalised latents (B, C, F', Y, X) float32."""
        raise NotImplementedError

    def decode(self, latents: Tensor) -> Tensor:
        """Decode normalised latents (B, C, F', Y, X) into pixels (B, 3, F, H, W) float32 in [-1, 1]."""
        raise NotImplementedError

    def encode_distribution(self, pixels: Tensor) -> tuple[Tensor, Tensor | None]:
        """The normalised posterior (mean, std), each (B, C, F', Y, X) float32; std None for a deterministic
        autoencoder. Feature caches store both, so training still samples latents (docs/data.md#feature-caches)."""
        return self.encode(pixels), None

    @property
    def device(self) -> torch.device:
        """Device of the weights (CPU for weightless VAEs)."""
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the weights (float32 for weightless VAEs)."""
        param = next(self.parameters(), None)
        return param.dtype if param is not None else torch.float32

    def latent_frames(self, frames: int) -> int:
        """Latent frames for a pixel frame count (identity unless the VAE compresses time)."""
        if frames < 1:
            raise ValueError(f"frames must be positive, got {frames}")
        return frames

    def pixel_frames(self, latent_frames: int) -> int:
        """Pixel frames decoded from a latent frame count."""
        if latent_frames < 1:
            raise ValueError(f"latent_frames must be positive, got {latent_frames}")
        return latent_frames

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Map a pixel size (F, H, W) to the latent size (F', Y, X).

        Raises:
            ValueError: if H or W is not divisible by `spatial_factor` or F does not fit the temporal rule.
        """
        s = self.spatial_factor
        if height % s or width % s or height < 1 or width < 1:
            raise ValueError(f"height and width must be positive multiples of {s}, got {height}x{width}")
        return self.latent_frames(frames), height // s, width // s

    def pixel_shape(self, latent_frames: int, latent_height: int, latent_width: int) -> tuple[int, int, int]:
        """Map a latent size (F', Y, X) to the decoded pixel size (F, H, W)."""
        if latent_height < 1 or latent_width < 1:
            raise ValueError(f"latent size must be positive, got {latent_height}x{latent_width}")
        s = self.spatial_factor
        return self.pixel_frames(latent_frames), latent_height * s, latent_width * s

    def extra_repr(self) -> str:
        return (
            f"latent_channels={self.latent_channels}, spatial_factor={self.spatial_factor}, "
            f"temporal_factor={self.temporal_factor}"
        )


class IdentityVAE(VAE):
    """Pixel-space "autoencoder": latents are the pixels (3 channels, factors 1), no weights."""

    latent_channels = 3
    spatial_factor = 1
    temporal_factor = 1

    def encode(self, pixels: Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Return the pixels (B, 3, F, H, W) as float32 latents; `sample` and `generator` are ignored."""
        _check_5d(pixels, 3, "pixels")
        return pixels.float()

    def decode(self, latents: Tensor) -> Tensor:
        """Return the latents (B, 3, F, H, W) as float32 pixels, unclamped so the round trip is exact."""
        _check_5d(latents, 3, "latents")
        return latents.float()


class PackVAE(VAE):
    """Lossless space-time packing (docs/decisions.md#packed-pixel-latents): every t frames x s x s pixels of a
    clip become the 3 t s^2 channels of one latent position, with no weights.

    It plays the part of a video VAE's compression (the paper's CausalVAE packs 4 frames into one latent frame)
    for small pixel-space models: a token then carries its pixels' motion over t frames. Not causal: F' = F / t.
    Channel order (pt, ps, qs, c): frame within the group, row within the block, column within the block, RGB.
    """

    def __init__(self, temporal_factor: int = 4, spatial_factor: int = 1) -> None:
        super().__init__()
        for name, value in (("temporal_factor", temporal_factor), ("spatial_factor", spatial_factor)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"PackVAE {name} must be an int >= 1, got {value!r}")
        self.temporal_factor, self.spatial_factor = temporal_factor, spatial_factor
        self.latent_channels = 3 * temporal_factor * spatial_factor**2

    def latent_frames(self, frames: int) -> int:
        """F' = F / t; raises ValueError naming the nearest valid frame counts otherwise."""
        t = self.temporal_factor
        if frames < 1 or frames % t:
            below = frames - frames % t
            nearest = f"{t}" if below < t else f"{below} or {below + t}"
            raise ValueError(
                f"frames must be a multiple of {t} for {self.name}, got {frames}; nearest valid: {nearest}"
            )
        return frames // t

    def pixel_frames(self, latent_frames: int) -> int:
        """F = F' t."""
        return super().pixel_frames(latent_frames) * self.temporal_factor

    @property
    def name(self) -> str:
        """The `pipeline.vae` name that loads this packing."""
        return f"pack-t{self.temporal_factor}-s{self.spatial_factor}"

    def encode(self, pixels: Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """(B, 3, F, H, W) pixels -> (B, 3 t s^2, F / t, H / s, W / s) float32 latents; `sample` is ignored."""
        _check_5d(pixels, 3, "pixels")
        self.latent_shape(*pixels.shape[2:])  # names the valid sizes
        t, s = self.temporal_factor, self.spatial_factor
        return rearrange(pixels.float(), "b c (f pt) (y ps) (x qs) -> b (pt ps qs c) f y x", pt=t, ps=s, qs=s)

    def decode(self, latents: Tensor) -> Tensor:
        """The exact inverse of `encode` (unclamped, so the round trip is exact)."""
        _check_5d(latents, self.latent_channels, "latents")
        t, s = self.temporal_factor, self.spatial_factor
        return rearrange(latents.float(), "b (pt ps qs c) f y x -> b c (f pt) (y ps) (x qs)", pt=t, ps=s, qs=s)


def parse_pack_vae(name: str) -> PackVAE | None:
    """ "pack-t4", "pack-s2", "pack-t4-s2" -> PackVAE (omitted factors are 1); None for any other name."""
    match = re.fullmatch(r"pack(?:-t(\d+))?(?:-s(\d+))?", name)
    if match is None or name == "pack":
        return None
    return PackVAE(int(match.group(1) or 1), int(match.group(2) or 1))


class _DiffusersVAE(VAE):
    """Shared part of the diffusers adapters: the wrapped model and per-channel latent normalisation.

    Latents are `(z - shift_C) * scale_C`, computed in float32; the two (C,) vectors are buffers so that
    `.to(device)` moves them with the model.
    """

    def __init__(self, model: nn.Module, shift: list[float] | float, scale: list[float] | float, channels: int):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.latent_channels = channels
        shift_C = torch.as_tensor(shift, dtype=torch.float32).flatten().expand(channels).clone()
        scale_C = torch.as_tensor(scale, dtype=torch.float32).flatten().expand(channels).clone()
        self.register_buffer("shift", shift_C.view(1, channels, 1, 1, 1), persistent=False)
        self.register_buffer("scale", scale_C.view(1, channels, 1, 1, 1), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def normalize(self, z: Tensor) -> Tensor:
        """Raw VAE latents (B, C, F', Y, X) -> model latents, float32."""
        return (z.float() - self.shift.float()) * self.scale.float()

    def denormalize(self, latents: Tensor) -> Tensor:
        """Model latents (B, C, F', Y, X) -> raw VAE latents, in the VAE dtype."""
        return (latents.float() / self.scale.float() + self.shift.float()).to(self.dtype)

    def _moments(self, dist: Any) -> Tensor:
        """The posterior's mean and std, concatenated over channels (so frame-wise helpers carry both)."""
        return torch.cat([dist.mean, dist.std], dim=1)

    def _split_moments(self, moments: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = moments.float().chunk(2, dim=1)
        return self.normalize(mean), std * self.scale.float()

    def _posterior_latents(self, dist: Any, sample: bool, generator: torch.Generator | None) -> Tensor:
        """Mean (default, deterministic) or a sample of the diagonal Gaussian posterior."""
        return dist.sample(generator=generator) if sample else dist.mode()


class ImageVAE(_DiffusersVAE):
    """A diffusers `AutoencoderKL`, applied frame by frame.

    Latent normalisation as in diffusers pipelines: `(z - shift_factor) * scaling_factor` (shift None -> 0),
    or, when the config has per-channel `latents_mean` / `latents_std` (SDXL-style),
    `(z - mean) * scaling_factor / std`.

    Args:
        model: the `AutoencoderKL`.
        frame_chunk: how many frames (over the whole batch) go through the VAE at once; None = all. Lower it
            to bound memory when encoding or decoding long videos frame by frame.
    """

    temporal_factor = 1

    def __init__(self, model: nn.Module, *, frame_chunk: int | None = None) -> None:
        config = model.config
        channels = int(config.latent_channels)
        scaling = float(config.scaling_factor)
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            shift: list[float] | float = list(mean)
            scale: list[float] | float = [scaling / s for s in std]
        else:
            shift = float(config.shift_factor) if config.shift_factor is not None else 0.0
            scale = scaling
        super().__init__(model, shift, scale, channels)
        self.spatial_factor = 2 ** (len(config.block_out_channels) - 1)
        if frame_chunk is not None and frame_chunk < 1:
            raise ValueError(f"frame_chunk must be positive or None, got {frame_chunk}")
        self.frame_chunk = frame_chunk

    def _per_frame(self, fn: Any, x_BCFHW: Tensor) -> Tensor:
        """Apply a 4-D function to every frame: (B, C, F, H, W) -> (B, C', F, H', W')."""
        b, c, f, h, w = x_BCFHW.shape
        x_NCHW = x_BCFHW.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        chunk = self.frame_chunk or x_NCHW.shape[0]
        y_NCHW = torch.cat([fn(part) for part in x_NCHW.split(chunk)], dim=0)
        return y_NCHW.reshape(b, f, *y_NCHW.shape[1:]).permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def encode(self, pixels: Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Encode pixels (B, 3, F, H, W) in [-1, 1] into latents (B, C, F, H/s, W/s) float32.

        Args:
            pixels: images (F = 1) or videos, encoded frame by frame.
            sample: draw from the posterior instead of taking its mean.
            generator: random generator for `sample=True`.
        """
        _check_5d(pixels, int(self.model.config.in_channels), "pixels")
        self.latent_shape(pixels.shape[2], pixels.shape[3], pixels.shape[4])  # validates H, W
        pixels = pixels.to(device=self.device, dtype=self.dtype)

        def encode_frames(x: Tensor) -> Tensor:
            return self._posterior_latents(self.model.encode(x).latent_dist, sample, generator)

        return self.normalize(self._per_frame(encode_frames, pixels))

    @torch.no_grad()
    def encode_distribution(self, pixels: Tensor) -> tuple[Tensor, Tensor | None]:
        _check_5d(pixels, int(self.model.config.in_channels), "pixels")
        self.latent_shape(pixels.shape[2], pixels.shape[3], pixels.shape[4])
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        return self._split_moments(self._per_frame(lambda x: self._moments(self.model.encode(x).latent_dist), pixels))

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Decode latents (B, C, F, Y, X) into pixels (B, 3, F, Y*s, X*s) float32, clamped to [-1, 1]."""
        _check_5d(latents, self.latent_channels, "latents")
        z = self.denormalize(latents.to(self.device))
        pixels = self._per_frame(lambda x: self.model.decode(x).sample, z)
        return pixels.float().clamp(-1.0, 1.0)


class CausalFrames:
    """The frame rule of causal video VAEs (docs/decisions.md#latent-frame-rule), mixed into their adapters:
    the first frame is encoded alone, then every `temporal_factor` frames give one latent frame."""

    temporal_factor: int

    def latent_frames(self, frames: int) -> int:
        """F' = 1 + (F - 1) / t; raises ValueError naming the nearest valid frame counts otherwise."""
        return causal_latent_frames(frames, self.temporal_factor)

    def pixel_frames(self, latent_frames: int) -> int:
        """F = 1 + (F' - 1) t."""
        if latent_frames < 1:
            raise ValueError(f"latent_frames must be positive, got {latent_frames}")
        return 1 + (latent_frames - 1) * self.temporal_factor


class VideoVAE(CausalFrames, _DiffusersVAE):
    """A diffusers `AutoencoderKLWan` (causal 3D VAE).

    The first frame is encoded alone and every following group of `temporal_factor` frames becomes one
    latent frame, so F pixel frames need (F - 1) % temporal_factor == 0 and give 1 + (F - 1) /
    temporal_factor latent frames (F = 1 is an image).

    Args:
        model: the `AutoencoderKLWan`.
    """

    def __init__(self, model: nn.Module) -> None:
        config = model.config
        channels = int(config.z_dim)
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            if len(mean) != channels or len(std) != channels:
                raise ValueError(
                    f"latents_mean / latents_std have {len(mean)} / {len(std)} values, expected z_dim={channels}"
                )
            shift: list[float] | float = list(mean)
            scale: list[float] | float = [1.0 / s for s in std]
        else:
            shift, scale = 0.0, 1.0
        super().__init__(model, shift, scale, channels)
        patch = int(config.patch_size or 1)  # Wan 2.2 pixel-unshuffles by patch_size before the encoder
        self.spatial_factor = 2 ** (len(config.dim_mult) - 1) * patch
        self.temporal_factor = 2 ** sum(bool(d) for d in config.temperal_downsample)

    @torch.no_grad()
    def encode(self, pixels: Tensor, *, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """Encode pixels (B, 3, F, H, W) in [-1, 1] into latents (B, C, 1 + (F-1)/t, H/s, W/s) float32.

        Args:
            pixels: videos (or images with F = 1).
            sample: draw from the posterior instead of taking its mean.
            generator: random generator for `sample=True`.
        """
        _check_5d(pixels, int(self.model.config.in_channels), "pixels")
        self.latent_shape(*pixels.shape[2:])  # validates F, H, W
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        z = self._posterior_latents(self.model.encode(pixels).latent_dist, sample, generator)
        return self.normalize(z)

    @torch.no_grad()
    def encode_distribution(self, pixels: Tensor) -> tuple[Tensor, Tensor | None]:
        _check_5d(pixels, int(self.model.config.in_channels), "pixels")
        self.latent_shape(*pixels.shape[2:])
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        return self._split_moments(self._moments(self.model.encode(pixels).latent_dist))

    @torch.no_grad()
    def decode(self, latents: Tensor, *, per_frame: bool = False) -> Tensor:
        """Decode latents (B, C, F', Y, X) into pixels float32 in [-1, 1].

        Args:
            latents: normalised latents.
            per_frame: decode every latent frame on its own as an image (1 pixel frame per latent frame,
                F = F'): a cheap, low-memory preview that ignores the temporal upsampling.

        Returns:
            (B, 3, 1 + (F'-1)*t, Y*s, X*s), or (B, 3, F', Y*s, X*s) with `per_frame`.
        """
        _check_5d(latents, self.latent_channels, "latents")
        z = self.denormalize(latents.to(self.device))
        if per_frame:
            pixels = torch.cat([self.model.decode(z_f).sample for z_f in z.split(1, dim=2)], dim=2)
        else:
            pixels = self.model.decode(z).sample
        return pixels.float().clamp(-1.0, 1.0)


# ------------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------------


def load_vae(
    name_or_path: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    subfolder: str | None = None,
    frame_chunk: int | None = None,
) -> VAE:
    """Load an autoencoder: "identity", "pack-tT-sS", a local folder, a hub id, or an alias from `VAE_ALIASES`.

    The adapter class follows the `_class_name` in the model's config.json (`AutoencoderKL` -> ImageVAE,
    `AutoencoderKLWan` -> VideoVAE). Local folders are used first; hub ids are looked up in the local
    cache only when `HF_HUB_OFFLINE` is set.

    Args:
        name_or_path: "identity", "pack-tT-sS" (`PackVAE`), a folder, a hub id or an alias.
        device: device for the weights.
        dtype: weight dtype (latents and decoded pixels are returned as float32 regardless).
        subfolder: folder of the VAE inside `name_or_path` (e.g. "vae" in a pipeline repository).
        frame_chunk: frames per VAE call for `ImageVAE` on videos (None = all at once).

    Returns:
        The VAE in eval mode.

    Raises:
        MissingWeightsError: if the weights cannot be found locally (or downloaded when online).
        ValueError: if the config names an unsupported autoencoder class.
        ImportError: if diffusers is not installed.
    """
    name = os.fspath(name_or_path)
    if name == "identity":
        return IdentityVAE()
    if (packed := parse_pack_vae(name)) is not None:
        return packed
    if not os.path.isdir(os.path.expanduser(name)) and name in VAE_ALIASES:
        name, alias_subfolder = VAE_ALIASES[name]
        subfolder = subfolder if subfolder is not None else alias_subfolder
    resolved = resolve_model(name, what="VAE", subfolder=subfolder)
    from ptdit.encoders.causalvae.config import CAUSALVAE_CLASS_NAMES, is_causalvae_config

    if is_causalvae_config(resolved.config):
        return _load_causalvae(resolved, device=device, dtype=dtype)
    class_name = resolved.config.get("_class_name")
    if class_name not in _IMAGE_CLASSES + _VIDEO_CLASSES:
        raise ValueError(
            f"{name!r} is a {class_name!r} (config.json _class_name); supported VAEs: "
            f"{list(_IMAGE_CLASSES + _VIDEO_CLASSES + CAUSALVAE_CLASS_NAMES)} or 'identity'"
        )
    diffusers = require("diffusers", "hub")
    kwargs = resolved.from_pretrained_kwargs()
    kwargs["torch_dtype"] = dtype  # at load time: a later .to(dtype) makes diffusers warn about fp32 modules
    # Without accelerate, diffusers warns that it falls back to low_cpu_mem_usage=False; ask for it directly.
    kwargs["low_cpu_mem_usage"] = available("accelerate")
    try:
        model = getattr(diffusers, class_name).from_pretrained(resolved.source, **kwargs)
    except OSError as exc:  # diffusers reports missing or unreadable weight files as OSError
        raise missing_weights_error(resolved, "VAE", exc) from exc
    model.to(device=device)
    vae: VAE = ImageVAE(model, frame_chunk=frame_chunk) if class_name in _IMAGE_CLASSES else VideoVAE(model)
    return vae.to(device)


def _load_causalvae(resolved: ResolvedModel, *, device: torch.device | str, dtype: torch.dtype) -> VAE:
    """The native CausalVAE from a local folder, or from the hub snapshot (cache only when offline)."""
    from ptdit.encoders.causalvae.adapter import load_causalvae

    if os.path.isdir(os.path.expanduser(resolved.source)):
        folder = os.path.join(os.path.expanduser(resolved.source), resolved.subfolder or "")
    else:
        hub = require("huggingface_hub", "hub")
        pattern = f"{resolved.subfolder}/*" if resolved.subfolder else None
        try:
            root = hub.snapshot_download(
                resolved.source, allow_patterns=pattern, local_files_only=resolved.local_files_only
            )
        except Exception as exc:  # offline cache misses and HTTP errors differ between huggingface_hub versions
            raise missing_weights_error(resolved, "VAE", exc) from exc
        folder = os.path.join(root, resolved.subfolder or "")
    return load_causalvae(folder, dtype=dtype, device=device)
