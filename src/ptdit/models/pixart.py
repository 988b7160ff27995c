"""PixArt-alpha-style baseline (Chen et al. 2023): global self-attention, text cross-attention, adaLN-single.

The same embeddings, caption projection and final layer as PT-DiT; only the block differs (one global
self-attention instead of GIIM + TCM). Parameter names follow diffusers' `PixArtTransformer2DModel`. Not
included: PixArt's resolution / aspect-ratio embeddings (used only by its 1024 px model), and its positional
embedding uses DiT's 2D sin-cos without PixArt's base-size rescaling.

Shape legend: B batch, L tokens, S text tokens, D width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ptdit.attention.modules import Attention
from ptdit.config import PixArtConfig
from ptdit.models.common import check_context, check_latents, expand_timesteps, key_padding_mask
from ptdit.nn.embeddings import AdaLNSingle, CaptionProjection, PatchEmbed, unpatchify
from ptdit.nn.layers import FeedForward, Linear, layer_norm, modulate


class PixArtBlock(nn.Module):
    """Self-attention (modulated, gated) -> text cross-attention -> FFN (modulated, gated)."""

    def __init__(self, config: PixArtConfig) -> None:
        super().__init__()
        D = config.dim
        self.scale_shift_table = nn.Parameter(torch.randn(6, D) / math.sqrt(D))
        self.norm1 = layer_norm(D, config.norm_eps)
        self.attn1 = Attention(D, config.num_heads)
        self.attn2 = Attention(D, config.num_heads)
        self.norm2 = layer_norm(D, config.norm_eps)
        self.ff = FeedForward(D, config.mlp_dim)

    def forward(
        self, x_BLD: torch.Tensor, t6_B6D: torch.Tensor, ctx_BSD: torch.Tensor, ctx_mask_B1S: torch.Tensor | None
    ) -> torch.Tensor:
        mod_B6D = self.scale_shift_table[None] + t6_B6D
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod_B6D[:, :, None].unbind(1)
        x_BLD = x_BLD + gate_msa * self.attn1(modulate(self.norm1(x_BLD), shift_msa, scale_msa))
        x_BLD = x_BLD + self.attn2(x_BLD, ctx_BSD, mask=ctx_mask_B1S)
        return x_BLD + gate_mlp * self.ff(modulate(self.norm2(x_BLD), shift_mlp, scale_mlp))


class PixArtAlpha(nn.Module):
    """Text-conditional DiT with adaLN-single (the PixArt-alpha architecture PT-DiT is built from)."""

    conditioning = "text"

    def __init__(self, config: PixArtConfig) -> None:
        super().__init__()
        self.config = config
        D = config.dim
        self.pos_embed = PatchEmbed(config.in_channels, D, config.patch_size, pe_kind="2d")
        self.adaln_single = AdaLNSingle(D)
        self.caption_projection = CaptionProjection(config.context_dim, D)
        self.transformer_blocks = nn.ModuleList([PixArtBlock(config) for _ in range(config.depth)])
        self.norm_out = layer_norm(D, config.norm_eps)
        self.scale_shift_table = nn.Parameter(torch.randn(2, D) / math.sqrt(D))
        self.proj_out = Linear(D, config.patch_size**2 * config.out_channels)

    def block_list(self) -> list[nn.Module]:
        """The repeated blocks (targets for activation checkpointing, compile and FSDP wrapping)."""
        return list(self.transformer_blocks)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        *,
        class_labels: None = None,
        window_size: None = None,
    ) -> torch.Tensor:
        """(B, C_in, F, H, W) latents, (B,) times in [0, 1000], (B, S, E) captions -> (B, C_out, F, H, W)."""
        cfg = self.config
        check_latents(x, cfg.in_channels, self.proj_out.weight.dtype)
        if class_labels is not None or window_size is not None:
            raise ValueError("PixArt-alpha is text-conditional with global attention: no class_labels or window_size")
        B, dtype = x.shape[0], self.proj_out.weight.dtype
        grid = self.pos_embed.token_grid(x.shape)
        x_BLD = self.pos_embed(x.to(dtype))
        c_BD = self.adaln_single.embed(expand_timesteps(t, B, x.device))
        t6_B6D = self.adaln_single.modulation(c_BD)
        context = check_context(context, cfg.context_dim, B)
        ctx_BSD = self.caption_projection(context.to(dtype))
        mask_B1S = key_padding_mask(context_mask, B, context.shape[1])
        for block in self.transformer_blocks:
            x_BLD = block(x_BLD, t6_B6D, ctx_BSD, mask_B1S)
        shift_BD, scale_BD = (self.scale_shift_table[None] + c_BD[:, None]).unbind(1)
        y_BLO = self.proj_out(modulate(self.norm_out(x_BLD), shift_BD[:, None], scale_BD[:, None]))
        return unpatchify(y_BLO, grid, cfg.patch_size, cfg.out_channels).float()
