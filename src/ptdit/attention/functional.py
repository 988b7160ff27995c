"""The one attention entry point, with a reference (math) path and a fast (SDPA) path.

Shape legend: B batch (may include windows), N heads, L query tokens, S key tokens, K head dim.
Mask convention: boolean, True = may attend (SDPA semantics), broadcastable to (B, N, L, S). This file is the
only place where a boolean mask becomes additive logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ptdit.attention.backends import AttentionBackend, check_backend_inputs, resolve_backend


def mask_to_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask (True = attend) -> additive logit bias (0 or -inf) in `dtype`."""
    bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    return bias.masked_fill(~mask, float("-inf"))


def attention_reference(
    q_BNLK: torch.Tensor, k_BNSK: torch.Tensor, v_BNSK: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Plain softmax(Q K^T / sqrt(K)) V computed in at least float32; the numerical reference for every backend."""
    scale = 1.0 / math.sqrt(q_BNLK.shape[-1])
    compute = torch.promote_types(q_BNLK.dtype, torch.float32)
    logits_BNLS = torch.einsum("bnlk,bnsk->bnls", q_BNLK.to(compute), k_BNSK.to(compute)) * scale
    if mask is not None:
        logits_BNLS = logits_BNLS + mask_to_additive(mask, compute)
    probs_BNLS = logits_BNLS.softmax(dim=-1)
    out_BNLK = torch.einsum("bnls,bnsk->bnlk", probs_BNLS, v_BNSK.to(compute))
    return out_BNLK.to(q_BNLK.dtype)


def attention(
    q_BNLK: torch.Tensor,
    k_BNSK: torch.Tensor,
    v_BNSK: torch.Tensor,
    mask: torch.Tensor | None = None,
    *,
    backend: AttentionBackend | str | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention over (B, N, L, K) queries and (B, N, S, K) keys/values.

    Args:
        q_BNLK: queries. k_BNSK, v_BNSK: keys and values.
        mask: optional boolean mask broadcastable to (B, N, L, S), True = may attend. Pass None whenever no
            masking is needed, so the fused kernels stay eligible. Every query row must allow at least one key.
        backend: overrides the active backend (see `use_attention_backend`).

    Returns:
        (B, N, L, K) in the dtype of `q_BNLK`.
    """
    resolved = resolve_backend(backend)
    check_backend_inputs(resolved, q_BNLK, mask)
    if resolved is AttentionBackend.MATH:
        return attention_reference(q_BNLK, k_BNSK, v_BNSK, mask)
    return F.scaled_dot_product_attention(q_BNLK, k_BNSK, v_BNSK, attn_mask=mask)
