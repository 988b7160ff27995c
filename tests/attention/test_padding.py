"""Padded layouts: padding, crop, the masks (padded tokens are never keys), the split fast path against a
full-grid reference, and proxies over real tokens only (docs/architecture.md#padding-and-masking)."""

from __future__ import annotations

import itertools

import pytest
import torch

from ptdit.attention.modules import Attention, masked_window_attention
from ptdit.attention.proxy import pool_proxy_tokens, real_proxy_index, real_proxy_mask
from ptdit.attention.window import WindowLayout, real_token_mask, window_partition

# (real grid, window): frames, rows and columns padded, and one axis left alone
CASES = [((3, 5, 6), (2, 4, 4)), ((1, 10, 7), (1, 4, 4)), ((5, 4, 6), (4, 2, 2))]


def _coords(layout: WindowLayout) -> torch.Tensor:
    """(L_pad, 3) grid coordinates of the padded grid in raster order."""
    return torch.tensor(list(itertools.product(*(range(n) for n in layout.padded_grid))))


def _full_grid_mask(layout: WindowLayout, shifted: bool) -> torch.Tensor:
    """(L_pad, L_pad) reference mask from coordinates alone: same (shifted) window, same side of every wrap,
    key real. Rows of padded queries are left as they come (they are never compared)."""
    c = _coords(layout)
    n, w = torch.tensor(layout.padded_grid), torch.tensor(layout.window)
    s = torch.tensor(layout.shift) if shifted else torch.zeros(3, dtype=torch.long)
    rolled = (c - s) % n  # where the token lands in the grid rolled by -shift
    win, wrapped = rolled // w, (rolled >= n - s) & (s > 0)
    same = (win[:, None] == win[None]).all(-1) & (wrapped[:, None] == wrapped[None]).all(-1)
    real = (c < torch.tensor(layout.grid)).all(-1)
    return same & real[None, :]


def _reference_attention(attn, layout, x_BLD, shifted):
    """Plain masked attention over the whole padded grid (B, L_pad, D), real query rows only."""
    mask = _full_grid_mask(layout, shifted)
    real = (_coords(layout) < torch.tensor(layout.grid)).all(-1)
    mask = mask | ~real[:, None]  # padded query rows: anything finite; they are not compared
    return attn(x_BLD, mask=mask)[:, real]


def _windowed(layout, x_BLD_pad):
    """(B, L_pad, D) raster tokens of the padded grid -> (B, M, W, D) windows."""
    return window_partition(x_BLD_pad.unflatten(1, layout.padded_grid), layout.window)


@pytest.mark.parametrize(("grid", "window"), CASES)
@pytest.mark.parametrize("shifted", [False, True], ids=["window", "shifted"])
@pytest.mark.parametrize("split", [False, True], ids=["all_masked", "split"])
def test_masked_window_attention_equals_full_grid_reference(grid, window, shifted, split):
    torch.manual_seed(0)
    layout = WindowLayout.create(grid, window)
    attn = Attention(8, 2)
    x_BLD = torch.randn(2, layout.num_padded_tokens, 8, requires_grad=True)
    x_BMWD = _windowed(layout, x_BLD)
    device = x_BLD.device
    if shifted:
        mask, split_idx = layout.shift_mask(device), layout.shift_split(device)
        out = layout.roll(
            masked_window_attention(attn, layout.roll(x_BMWD), mask, split_idx if split else None), inverse=True
        )
    else:
        mask, split_idx = layout.window_mask(device), layout.window_split(device)
        out = masked_window_attention(attn, x_BMWD, mask, split_idx if split else None)
    got = layout.reverse(out)
    expected = _reference_attention(attn, layout, x_BLD, shifted)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # gradients agree, and no padded token gets any: it is never a key, and its own output is cropped
    g = torch.randn_like(got)
    (grad_got,) = torch.autograd.grad(got, x_BLD, g)
    (grad_ref,) = torch.autograd.grad(expected, x_BLD, g)
    torch.testing.assert_close(grad_got, grad_ref, atol=1e-5, rtol=1e-5)
    real = (_coords(layout) < torch.tensor(layout.grid)).all(-1)
    assert torch.isfinite(grad_got).all() and grad_got[:, ~real].abs().max() == 0


