"""Multi-head attention module with the parameter names of diffusers' `Attention`
(docs/architecture.md#attention-modules).

Shape legend: B batch (any leading dims, e.g. batch x windows), L query tokens, S key tokens, D width,
N heads, K head dim. Names `to_q`, `to_k`, `to_v`, `to_out.0` match the released checkpoint.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from ptdit.attention.backends import AttentionBackend
from ptdit.attention.functional import attention
from ptdit.nn.layers import Linear


class Attention(nn.Module):
    """Self- or cross-attention: biased Q/K/V/out projections, no QK-norm, no positional term.

    Attributes:
        backend: per-module override of the attention backend (None = follow the active setting).
    """

    def __init__(self, dim: int, num_heads: int, *, context_dim: int | None = None, bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        context_dim = dim if context_dim is None else context_dim
        self.num_heads = num_heads
        self.to_q = Linear(dim, dim, bias=bias)
        self.to_k = Linear(context_dim, dim, bias=bias)
        self.to_v = Linear(context_dim, dim, bias=bias)
        self.to_out = nn.ModuleList([Linear(dim, dim, bias=bias)])  # a list so the key is `to_out.0`
        self.backend: AttentionBackend | str | None = None

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attends from `x` to `context` (or to itself).

        Args:
            x: (*B, L, D) queries; any number of leading dims (e.g. (B, M) for windows).
            context: (*B, S, C) keys/values source; None for self-attention.
            mask: boolean, broadcastable to (*B, L, S), True = may attend; None when nothing is masked.

        Returns:
            (*B, L, D).
        """
        context = x if context is None else context
        lead, L, S = x.shape[:-2], x.shape[-2], context.shape[-2]
        q_BNLK = rearrange(self.to_q(x).flatten(0, -3), "b l (n k) -> b n l k", n=self.num_heads)
        k_BNSK = rearrange(self.to_k(context).flatten(0, -3), "b s (n k) -> b n s k", n=self.num_heads)
        v_BNSK = rearrange(self.to_v(context).flatten(0, -3), "b s (n k) -> b n s k", n=self.num_heads)
        if mask is not None:
            mask = mask.broadcast_to(*lead, L, S).reshape(-1, 1, L, S)
        out_BNLK = attention(q_BNLK, k_BNSK, v_BNSK, mask, backend=self.backend)
        out_BLD = rearrange(out_BNLK, "b n l k -> b l (n k)")
        return self.to_out[0](out_BLD).unflatten(0, lead)


def masked_window_attention(
    attn: Attention, x_BMWD: torch.Tensor, mask_MWW: torch.Tensor, split: tuple[torch.Tensor, ...] | None = None
) -> torch.Tensor:
    """Window attention where some windows carry a mask.

    Args:
        attn: the attention module, applied independently inside each window.
        x_BMWD: (B, M, W, D) windowed tokens.
        mask_MWW: (M, W, W) boolean mask per window, shared by all samples.
        split: (plain_idx, masked_idx, inverse_perm) from `masked_window_split`. If given, the mask-free
            windows run unmasked (fused kernels) and only the others pay for the mask; the result equals the
            reference path (split=None: every window masked).

    Returns:
        (B, M, W, D).
    """
    if split is None:
        return attn(x_BMWD, mask=mask_MWW)
    plain_idx, masked_idx, inverse_perm = split
    if masked_idx.numel() == 0:
        return attn(x_BMWD)
    out_plain = attn(x_BMWD.index_select(1, plain_idx))
    out_masked = attn(x_BMWD.index_select(1, masked_idx), mask=mask_MWW.index_select(0, masked_idx))
    return torch.cat([out_plain, out_masked], dim=1).index_select(1, inverse_perm)
