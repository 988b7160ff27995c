"""The PT-DiT block (docs/architecture.md#the-pt-block): global interaction through proxies, texture complement, text,
FFN.

Shape legend: B batch, M windows, W tokens per window, L = M W tokens, P proxy tokens, S text tokens,
D width. Inside the blocks tokens stay windowed, (B, M, W, D); operations over all tokens view the same
memory as (B, L, D) (they are permutation-equivariant, so token order does not matter to them).

Attribute names follow the released checkpoint (docs/checkpoints.md#official-key-names), so its state dict loads without
renaming; `proxy_scale_shift_table` modulates the shifted-window branch despite its name.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ptdit.attention.modules import Attention, masked_window_attention
from ptdit.attention.proxy import pool_proxy_tokens, proxy_grid, real_proxy_index, real_proxy_mask
from ptdit.attention.window import WindowLayout
from ptdit.config import PTDiTConfig
from ptdit.nn.layers import FeedForward, Linear, layer_norm, modulate


def _table(rows: int, dim: int) -> nn.Parameter:
    """A modulation table initialised as randn / sqrt(D) (docs/architecture.md#initialisation)."""
    return nn.Parameter(torch.randn(rows, dim) / math.sqrt(dim))


class PTDiTBlock(nn.Module):
    """One PT-Block. Modules that an ablation switches off are not created (and hold no parameters).

    Runtime attributes:
        split_shifted_windows: True runs the mask-free shifted windows unmasked and masks only the boundary
            windows; False masks every window (reference path); both give the same result. None (default)
            splits on CUDA only: the CPU flash kernel takes a mask at no extra cost, so there the split's copies
            are pure overhead (BENCHMARKS.md).
            The same choice applies to the plain windows of a padded layout (only windows with padding masked).
        proxy_generator: random source for proxy_mode="random".
        drop_padded_proxies: on a padded layout (docs/architecture.md#padding-and-masking), True leaves the
            proxies of all-padding groups out of GIIM (no mask, fused kernels stay eligible); False keeps them
            and masks them as keys (reference path); both give the same result.
        branch_recorder: None (default), or a function `(name, x_BMWD, update_BMWD)` called with each branch's
            update and the residual stream it is added to ("giim", "window", "shifted_window", "text", "ffn");
            set by `ptdit.models.probes.record_branches` (docs/study.md#hooks). It never changes the output.
    """

    def __init__(self, config: PTDiTConfig) -> None:
        super().__init__()
        D, heads, eps = config.dim, config.num_heads, config.norm_eps
        self.config = config
        self.split_shifted_windows: bool | None = None
        self.proxy_generator: torch.Generator | None = None
        self.drop_padded_proxies = True
        self.branch_recorder: Callable[[str, torch.Tensor, torch.Tensor], None] | None = None
        self.scale_shift_table = _table(6, D)  # T6: shift/scale/gate of window attention, then of the MLP

        # 1. Global information interaction (GIIM)
        if config.use_global_interaction:
            self.proxy_norm1 = layer_norm(D, eps)
            self.proxy_attn1 = Attention(D, heads)
            self.proxy_cross_norm = layer_norm(D, eps)
            if config.injection == "cross_attention":
                self.norm_before = layer_norm(D, eps)
                self.pvisual_attn2 = Attention(D, heads)
            elif config.injection == "linear":
                num_tokens = math.prod(config.injection_grid)
                per_proxy = math.prod(config.proxy_window or config.window_size)
                self.proxy_to_tokens = Linear(num_tokens // per_proxy, num_tokens)  # along the token axis
            self.linear_1_visual = Linear(D, D)  # zero-initialised (paper: "ZeroLinear")

        # 2. Texture complement (TCM): window attention, then shifted-window attention
        if config.use_window_attention:
            self.norm1 = layer_norm(D, eps)
            self.attn1 = Attention(D, heads)
        if config.use_shifted_window:
            self.proxy_scale_shift_table = _table(3, D)  # T3: added to the first three rows of t6
            self.shift_window_norm = layer_norm(D, eps)
            self.attn3 = Attention(D, heads)
            self.linear_2 = Linear(D, D)  # zero-initialised

        # 3. Text cross-attention (captions are projected to width D before the blocks)
        if config.conditioning == "text":
            self.attn2 = Attention(D, heads)

        # 4. FFN
        self.norm2 = layer_norm(D, eps)
        self.ff = FeedForward(D, config.mlp_dim)

    def forward(
        self,
        x_BMWD: torch.Tensor,
        t6_B6D: torch.Tensor,
        layout: WindowLayout,
        ctx_BSD: torch.Tensor | None = None,
        ctx_mask_B1S: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args: windowed tokens (B, M, W, D); adaLN-single output t6 (B, 6, D); the grid layout; projected
        captions (B, S, D) and their boolean key mask (B, 1, S) or None. Returns (B, M, W, D)."""
        B, M, W, D = x_BMWD.shape
        # Per-sample modulation broadcast as (B, 1, 1, D)
        # (the reference tiles it wrongly: docs/decisions.md#per-sample-modulation).
        mod_B6D = self.scale_shift_table[None] + t6_B6D
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod_B6D[:, :, None, None].unbind(1)

        # 1. Global information interaction: proxies from the block input, no modulation, no gate
        if self.config.use_global_interaction:
            x_BMWD = self._add("giim", x_BMWD, self.global_interaction(x_BMWD, layout))

        # 2. Texture complement: window attention, then shifted-window attention
        if self.config.use_window_attention:
            h_BMWD = modulate(self.norm1(x_BMWD), shift_msa, scale_msa)
            x_BMWD = self._add("window", x_BMWD, gate_msa * self.window_attention(h_BMWD, layout))
        if self.config.use_shifted_window:
            x_BMWD = self._add("shifted_window", x_BMWD, self.shifted_window_attention(x_BMWD, t6_B6D, layout))

        # 3. Text cross-attention (PixArt style: query not normalised, no gate, no modulation)
        if self.config.conditioning == "text":
            x_BLD = x_BMWD.reshape(B, M * W, D)
            x_BMWD = self._add("text", x_BMWD, self.attn2(x_BLD, ctx_BSD, mask=ctx_mask_B1S).view(B, M, W, D))

        # 4. FFN
        return self._add("ffn", x_BMWD, gate_mlp * self.ff(modulate(self.norm2(x_BMWD), shift_mlp, scale_mlp)))

    def _add(self, name: str, x_BMWD: torch.Tensor, update_BMWD: torch.Tensor) -> torch.Tensor:
        """The residual add of one branch, shown to `branch_recorder` when one is set."""
        if self.branch_recorder is not None:
            self.branch_recorder(name, x_BMWD, update_BMWD)
        return x_BMWD + update_BMWD

    def global_interaction(self, x_BMWD: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
        """GIIM (Eq. 1): proxies attend globally, then pass the information back to every token."""
        B, M, W, D = x_BMWD.shape
        cfg = self.config
        if cfg.injection != "cross_attention" and layout.padded:
            raise ValueError(
                f"injection={cfg.injection!r} needs a token grid the window tiles; grid {layout.grid} would be "
                f"padded to {layout.padded_grid} for window {layout.window}: pass a size or window that tiles"
            )
        prox_BPD, mask_1P = self.proxies(x_BMWD, layout)
        prox_BPD = prox_BPD + self.proxy_attn1(self.proxy_norm1(prox_BPD), mask=mask_1P)  # global self-attention
        kv_BPD = self.proxy_cross_norm(prox_BPD)
        if cfg.injection == "cross_attention":
            q_BLD = self.norm_before(x_BMWD).reshape(B, M * W, D)
            inj_BMWD = self.pvisual_attn2(q_BLD, kv_BPD, mask=mask_1P).view(B, M, W, D)
        elif cfg.injection == "interpolate":
            # Upsample the proxy grid to the token grid; trilinear with an unchanged frame axis equals
            # bilinear per frame, so one call covers images and video.
            pf, py, px = proxy_grid(layout, cfg.proxy_window or layout.window)
            prox_BDFYX = rearrange(kv_BPD, "b (f y x) d -> b d f y x", f=pf, y=py, x=px)
            up_BDFYX = F.interpolate(prox_BDFYX, size=layout.grid, mode="trilinear", align_corners=False)
            inj_BMWD = layout.partition(rearrange(up_BDFYX, "b d f y x -> b (f y x) d"))
        else:  # "linear": a learned (L, P) map along the token axis, tokens in window order
            if layout.grid != cfg.injection_grid:
                raise ValueError(
                    f"injection='linear' was built for token grid {cfg.injection_grid}, got grid {layout.grid}"
                )
            inj_BMWD = self.proxy_to_tokens(kv_BPD.transpose(1, 2)).transpose(1, 2).reshape(B, M, W, D)
        return self.linear_1_visual(inj_BMWD)

    def proxies(self, x_BMWD: torch.Tensor, layout: WindowLayout) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, P, D) proxies and their (1, P) key mask (None: every proxy is a key). On a padded layout the
        proxies of all-padding groups are left out, or kept and masked (`drop_padded_proxies`)."""
        cfg = self.config
        prox_BPD = pool_proxy_tokens(
            x_BMWD,
            layout,
            cfg.proxy_window,
            mode=cfg.proxy_mode,
            strided=cfg.reference_compat,
            generator=self.proxy_generator,
        )
        if not layout.padded:
            return prox_BPD, None
        if self.drop_padded_proxies:
            return prox_BPD.index_select(1, real_proxy_index(layout, cfg.proxy_window, x_BMWD.device)), None
        return prox_BPD, real_proxy_mask(layout, cfg.proxy_window, x_BMWD.device)[None]

    def window_attention(self, h_BMWD: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
        """WSA (Eq. 2): attention inside each window; on a padded layout padded tokens are not keys."""
        mask_MWW = layout.window_mask(h_BMWD.device)
        if mask_MWW is None:
            return self.attn1(h_BMWD)
        split = layout.window_split(h_BMWD.device) if self._split_windows(h_BMWD.device) else None
        return masked_window_attention(self.attn1, h_BMWD, mask_MWW, split)

    def _split_windows(self, device: torch.device) -> bool:
        """Whether masked window attention runs the mask-free windows unmasked (`split_shifted_windows`)."""
        return device.type == "cuda" if self.split_shifted_windows is None else self.split_shifted_windows

    def shifted_window_attention(
        self, x_BMWD: torch.Tensor, t6_B6D: torch.Tensor, layout: WindowLayout
    ) -> torch.Tensor:
        """SWSA (Eq. 2): attention inside windows of the grid rolled by half a window, with the region mask."""
        sw_B3D = self.proxy_scale_shift_table[None] + t6_B6D[:, :3]
        shift_sw, scale_sw, gate_sw = sw_B3D[:, :, None, None].unbind(1)
        # Roll and modulation commute (modulation is per sample), so modulate first, then roll.
        h_BMWD = modulate(self.shift_window_norm(x_BMWD), shift_sw, scale_sw)
        if not layout.has_shift:  # windows of size 1: nothing to shift, nothing to mask
            out_BMWD = self.attn3(h_BMWD)
        else:
            device = x_BMWD.device
            split = layout.shift_split(device) if self._split_windows(device) else None
            rolled_BMWD = masked_window_attention(self.attn3, layout.roll(h_BMWD), layout.shift_mask(device), split)
            out_BMWD = layout.roll(rolled_BMWD, inverse=True)
        return self.linear_2(gate_sw * out_BMWD)  # gate before the zero-init linear: its bias is not gated
