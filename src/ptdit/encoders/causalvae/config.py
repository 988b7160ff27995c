"""Configuration of the Open-Sora-Plan v1.2 CausalVAE (docs/inference.md#the-released-pipeline), in the reference's
own vocabulary.

The reference builds its layers from strings ("ResnetBlock2D", "Spatial2xTime2x3DDownsample", ...), and both
its `config.json` (Open-Sora-Plan, `_class_name` "CausalVAEModel") and the Qihoo-T2X pipeline config (the
MindSpeed-MM `ae` section, `model_id` "casualvae") spell the architecture that way. We keep those names as a
closed set of choices, validated here, so a released config reads without translation.

Defaults are the VAE exactly as the released Qihoo-T2X pipeline configures it (239,189,991 parameters, 512 px
tiles, tiling on). They are not the reference constructor's defaults: those describe an older layout whose
temporal downsamplers cannot run in the reference (they call NPU-only kernels and read attributes they never
set), so a default-built reference model would not work.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

__all__ = ["CAUSALVAE_CLASS_NAMES", "CausalVAEConfig", "is_causalvae_config"]

# Layer names the reference accepts and that run there. The temporal resamplers "TimeDownsample2x",
# "TimeDownsampleRes2x" and "TimeUpsampleRes2x" are left out on purpose: in the reference they need torch_npu,
# read attributes they never set or crash on a shape mismatch, so no working model contains them.
# "TimeUpsample2x" (no parameters) is kept with Open-Sora-Plan v1.2's behaviour; MindSpeed-MM's port cannot
# construct it (its __init__ takes no channel arguments), so only Open-Sora-Plan configs can use it.
CONVS = ("Conv2d", "CausalConv3d")
RESNETS = ("ResnetBlock2D", "ResnetBlock3D")
# "AttnBlock3D" is MindSpeed-MM's name and "AttnBlock3DFix" Open-Sora-Plan's for the same per-frame attention
# (Open-Sora-Plan's own legacy "AttnBlock3D" mixed frames through a wrong reshape; nothing released uses it).
ATTENTIONS = ("AttnBlock3D", "AttnBlock3DFix")
DOWNSAMPLES = ("", "Downsample", "SpatialDownsample2x", "Spatial2xTime2x3DDownsample")
TIME_DOWNSAMPLES = ("",)
UPSAMPLES = ("", "SpatialUpsample2x", "Spatial2xTime2x3DUpsample")
TIME_UPSAMPLES = ("", "TimeUpsample2x")

CAUSALVAE_CLASS_NAMES = ("CausalVAEModel", "CausalVAE")
_MODEL_IDS = ("casualvae", "causalvae")  # MindSpeed-MM spells it "casualvae"

# Keys that released configs carry but that do not describe the network: diffusers bookkeeping (any "_..."),
# training settings of Open-Sora-Plan (loss, learning rate), the MindSpeed-MM loader's own fields, and
# `tile_latent_min_size`, which the reference ignores (it derives the value, see `tile_latent_min_size`).
_IGNORED_KEYS = frozenset(
    {"loss_type", "loss_params", "lr", "ckpt_path", "ignore_keys", "model_id", "from_pretrained", "dtype"}
    | {"output_dtype", "tile_latent_min_size", "in_channels", "out_channels"}
)


@dataclass(frozen=True, kw_only=True)
class CausalVAEConfig:
    """Constructor arguments of the CausalVAE (names as in the reference).

    Channel widths are `hidden_size * hidden_size_mult[i]` per level; every per-level tuple has one entry per
    level. Tiling: the decoder sees at most `tile_latent_min_size` latent rows/cols and
    `tile_latent_min_size_t` latent frames at a time (the encoder `tile_sample_min_size` pixels and
    `tile_sample_min_size_t` frames); tiles overlap by `tile_overlap_factor` of their size.
    """

    hidden_size: int = 128
    hidden_size_mult: tuple[int, ...] = (1, 2, 4, 4)
    z_channels: int = 4
    embed_dim: int = 4
    double_z: bool = True
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = ()
    resolution: int = 256  # only used to place `attn_resolutions`
    dropout: float = 0.0
    use_quant_layer: bool = True
    q_conv: str = "CausalConv3d"
    encoder_conv_in: str = "Conv2d"
    encoder_conv_out: str = "CausalConv3d"
    encoder_attention: str = "AttnBlock3D"
    encoder_resnet_blocks: tuple[str, ...] = ("ResnetBlock2D", "ResnetBlock2D", "ResnetBlock3D", "ResnetBlock3D")
    encoder_spatial_downsample: tuple[str, ...] = (
        "Downsample",
        "Spatial2xTime2x3DDownsample",
        "Spatial2xTime2x3DDownsample",
        "",
    )
    encoder_temporal_downsample: tuple[str, ...] = ("", "", "", "")
    encoder_mid_resnet: str = "ResnetBlock3D"
    decoder_conv_in: str = "CausalConv3d"
    decoder_conv_out: str = "CausalConv3d"
    decoder_attention: str = "AttnBlock3D"
    decoder_resnet_blocks: tuple[str, ...] = ("ResnetBlock3D",) * 4
    decoder_spatial_upsample: tuple[str, ...] = (
        "",
        "SpatialUpsample2x",
        "Spatial2xTime2x3DUpsample",
        "Spatial2xTime2x3DUpsample",
    )
    decoder_temporal_upsample: tuple[str, ...] = ("", "", "", "")
    decoder_mid_resnet: str = "ResnetBlock3D"
    vae_scale_factor: tuple[int, int, int] | None = (4, 8, 8)  # (frames, rows, cols); checked, not used
    use_tiling: bool = True
    tile_sample_min_size: int = 512
    tile_sample_min_size_t: int = 29
    tile_latent_min_size_t: int = 8
    tile_overlap_factor: float = 0.125

    def __post_init__(self) -> None:
        levels = len(self.hidden_size_mult)
        for name in ("hidden_size", "z_channels", "embed_dim", "num_res_blocks", "resolution"):
            _check_positive_int(name, getattr(self, name))
        for name in ("tile_sample_min_size", "tile_sample_min_size_t", "tile_latent_min_size_t"):
            _check_positive_int(name, getattr(self, name))
        if levels < 1 or any(not isinstance(m, int) or m < 1 for m in self.hidden_size_mult):
            raise ValueError(f"hidden_size_mult must be positive integers, one per level, got {self.hidden_size_mult}")
        # GroupNorm(32 groups) runs on every width, including the first level's.
        widths = sorted({self.hidden_size * m for m in self.hidden_size_mult})
        if any(w % 32 for w in widths):
            raise ValueError(f"every width hidden_size * hidden_size_mult must be divisible by 32, got {widths}")
        for name, choices in (
            ("q_conv", CONVS),
            ("encoder_conv_in", CONVS),
            ("encoder_conv_out", CONVS),
            ("decoder_conv_in", CONVS),
            ("decoder_conv_out", CONVS),
            ("encoder_attention", ATTENTIONS),
            ("decoder_attention", ATTENTIONS),
            ("encoder_mid_resnet", RESNETS),
            ("decoder_mid_resnet", RESNETS),
        ):
            _check_choice(name, getattr(self, name), choices)
        for name, choices in (
            ("encoder_resnet_blocks", RESNETS),
            ("encoder_spatial_downsample", DOWNSAMPLES),
            ("encoder_temporal_downsample", TIME_DOWNSAMPLES),
            ("decoder_resnet_blocks", RESNETS),
            ("decoder_spatial_upsample", UPSAMPLES),
            ("decoder_temporal_upsample", TIME_UPSAMPLES),
        ):
            values = getattr(self, name)
            if len(values) != levels:
                raise ValueError(f"{name} has {len(values)} entries, expected one per level ({levels}): {values}")
            for value in values:
                _check_choice(name, value, choices)
        self._check_tiling(levels)

    def _check_tiling(self, levels: int) -> None:
        """Tile sizes and the encoder / decoder factors agree with each other."""
        # Chunks overlap by one frame, so a chunk must hold at least two.
        if self.tile_sample_min_size_t < 2 or self.tile_latent_min_size_t < 2:
            raise ValueError(
                f"tile_sample_min_size_t={self.tile_sample_min_size_t} and tile_latent_min_size_t="
                f"{self.tile_latent_min_size_t} must be >= 2 (temporal chunks overlap by one frame)"
            )
        if not 0.0 <= self.tile_overlap_factor < 1.0:
            raise ValueError(f"tile_overlap_factor must be in [0, 1), got {self.tile_overlap_factor}")
        if self.tile_latent_min_size < 1:
            raise ValueError(
                f"tile_sample_min_size={self.tile_sample_min_size} is smaller than the spatial factor "
                f"{2 ** (levels - 1)}, so a latent tile would be empty"
            )
        encoder_factors = (self.temporal_factor, self.spatial_factor, self.spatial_factor)
        decoder_factors = (self.decoder_temporal_factor, self.decoder_spatial_factor, self.decoder_spatial_factor)
        if encoder_factors != decoder_factors:
            raise ValueError(
                f"encoder compresses (frames, rows, cols) by {encoder_factors} but the decoder expands by "
                f"{decoder_factors}; the resampler lists must mirror each other"
            )
        if self.vae_scale_factor is not None and tuple(self.vae_scale_factor) != encoder_factors:
            raise ValueError(
                f"vae_scale_factor={list(self.vae_scale_factor)} does not match the layers, which give "
                f"{list(encoder_factors)} (frames, rows, cols)"
            )

    # -- derived sizes -------------------------------------------------------------------------------------

    # The encoder never applies a downsampler of its last level (see `Encoder.forward`), hence the [:-1].

    @property
    def spatial_factor(self) -> int:
        """Pixel rows (cols) per latent row (col): every applied encoder downsampler halves both."""
        return 2 ** sum(bool(d) for d in self.encoder_spatial_downsample[:-1])

    @property
    def temporal_factor(self) -> int:
        """Pixel frames per latent frame after the first: only the 3D downsampler also strides in time."""
        return 2 ** sum(d == "Spatial2xTime2x3DDownsample" for d in self.encoder_spatial_downsample[:-1])

    @property
    def decoder_spatial_factor(self) -> int:
        return 2 ** sum(bool(u) for u in self.decoder_spatial_upsample)

    @property
    def decoder_temporal_factor(self) -> int:
        time_2x = sum(u == "Spatial2xTime2x3DUpsample" for u in self.decoder_spatial_upsample)
        return 2 ** (time_2x + sum(bool(u) for u in self.decoder_temporal_upsample))

    @property
    def latent_channels(self) -> int:
        """Channels of the latents the decoder takes: `embed_dim` after the quant convs, else `z_channels`."""
        return self.embed_dim if self.use_quant_layer else self.z_channels

    @property
    def tile_latent_min_size(self) -> int:
        """Latent tile side. Derived exactly as the reference does, from the number of levels rather than the
        number of downsamplers, and never read from the config (its `tile_latent_min_size` key is ignored)."""
        return int(self.tile_sample_min_size / (2 ** (len(self.hidden_size_mult) - 1)))

    # -- JSON form -----------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in the reference's key names, plus `_class_name` so the folder reads as a CausalVAE."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        return {"_class_name": CAUSALVAE_CLASS_NAMES[0], **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CausalVAEConfig:
        """Reads an Open-Sora-Plan `config.json`, a MindSpeed-MM `ae` section or our own `to_dict` output.

        Bookkeeping and training keys are dropped; any other unknown key is dropped with a warning naming it.

        Raises:
            ValueError: for a value that is invalid for its field, or image channels other than 3.
        """
        for key in ("in_channels", "out_channels"):
            if data.get(key, 3) != 3:
                raise ValueError(f"the CausalVAE works on RGB pixels, but the config has {key}={data[key]}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in data if k not in fields and k not in _IGNORED_KEYS and not k.startswith("_"))
        if unknown:
            warnings.warn(f"ignoring CausalVAE config keys that describe no known setting: {unknown}", stacklevel=2)
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
        return cls(**kwargs)


def is_causalvae_config(data: dict[str, Any]) -> bool:
    """True for a config.json (or pipeline `ae` section) that describes this VAE."""
    return data.get("_class_name") in CAUSALVAE_CLASS_NAMES or data.get("model_id") in _MODEL_IDS


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not a supported layer; choose one of {choices}")
