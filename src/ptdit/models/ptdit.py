"""PT-DiT: the Proxy-Tokenized Diffusion Transformer (Qihoo-T2X / PT-T2I/V, arXiv:2409.04005, docs/architecture.md).

patchify + 3D sin-cos PE -> windows -> depth x PT-Block -> final adaLN layer -> unpatchify.
One network serves images (F = 1), video and multi-view (F > 1, views as frames).

Shape legend: B batch, C channels, F frames, H/W latent height/width, L tokens, M windows, W tokens per
window, S text tokens, E caption channels, D width.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ptdit.attention.window import Size3, WindowLayout, validate_window
from ptdit.config import PTDiTConfig
from ptdit.models.blocks import PTDiTBlock
from ptdit.models.common import check_class_labels, check_context, check_latents, expand_timesteps, key_padding_mask
from ptdit.nn.embeddings import AdaLNSingle, CaptionProjection, LabelEmbedder, PatchEmbed, unpatchify
from ptdit.nn.layers import Linear, layer_norm, modulate


class PTDiT(nn.Module):
    """The PT-DiT network: predicts from noisy latents, a time and a condition; knows nothing of schedules."""

    def __init__(self, config: PTDiTConfig) -> None:
        super().__init__()
        self.config = config
        D = config.dim
        self.pos_embed = PatchEmbed(
            config.in_channels,
            D,
            config.patch_size,
            pe_kind="3d",
            pe_interpolation_scale=config.pe_interpolation_scale,
            reference_compat=config.reference_compat,
        )
        self.adaln_single = AdaLNSingle(D)
        if config.conditioning == "text":
            self.caption_projection = CaptionProjection(config.context_dim, D)
        elif config.conditioning == "class":
            self.label_embedder = LabelEmbedder(config.num_classes, D, config.class_dropout_prob)
        self.transformer_blocks = nn.ModuleList([PTDiTBlock(config) for _ in range(config.depth)])
        self.norm_out = layer_norm(D, config.norm_eps)
        self.scale_shift_table = nn.Parameter(torch.randn(2, D) / math.sqrt(D))  # final layer: shift, scale
        self.proj_out = Linear(D, config.patch_size**2 * config.out_channels)
        self.initialize_weights()

    @property
    def conditioning(self) -> str:
        return self.config.conditioning

    def block_list(self) -> list[nn.Module]:
        """The repeated blocks (targets for activation checkpointing, compile and FSDP wrapping)."""
        return list(self.transformer_blocks)

    def initialize_weights(self) -> None:
        """Reference initialisation (docs/architecture.md#initialisation); everything not listed keeps PyTorch's
        default."""
        D = self.config.dim
        for block in self.transformer_blocks:
            # Zero-init the linears after GIIM and after the shifted windows: at the start each block reduces
            # to window attention + text cross-attention + FFN, which keeps early training stable.
            for name in ("linear_1_visual", "linear_2"):
                if hasattr(block, name):
                    nn.init.zeros_(getattr(block, name).weight)
                    nn.init.zeros_(getattr(block, name).bias)
            # Modulation tables start as randn / sqrt(D), not zero (adaLN-single, not adaLN-Zero).
            for name in ("scale_shift_table", "proxy_scale_shift_table"):
                if hasattr(block, name):
                    nn.init.normal_(getattr(block, name), std=1 / math.sqrt(D))
        nn.init.normal_(self.scale_shift_table, std=1 / math.sqrt(D))

    def layout(self, latent_shape: torch.Size | tuple[int, ...], window_size: Size3 | None = None) -> WindowLayout:
        """Validated grid/window layout for latents of `latent_shape` (B, C, F, H, W); padded where the window
        does not tile the token grid."""
        grid = self.pos_embed.token_grid(latent_shape)
        window = tuple(window_size) if window_size is not None else self.config.window_size
        config = self.config
        validate_window(grid, window, patch_size=config.patch_size, proxy_window=config.proxy_window)
        return WindowLayout.create(grid, window, patch_size=config.patch_size)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
        *,
        class_labels: torch.Tensor | None = None,
        force_drop_mask: torch.Tensor | None = None,
        window_size: Size3 | None = None,
    ) -> torch.Tensor:
        """Runs the network.

        Args:
            x: (B, C_in, F, H, W) latents; H, W multiples of the patch. A token grid the window does not tile
                is padded and masked inside the blocks (docs/architecture.md#padding-and-masking).
            t: (B,) or scalar network time on the reference scale [0, 1000], 1000 = pure noise.
            context: (B, S, E) text features (text conditioning).
            context_mask: (B, S), 1 = real token, 0 = padding.
            class_labels: (B,) labels (class conditioning); num_classes is the null class.
            force_drop_mask: (B,) bool, replaces those labels by the null class (CFG training control).
            window_size: overrides the config's window for this call (the weights do not depend on it).

        Returns:
            (B, C_out, F, H, W) float32; channels [0, C_in) are the prediction.
        """
        cfg = self.config
        dtype = self.proj_out.weight.dtype
        check_latents(x, cfg.in_channels, dtype)
        B = x.shape[0]
        layout = self.layout(x.shape, window_size)
        # Positions are those of the real grid; padding comes after them (docs/architecture.md#padding-and-masking)
        x_BMWD = layout.partition(self.pos_embed(x.to(dtype)))  # (B, M, W, D)

        c_BD = self.adaln_single.embed(expand_timesteps(t, B, x.device))
        if cfg.conditioning == "class":
            c_BD = c_BD + self.label_embedder(check_class_labels(class_labels, B).to(x.device), force_drop_mask)
        t6_B6D = self.adaln_single.modulation(c_BD)  # (B, 6, D), shared by every block

        ctx_BSD = mask_B1S = None
        if cfg.conditioning == "text":
            context = check_context(context, cfg.context_dim, B)
            ctx_BSD = self.caption_projection(context.to(dtype))  # (B, S, D)
            mask_B1S = key_padding_mask(context_mask, B, context.shape[1])

        for block in self.transformer_blocks:
            x_BMWD = block(x_BMWD, t6_B6D, layout, ctx_BSD, mask_B1S)

        # Final layer: adaLN on the embedded condition itself (no extra SiLU / Linear)
        shift_BD, scale_BD = (self.scale_shift_table[None] + c_BD[:, None]).unbind(1)
        x_BLD = modulate(self.norm_out(layout.reverse(x_BMWD)), shift_BD[:, None], scale_BD[:, None])
        y_BLO = self.proj_out(x_BLD)  # (B, L, p*p*C_out)
        return unpatchify(y_BLO, layout.grid, cfg.patch_size, cfg.out_channels).float()