@pytest.mark.parametrize(("grid", "window"), CASES)
def test_padded_masks_never_let_a_padded_key_in_and_no_row_is_empty(grid, window):
    layout = WindowLayout.create(grid, window)
    for mask_MWW, shift in ((layout.window_mask("cpu"), (0, 0, 0)), (layout.shift_mask("cpu"), layout.shift)):
        real_MW = real_token_mask(layout.grid, layout.padded_grid, layout.window, shift)
        assert mask_MWW.any(-1).all()  # every query row has a key: no NaN from an empty softmax
        real_rows = mask_MWW & real_MW[:, :, None]
        assert not (real_rows & ~real_MW[:, None, :]).any()  # real queries never see a padded key
        assert (real_rows.diagonal(dim1=1, dim2=2) == real_MW).all()  # ... and always see themselves


def test_partition_pads_with_zeros_and_reverse_crops():
    layout = WindowLayout.create((3, 5, 6), (2, 4, 4))
    x_BLD = torch.randn(2, layout.num_tokens, 3)
    x_BMWD = layout.partition(x_BLD)
    assert x_BMWD.shape == (2, layout.num_windows, 32, 3)
    real_MW = layout.real_mask("cpu")
    assert x_BMWD[:, ~real_MW].abs().max() == 0 and int(real_MW.sum()) == layout.num_tokens
    assert torch.equal(layout.reverse(x_BMWD), x_BLD)
    torch.testing.assert_close(layout.roll(layout.roll(x_BMWD), inverse=True), x_BMWD)
    torch.testing.assert_close(layout.roll(x_BMWD), layout.roll_reference(x_BMWD))


def test_tiling_layout_has_no_padding_mask():
    layout = WindowLayout.create((4, 8, 8), (2, 4, 4))
    assert not layout.padded
    assert layout.real_mask("cpu") is None and layout.window_mask("cpu") is None
    assert real_proxy_index(layout, None, torch.device("cpu")) is None


def _proxy_case(proxy_window=None):
    layout = WindowLayout.create((3, 5, 6), (2, 4, 4))
    x_BFYXD = torch.randn(2, *layout.grid, 3)
    return layout, x_BFYXD, layout.partition(x_BFYXD.flatten(1, 3)), proxy_window or layout.window


@pytest.mark.parametrize("proxy_window", [None, (1, 2, 2), (2, 4, 2)])
def test_mean_proxies_average_real_tokens_only(proxy_window):
    layout, x_BFYXD, x_BMWD, q = _proxy_case(proxy_window)
    got = pool_proxy_tokens(x_BMWD, layout, proxy_window)
    ranges = [range(0, n, k) for n, k in zip(layout.padded_grid, q, strict=True)]
    expected = []
    for f, y, x in itertools.product(*ranges):  # raster order of the proxy grid; empty groups give 0
        region = x_BFYXD[:, f : f + q[0], y : y + q[1], x : x + q[2]].flatten(1, 3)
        expected.append(region.mean(1) if region.shape[1] else torch.zeros(2, 3))
    torch.testing.assert_close(got, torch.stack(expected, 1))
    keep = real_proxy_index(layout, proxy_window, torch.device("cpu"))
    mask = real_proxy_mask(layout, proxy_window, torch.device("cpu"))
    assert torch.equal(torch.nonzero(mask).flatten(), keep)
    assert len(keep) == torch.tensor([-(-n // k) for n, k in zip(layout.grid, q, strict=True)]).prod()


@pytest.mark.parametrize("mode", ["first", "random"])
def test_first_and_random_proxies_pick_real_tokens(mode):
    layout, x_BFYXD, x_BMWD, _ = _proxy_case()
    gen = torch.Generator().manual_seed(0)
    keep = real_proxy_index(layout, None, torch.device("cpu"))
    real_tokens = x_BFYXD.flatten(1, 3)  # (B, L, D)
    for _ in range(5):  # several draws: a padded pick (zeros) would not match any real token
        got = pool_proxy_tokens(x_BMWD, layout, mode=mode, generator=gen)[:, keep]
        assert (got[:, :, None] == real_tokens[:, None]).all(-1).any(-1).all()


def test_strided_proxies_are_refused_on_padded_layouts():
    layout, _, x_BMWD, _ = _proxy_case()
    with pytest.raises(ValueError, match="need a grid the window tiles"):
        pool_proxy_tokens(x_BMWD, layout, (1, 2, 2), strided=True)
