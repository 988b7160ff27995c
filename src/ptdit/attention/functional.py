"""The one attention entry point, with a reference (math) path and fast (SDPA, FlexAttention) paths.

Shape legend: B batch (may include windows), N heads, L query tokens, S key tokens, K head dim.
Mask convention: boolean, True = may attend (SDPA semantics), broadcastable to (B, N, L, S). This file is the
only place where a boolean mask becomes additive logits (or, for FLEX, a block mask).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F

from ptdit.attention.backends import AttentionBackend, check_backend_inputs, check_flex_inputs, resolve_backend


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
    if resolved is AttentionBackend.FLEX:
        return flex_attention(q_BNLK, k_BNSK, v_BNSK, mask)
    if sdpa_upcasts(q_BNLK, k_BNSK, v_BNSK):
        with torch.autocast("cpu", enabled=False):  # CPU autocast would cast the inputs back to bf16
            out_BNLK = F.scaled_dot_product_attention(q_BNLK.float(), k_BNSK.float(), v_BNSK.float(), attn_mask=mask)
        return out_BNLK.to(q_BNLK.dtype)
    return F.scaled_dot_product_attention(q_BNLK, k_BNSK, v_BNSK, attn_mask=mask)


# torch's CPU flash-attention kernel is slower in bf16 than in fp32 when it has to run backward on short
# sequences: 1.1-6.2x the fp32 time, forward + backward, for 4-256 query x 4-256 key tokens (the window, proxy
# and text shapes of the CPU demos), and 0.8-0.9x only from 1024 x 1024 up. Forward alone is within 0.75-1.11x
# either way, so inference keeps the inputs' precision (BENCHMARKS.md "Attention in bf16 on CPU").
CPU_SDPA_FP32_MAX_SCORES = 256 * 256
_cpu_upcast: contextvars.ContextVar[bool] = contextvars.ContextVar("ptdit_cpu_sdpa_upcast", default=True)


def sdpa_upcasts(q_BNLK: torch.Tensor, k_BNSK: torch.Tensor, v_BNSK: torch.Tensor) -> bool:
    """Whether SDPA runs bf16 / fp16 inputs in fp32 (and casts the output back): on CPU, when gradients are
    needed, for attention of at most `CPU_SDPA_FP32_MAX_SCORES` query x key tokens per head, unless switched
    off by `cpu_sdpa_upcast(False)`."""
    reduced = q_BNLK.dtype in (torch.bfloat16, torch.float16) and q_BNLK.device.type == "cpu"
    short = q_BNLK.shape[-2] * k_BNSK.shape[-2] <= CPU_SDPA_FP32_MAX_SCORES
    backward = torch.is_grad_enabled() and any(t.requires_grad for t in (q_BNLK, k_BNSK, v_BNSK))
    return reduced and short and backward and _cpu_upcast.get()


@contextlib.contextmanager
def cpu_sdpa_upcast(enabled: bool) -> Iterator[None]:
    """Switches the CPU fp32 upcast of `sdpa_upcasts` on or off inside the block. Off, CPU attention takes the
    path it takes on an accelerator (the inputs' dtype): what the memory estimate of an accelerator's training
    step needs, since it runs on CPU fake tensors (docs/memory.md)."""
    token = _cpu_upcast.set(enabled)
    try:
        yield
    finally:
        _cpu_upcast.reset(token)


# ----------------------------------------------------------------------------------------------------------------
# FlexAttention backend
# ----------------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _flex_kernel(device_type: str) -> Callable[..., torch.Tensor]:
    """torch's flex_attention, compiled on CUDA (eager flex materialises the scores, which defeats its purpose);
    eager elsewhere (CPU compilation costs tens of seconds per shape)."""
    from torch.nn.attention.flex_attention import flex_attention as flex

    return torch.compile(flex, dynamic=False) if device_type == "cuda" else flex


def mask_to_block_mask(mask: torch.Tensor, q_len: int, kv_len: int, device: torch.device) -> object:
    """Boolean mask broadcastable to (B, N, L, S) -> a FlexAttention BlockMask (True = may attend).

    Size-1 batch / head axes stay broadcast (B or H = None), so a mask shared by every sample is built once.
    """
    from torch.nn.attention.flex_attention import create_block_mask

    mask_BNLS = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))
    mask_BNLS = mask_BNLS.expand(mask_BNLS.shape[0], mask_BNLS.shape[1], q_len, kv_len)
    batched, per_head = mask_BNLS.shape[0] > 1, mask_BNLS.shape[1] > 1

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return mask_BNLS[b if batched else 0, h if per_head else 0, q_idx, kv_idx]

    B = mask_BNLS.shape[0] if batched else None
    H = mask_BNLS.shape[1] if per_head else None
    return create_block_mask(mask_mod, B, H, q_len, kv_len, device=device)


def flex_attention(
    q_BNLK: torch.Tensor, k_BNSK: torch.Tensor, v_BNSK: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Attention through torch.nn.attention.flex_attention; a boolean mask becomes a block mask.

    Raises ValueError when flex is unavailable or cannot run the inputs (see `check_flex_inputs`).
    """
    check_flex_inputs(q_BNLK, k_BNSK, v_BNSK)
    block_mask = None
    if mask is not None:
        block_mask = mask_to_block_mask(mask, q_BNLK.shape[-2], k_BNSK.shape[-2], q_BNLK.device)
    kernel = _flex_kernel(q_BNLK.device.type)
    return kernel(q_BNLK.contiguous(), k_BNSK.contiguous(), v_BNSK.contiguous(), block_mask=block_mask)
