"""The attention entry point (ptdit.attention.functional): SDPA against the MATH reference, in outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from ptdit.attention import AttentionBackend, attention
from ptdit.attention.functional import attention_reference


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


def test_reference_attention_is_plain_softmax():
    q, k, v = (t.detach() for t in _qkv(torch.float64))
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    expected = scores.softmax(-1) @ v
    torch.testing.assert_close(attention_reference(q, k, v), expected)


def test_non_boolean_mask_rejected():
    q, k, v = (t.detach() for t in _qkv(torch.float32))
    with pytest.raises(ValueError, match="boolean"):
        attention(q, k, v, torch.zeros(2, 1, 10, 12))
