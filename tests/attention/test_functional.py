"""Fast attention paths against the reference, in outputs and gradients."""

from __future__ import annotations

import pytest
import torch

from ptdit.attention import Attention, AttentionBackend, attention, use_attention_backend
from ptdit.attention.functional import attention_reference
from ptdit.attention.modules import masked_window_attention
from ptdit.attention.window import WindowLayout


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


def test_non_boolean_mask_rejected():
    q, k, v = (t.detach() for t in _qkv(torch.float32))
    with pytest.raises(ValueError, match="boolean"):
        attention(q, k, v, torch.zeros(2, 1, 10, 12))


def test_window_attention_equals_block_masked_global_attention():
    torch.manual_seed(0)
    attn = Attention(16, 2)
    layout = WindowLayout.create((2, 4, 4), (2, 2, 2))
    x_BLD = torch.randn(2, layout.num_tokens, 16)
    windowed = layout.reverse(attn(layout.partition(x_BLD)))
    # Global attention where a token may only see tokens of its own window.
    win_id = layout.partition(torch.arange(layout.num_tokens).float()[None, :, None].expand(1, -1, 1))
    window_of = torch.empty(layout.num_tokens, dtype=torch.long)
    window_of[win_id[0, :, :, 0].long()] = torch.arange(layout.num_windows)[:, None].expand(-1, layout.window_tokens)
    block_mask = window_of[:, None] == window_of[None, :]
    torch.testing.assert_close(windowed, attn(x_BLD, mask=block_mask), atol=1e-5, rtol=1e-5)


def test_shifted_window_attention_equals_rolled_masked_global():
    torch.manual_seed(0)
    attn = Attention(16, 2)
    layout = WindowLayout.create((1, 8, 8), (1, 4, 4))
    x_BMWD = torch.randn(2, layout.num_windows, layout.window_tokens, 16)
    fast = layout.roll(
        masked_window_attention(attn, layout.roll(x_BMWD), layout.shift_mask("cpu"), layout.shift_split("cpu")),
        inverse=True,
    )
    # Global reference: on the unrolled grid, a token sees the tokens of its shifted window that are truly
    # adjacent (the same region), expressed as one (L, L) mask.
    L = layout.num_tokens
    ids = torch.arange(L).float()[None, :, None]
    rolled_ids = layout.roll(layout.partition(ids))[0, ..., 0].long()  # (M, W) original token index
    mask = torch.zeros(L, L, dtype=torch.bool)
    win_mask = layout.shift_mask("cpu")
    for m in range(layout.num_windows):
        mask[rolled_ids[m][:, None], rolled_ids[m][None, :]] = win_mask[m]
    expected = layout.partition(attn(layout.reverse(x_BMWD), mask=mask))
    torch.testing.assert_close(fast, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", ["sdpa", "math"])
@pytest.mark.parametrize(("grid", "window"), [((1, 8, 8), (1, 4, 4)), ((4, 4, 8), (2, 2, 4))])
def test_split_masked_windows_equal_reference_path(backend, grid, window):
    torch.manual_seed(0)
    attn = Attention(16, 2)
    attn.backend = backend
    layout = WindowLayout.create(grid, window)
    x = torch.randn(2, layout.num_windows, layout.window_tokens, 16, requires_grad=True)
    mask = layout.shift_mask("cpu")
    fast = masked_window_attention(attn, x, mask, layout.shift_split("cpu"))
    g_fast = torch.autograd.grad(fast.square().sum(), [x, *attn.parameters()])
    ref = masked_window_attention(attn, x, mask, None)
    g_ref = torch.autograd.grad(ref.square().sum(), [x, *attn.parameters()])
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
