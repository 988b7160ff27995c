"""The attention entry point (ptdit.attention.functional): SDPA against the MATH reference, in outputs and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ptdit.attention import AttentionBackend, attention
from ptdit.attention.functional import (
    CPU_SDPA_FP32_MAX_SCORES,
    attention_reference,
    cpu_sdpa_upcast,
    sdpa_upcasts,
)


def _qkv(dtype, B=2, N=2, L=10, S=12, K=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(B, N, n, K, generator=gen).to(dtype).requires_grad_() for n in (L, S, S)]


def _assert_close_with_grads(fn_a, fn_b, inputs, atol, rtol):
    out_a = fn_a(*inputs)
    grads_a = torch.autograd.grad(out_a.float().square().sum(), inputs)
    out_b = fn_b(*inputs)
    grads_b = torch.autograd.grad(out_b.float().square().sum(), inputs)
    torch.testing.assert_close(out_a.float(), out_b.float(), atol=atol, rtol=rtol)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga.float(), gb.float(), atol=atol * 4, rtol=rtol * 4)


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_backends_match_math(dtype, atol, masked):
    q, k, v = _qkv(dtype)
    mask = None
    if masked:
        mask = torch.rand(2, 1, 10, 12, generator=torch.Generator().manual_seed(1)) > 0.4
        mask[..., 0] = True  # every query keeps a key

    def sdpa(q, k, v):
        return attention(q, k, v, mask, backend=AttentionBackend.SDPA)

    def math(q, k, v):
        return attention(q, k, v, mask, backend="math")

    _assert_close_with_grads(sdpa, math, [q, k, v], atol=atol, rtol=atol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_long_reduced_precision_attention_matches_math(dtype):
    # Past CPU_SDPA_FP32_MAX_SCORES the SDPA kernel runs in the inputs' own precision (no upcast).
    q, k, v = _qkv(dtype, B=1, N=1, L=272, S=272)
    assert not sdpa_upcasts(q, k, v)

    def sdpa(q, k, v):
        return attention(q, k, v, backend=AttentionBackend.SDPA)

    def math(q, k, v):
        return attention(q, k, v, backend="math")

    _assert_close_with_grads(sdpa, math, [q, k, v], atol=2e-2, rtol=2e-2)


def test_cpu_sdpa_upcast_rule():
    def qkv(dtype, L, S, grad=True):
        return [torch.zeros(1, 1, n, 4, dtype=dtype, requires_grad=grad) for n in (L, S, S)]

    assert sdpa_upcasts(*qkv(torch.bfloat16, 64, 16)) and sdpa_upcasts(*qkv(torch.float16, 4, 4))
    assert sdpa_upcasts(*qkv(torch.bfloat16, 256, CPU_SDPA_FP32_MAX_SCORES // 256))
    assert not sdpa_upcasts(*qkv(torch.bfloat16, 256, CPU_SDPA_FP32_MAX_SCORES // 256 + 1))
    assert not sdpa_upcasts(*qkv(torch.float32, 64, 16))
    assert not sdpa_upcasts(*qkv(torch.bfloat16, 64, 16, grad=False))  # inference keeps bf16
    with torch.no_grad():
        assert not sdpa_upcasts(*qkv(torch.bfloat16, 64, 16))
    with cpu_sdpa_upcast(False):  # the accelerator's path, for the memory estimate
        assert not sdpa_upcasts(*qkv(torch.bfloat16, 64, 16))
        with cpu_sdpa_upcast(True):
            assert sdpa_upcasts(*qkv(torch.bfloat16, 64, 16))
    assert sdpa_upcasts(*qkv(torch.bfloat16, 64, 16))  # restored on exit


def test_short_bf16_attention_runs_in_fp32_under_cpu_autocast():
    # CPU autocast lists SDPA as a bf16 op: the upcast must switch it off, or the kernel would see bf16 again.
    q, k, v = _qkv(torch.bfloat16, L=64, S=16)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention(q, k, v, backend=AttentionBackend.SDPA)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
    grads = torch.autograd.grad(out.float().square().sum(), [q, k, v])
    expected_grads = torch.autograd.grad(expected.float().square().sum(), [q, k, v])
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_reference_attention_is_plain_softmax():
    q, k, v = (t.detach() for t in _qkv(torch.float64))
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    expected = scores.softmax(-1) @ v
    torch.testing.assert_close(attention_reference(q, k, v), expected)


def test_non_boolean_mask_rejected():
    q, k, v = (t.detach() for t in _qkv(torch.float32))
    with pytest.raises(ValueError, match="boolean"):
        attention(q, k, v, torch.zeros(2, 1, 10, 12))
