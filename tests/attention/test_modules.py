"""Attention modules: window attention equals block-masked global attention, masked shifted windows, one batched
call for any number of windows."""

from __future__ import annotations

import pytest
import torch

from ptdit.attention import Attention
from ptdit.attention.modules import masked_window_attention
from ptdit.attention.window import WindowLayout
from ptdit.models.registry import build_model
from tests.helpers.models import text_inputs, tiny_config


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


def test_no_python_loop_over_windows(monkeypatch):
    """The number of attention kernel calls of a forward is the same for 4 and 64 windows."""
    import ptdit.attention.modules as modules

    calls = []
    original = modules.attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(modules, "attention", counting)
    model = build_model(tiny_config()).eval()
    counts = []
    for size in (16, 64):  # 8 x 8 and 32 x 32 tokens: 4 and 64 windows of (1, 4, 4)
        calls.clear()
        x, t, ctx, mask = text_inputs(size=size)
        with torch.no_grad():
            model(x, t, ctx, mask)
        counts.append(len(calls))
    assert counts[0] == counts[1]
