"""The Open-Sora-Plan v1.2 CausalVAE network: encoder, decoder, quant convs, and the tiled paths.

Layout as the released Qihoo-T2X pipeline configures it (docs/inference.md#the-released-pipeline): widths
128/256/512/512; encoder 2D-2D-3D-3D residual levels with one per-frame downsampler and two 3D (space and time)
downsamplers; decoder 3D levels with one nearest 2x spatial and two trilinear space-and-time upsamplers; a mid stage
of two residual blocks around per-frame attention. 8x8 spatial, 4x temporal compression: F = 1 + 4 k pixel frames
give 1 + k latent frames, so a single image is one latent frame.

`CausalVAEModel` is state-dict compatible with the reference (`encoder.*`, `decoder.*`, `quant_conv.*`,
`post_quant_conv.*`) and works on *unscaled* latents z; the 0.18215 latent scale of the pipeline lives in the
`CausalVAE` adapter (`adapter.py`).

Shape legend: B batch, C channels, F / F' pixel / latent frames, H / W pixel rows / cols, Y / X latent rows /
cols (feature maps in between keep the F H W names).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ptdit.encoders.causalvae.config import CausalVAEConfig
from ptdit.encoders.causalvae.layers import (
    group_norm,
    make_attention,
    make_conv,
    make_downsample,
    make_resnet,
    make_time_upsample,
    make_upsample,
)
from ptdit.encoders.causalvae.tiling import tiled_2d, tiled_over_time

__all__ = ["CausalVAEModel", "Decoder", "Encoder", "posterior_mean_logvar"]


class _Level(nn.Module):
    """One resolution level: residual blocks, optional attention after each, optional resamplers."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()

    def blocks(self, h_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C', F, H, W) through the residual blocks (and attention) of the level."""
        for i, block in enumerate(self.block):
            h_BCFHW = block(h_BCFHW)
            if len(self.attn) > 0:
                h_BCFHW = self.attn[i](h_BCFHW)
        return h_BCFHW


class _Mid(nn.Module):
    """Residual block, per-frame attention, residual block, all at the coarsest width."""

    def __init__(self, config: CausalVAEConfig, channels: int, resnet: str, attention: str) -> None:
        super().__init__()
        self.block_1 = make_resnet(resnet, channels, channels, config.dropout)
        self.attn_1 = make_attention(attention, channels)
        self.block_2 = make_resnet(resnet, channels, channels, config.dropout)

    def forward(self, h_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C, F, H, W)."""
        return self.block_2(self.attn_1(self.block_1(h_BCFHW)))


class Encoder(nn.Module):
    """Pixels (B, 3, F, H, W) -> moments (B, 2 z_channels, F', H / s, W / s) (or z_channels if not double_z)."""

    def __init__(self, config: CausalVAEConfig) -> None:
        super().__init__()
        c = config
        widths = [c.hidden_size * m for m in c.hidden_size_mult]
        self.conv_in = make_conv(c.encoder_conv_in, 3, c.hidden_size, 3, padding=1)
        self.down = nn.ModuleList()
        block_in, res = c.hidden_size, c.resolution
        for i, block_out in enumerate(widths):
            level = _Level()
            for _ in range(c.num_res_blocks):
                level.block.append(make_resnet(c.encoder_resnet_blocks[i], block_in, block_out, c.dropout))
                block_in = block_out
                if res in c.attn_resolutions:
                    level.attn.append(make_attention(c.encoder_attention, block_in))
            if c.encoder_spatial_downsample[i]:
                level.downsample = make_downsample(c.encoder_spatial_downsample[i], block_in)
                res //= 2
            self.down.append(level)
        self.mid = _Mid(c, block_in, c.encoder_mid_resnet, c.encoder_attention)
        self.norm_out = group_norm(block_in)
        out_channels = 2 * c.z_channels if c.double_z else c.z_channels
        self.conv_out = make_conv(c.encoder_conv_out, block_in, out_channels, 3, padding=1)

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, 3, F, H, W) -> (B, 2 z_channels, F', H / s, W / s)."""
        h_BCFHW = self.conv_in(x_BCFHW)
        for i, level in enumerate(self.down):
            h_BCFHW = level.blocks(h_BCFHW)
            # The reference feeds the mid stage the last level's block output, so a downsampler on the last
            # level would be built (its weights are in the state dict) but not used; we do the same.
            if hasattr(level, "downsample") and i < len(self.down) - 1:
                h_BCFHW = level.downsample(h_BCFHW)  # (B, C, F', H / 2, W / 2)
        h_BCFHW = self.mid(h_BCFHW)
        return self.conv_out(F.silu(self.norm_out(h_BCFHW)))


class Decoder(nn.Module):
    """Unscaled latents (B, z_channels, F', Y, X) -> pixels (B, 3, 1 + t (F' - 1), s Y, s X), unclamped."""

    def __init__(self, config: CausalVAEConfig) -> None:
        super().__init__()
        c = config
        levels = len(c.hidden_size_mult)
        block_in = c.hidden_size * c.hidden_size_mult[-1]
        res = c.resolution // 2 ** (levels - 1)
        self.conv_in = make_conv(c.decoder_conv_in, c.z_channels, block_in, 3, padding=1)
        self.mid = _Mid(c, block_in, c.decoder_mid_resnet, c.decoder_attention)
        # Built coarse to fine, stored fine to coarse: `up[i]` is level i, as in the reference state dict.
        up: list[_Level] = []
        for i in reversed(range(levels)):
            level = _Level()
            block_out = c.hidden_size * c.hidden_size_mult[i]
            for _ in range(c.num_res_blocks + 1):
                level.block.append(make_resnet(c.decoder_resnet_blocks[i], block_in, block_out, c.dropout))
                block_in = block_out
                if res in c.attn_resolutions:
                    level.attn.append(make_attention(c.decoder_attention, block_in))
            if c.decoder_spatial_upsample[i]:
                level.upsample = make_upsample(c.decoder_spatial_upsample[i], block_in)
                res *= 2
            if c.decoder_temporal_upsample[i]:
                level.time_upsample = make_time_upsample(c.decoder_temporal_upsample[i], block_in)
            up.insert(0, level)
        self.up = nn.ModuleList(up)
        self.norm_out = group_norm(block_in)
        self.conv_out = make_conv(c.decoder_conv_out, block_in, 3, 3, padding=1)

    def forward(self, z_BCFYX: Tensor) -> Tensor:
        """(B, z_channels, F', Y, X) -> (B, 3, F, H, W)."""
        h_BCFHW = self.mid(self.conv_in(z_BCFYX))  # (B, C, F', Y, X)
        for level in reversed(self.up):
            h_BCFHW = level.blocks(h_BCFHW)
            if hasattr(level, "upsample"):
                h_BCFHW = level.upsample(h_BCFHW)  # 2x rows and cols (and frames after the first, if 3D)
            if hasattr(level, "time_upsample"):
                h_BCFHW = level.time_upsample(h_BCFHW)
        return self.conv_out(F.silu(self.norm_out(h_BCFHW)))


def posterior_mean_logvar(moments: Tensor) -> tuple[Tensor, Tensor]:
    """Splits moments (B, 2C, F', Y, X) into the diagonal Gaussian's mean and log-variance, each (B, C, F', Y, X).

    The log-variance is clamped to [-30, 20] as in the reference, so exp(0.5 logvar) stays finite.
    """
    mean, logvar = moments.chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


class CausalVAEModel(nn.Module):
    """The CausalVAE network with the reference's module names; encodes to moments and decodes unscaled z.

    Tiling (`use_tiling`, initialised from the config) follows the reference: pixels larger than one tile
    (`tile_sample_min_size` rows or cols, or more than `tile_sample_min_size_t` frames) are encoded in
    overlapping tiles / chunks, latents larger than one tile decoded likewise. Inputs that fit one tile are
    processed whole (where the reference raises UnboundLocalError).
    """

    def __init__(self, config: CausalVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.use_tiling = config.use_tiling
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if config.use_quant_layer:
            conv = config.q_conv
            self.quant_conv = make_conv(conv, 2 * config.z_channels, 2 * config.embed_dim, 1)
            self.post_quant_conv = make_conv(conv, config.embed_dim, config.z_channels, 1)

    def enable_tiling(self, use_tiling: bool = True) -> None:
        self.use_tiling = use_tiling

    def _encode_whole(self, x_BCFHW: Tensor) -> Tensor:
        h = self.encoder(x_BCFHW)
        return self.quant_conv(h) if self.config.use_quant_layer else h

    def _decode_whole(self, z_BCFYX: Tensor) -> Tensor:
        z = self.post_quant_conv(z_BCFYX) if self.config.use_quant_layer else z_BCFYX
        return self.decoder(z)

    def encode(self, x: Tensor) -> Tensor:
        """Pixels (B, 3, F, H, W) in [-1, 1] -> moments (B, 2 C, F', H / s, W / s): C mean, then C logvar channels."""
        c = self.config
        frames, height, width = x.shape[2:]
        one_tile = max(height, width) <= c.tile_sample_min_size and frames <= c.tile_sample_min_size_t
        if not self.use_tiling or one_tile:
            return self._encode_whole(x)

        def encode_chunk(chunk_BCFHW: Tensor) -> Tensor:
            tile = (c.tile_sample_min_size, c.tile_latent_min_size)
            return tiled_2d(self._encode_whole, chunk_BCFHW, tile=tile, overlap_factor=c.tile_overlap_factor)

        return tiled_over_time(encode_chunk, x, chunk=c.tile_sample_min_size_t)

    def decode(self, z: Tensor) -> Tensor:
        """Unscaled latents (B, C, F', Y, X) -> pixels (B, 3, 1 + t (F' - 1), s Y, s X), unclamped."""
        c = self.config
        frames, rows, cols = z.shape[2:]
        one_tile = max(rows, cols) <= c.tile_latent_min_size and frames <= c.tile_latent_min_size_t
        if not self.use_tiling or one_tile:
            return self._decode_whole(z)

        def decode_chunk(chunk_BCFYX: Tensor) -> Tensor:
            tile = (c.tile_latent_min_size, c.tile_sample_min_size)
            return tiled_2d(self._decode_whole, chunk_BCFYX, tile=tile, overlap_factor=c.tile_overlap_factor)

        return tiled_over_time(decode_chunk, z, chunk=c.tile_latent_min_size_t)
