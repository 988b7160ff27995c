"""Attention backends (ptdit.attention.backends): FlexAttention against MATH, backend selection and precedence."""

from __future__ import annotations

import pytest
import torch

from ptdit.attention import Attention, AttentionBackend, attention, use_attention_backend
from ptdit.models.registry import build_model
from tests.helpers.models import randomize_, text_inputs, tiny_config

try:
    import torch.nn.attention.flex_attention

    HAS_FLEX = True
except ImportError:  # torch < 2.5
    HAS_FLEX = False
flex_available = pytest.mark.skipif(not HAS_FLEX, reason="torch.nn.attention.flex_attention needs torch >= 2.5")


def _qkv(device, dtype, B=3, N=2, L=40, S=24, K=16, seed=0, grad=False):
    gen = torch.Generator().manual_seed(seed)
    qkv = [torch.randn(B, N, n, K, generator=gen).to(device=device, dtype=dtype) for n in (L, S, S)]
    return [t.requires_grad_(grad) for t in qkv]


def _mask(kind, B=3, N=2, L=40, S=24):
    gen = torch.Generator().manual_seed(1)
    shape = {"none": None, "shared": (1, 1, L, S), "per-sample": (B, 1, L, S), "per-head": (B, N, L, S), "2d": (L, S)}
    if shape[kind] is None:
        return None
    mask = torch.rand(shape[kind], generator=gen) > 0.5
    mask[..., 0] = True  # every query keeps a key
    return mask


@flex_available
@pytest.mark.parametrize("kind", ["none", "shared", "per-sample", "per-head", "2d"])
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_flex_matches_math_forward_cpu(kind, dtype, atol):
    """On CPU torch's FlexAttention runs eagerly and has no backward: outputs only (gradients: the gpu test)."""
    q, k, v = _qkv("cpu", dtype)
    mask = _mask(kind)
    with torch.no_grad():
        out = attention(q, k, v, mask, backend=AttentionBackend.FLEX)
        ref = attention(q, k, v, mask, backend="math")
    torch.testing.assert_close(out.float(), ref.float(), atol=atol, rtol=atol)


@flex_available
def test_flex_backward_on_cpu_is_a_clear_error():
    q, k, v = _qkv("cpu", torch.float32, grad=True)
    with pytest.raises(ValueError, match="no backward on CPU"):
        attention(q, k, v, backend="flex")


@flex_available
def test_flex_in_ptdit_matches_math():
    """Whole model: window, masked shifted windows, proxies and padded text through flex == MATH."""
    model = randomize_(build_model(tiny_config())).eval()
    x, t, ctx, mask = text_inputs()
    with torch.no_grad():
        with use_attention_backend("flex"):
            out = model(x, t, ctx, mask)
        with use_attention_backend("math"):
            ref = model(x, t, ctx, mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", ["none", "shared", "per-sample", "per-head"])
@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 2e-4), (torch.bfloat16, 2e-2)])
def test_flex_matches_math_with_grads_cuda(kind, dtype, atol):
    L, S = 256, 192  # several 128-token blocks, so block sparsity is exercised
    q, k, v = _qkv("cuda", dtype, L=L, S=S, K=64, grad=True)
    mask = _mask(kind, L=L, S=S)
    mask = None if mask is None else mask.cuda()
    outs, grads = [], []
    for backend in ("flex", "math"):
        out = attention(q, k, v, mask, backend=backend)
        grads.append(torch.autograd.grad(out.float().square().sum(), (q, k, v)))
        outs.append(out)
    torch.testing.assert_close(outs[0].float(), outs[1].float(), atol=atol, rtol=atol)
    for ga, gb in zip(*grads, strict=True):
        torch.testing.assert_close(ga.float(), gb.float(), atol=atol * 10, rtol=atol * 10)


def test_backend_context_and_module_override():
    calls = []
    attn = Attention(16, 2)
    x = torch.randn(1, 5, 16)
    import ptdit.attention.functional as functional

    original = functional.attention_reference

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    functional.attention_reference = spy
    try:
        attn(x)
        assert not calls  # default: SDPA
        with use_attention_backend("math"):
            attn(x)
        assert len(calls) == 1
        attn.backend = "math"
        attn(x)
        assert len(calls) == 2
    finally:
        functional.attention_reference = original
    with pytest.raises(ValueError, match="unknown attention backend"), use_attention_backend("flash9"):
        pass
