"""Window partition / shift round-trips and the shifted-window mask against a brute-force labelling."""

from __future__ import annotations

import itertools

import pytest
import torch

from ptdit.attention.window import (
    WindowLayout,
    masked_window_split,
    shift_windows,
    shifted_window_mask,
    window_partition,
    window_reverse,
)

GRIDS_WINDOWS = [
    ((1, 8, 8), (1, 4, 4)),
    ((1, 8, 12), (1, 4, 2)),  # non-square grid, non-square window
    ((4, 4, 4), (2, 2, 2)),  # video
    ((8, 4, 6), (4, 2, 3)),  # video, odd window
    ((2, 6, 4), (2, 1, 4)),  # window of size 1 on an axis
    ((1, 4, 4), (1, 1, 1)),
]


@pytest.mark.parametrize(("grid", "window"), GRIDS_WINDOWS)
def test_window_partition_reverse_roundtrip(grid, window):
    x_BFYXD = torch.randn(2, *grid, 5)
    win_BMWD = window_partition(x_BFYXD, window)
    M = (grid[0] // window[0]) * (grid[1] // window[1]) * (grid[2] // window[2])
    assert win_BMWD.shape == (2, M, window[0] * window[1] * window[2], 5)
    assert torch.equal(window_reverse(win_BMWD, grid, window), x_BFYXD)


def test_window_partition_order_is_raster():
    # Windows in (f, y, x)-block raster order; tokens inside in (f, y, x) offset raster order.
    grid, window = (2, 4, 4), (2, 2, 2)
    idx = torch.arange(32).reshape(1, *grid, 1).float()
    win = window_partition(idx, window)[0, ..., 0]
    assert win[0].tolist() == [0, 1, 4, 5, 16, 17, 20, 21]
    assert win[1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]
    assert win[2, 0].item() == 8


@pytest.mark.parametrize(("grid", "window"), GRIDS_WINDOWS)
def test_shift_unshift_is_identity(grid, window):
    layout = WindowLayout.create(grid, window)
    x_BMWD = torch.randn(2, layout.num_windows, layout.window_tokens, 3)
    assert torch.equal(layout.roll(layout.roll(x_BMWD), inverse=True), x_BMWD)
    x_BFYXD = torch.randn(1, *grid, 2)
    assert torch.equal(shift_windows(shift_windows(x_BFYXD, layout.shift), tuple(-s for s in layout.shift)), x_BFYXD)


@pytest.mark.parametrize(("grid", "window"), GRIDS_WINDOWS)
def test_gather_roll_equals_reference_roll(grid, window):
    layout = WindowLayout.create(grid, window)
    x_BMWD = torch.randn(2, layout.num_windows, layout.window_tokens, 3, requires_grad=True)
    for inverse in (False, True):
        fast = layout.roll(x_BMWD, inverse=inverse)
        ref = layout.roll_reference(x_BMWD, inverse=inverse)
        assert torch.equal(fast, ref)
        g_fast, g_ref = (
            torch.autograd.grad((y * torch.arange(y.numel()).view_as(y)).sum(), x_BMWD)[0] for y in (fast, ref)
        )
        assert torch.equal(g_fast, g_ref)


def test_shift_moves_tokens_by_minus_shift():
    x = torch.arange(8.0).reshape(1, 1, 1, 8, 1)
    assert shift_windows(x, (0, 0, 2)).flatten().tolist() == [2, 3, 4, 5, 6, 7, 0, 1]


def _brute_force_mask(grid, window, shift):
    """The Swin / reference recipe: label up to 27 regions with slices on the rolled grid, then compare."""
    labels = torch.zeros(grid, dtype=torch.long)
    slices_per_axis = []
    for length, w, s in zip(grid, window, shift, strict=True):
        if s == 0:
            slices_per_axis.append([slice(0, length)])
        else:
            slices_per_axis.append([slice(0, length - w), slice(length - w, length - s), slice(length - s, length)])
    for region, (sf, sy, sx) in enumerate(itertools.product(*slices_per_axis)):
        labels[sf, sy, sx] = region
    nf, ny, nx = grid
    wf, wy, wx = window
    M = (nf // wf) * (ny // wy) * (nx // wx)
    W = wf * wy * wx
    mask = torch.zeros(M, W, W, dtype=torch.bool)
    m = 0
    for bf in range(nf // wf):
        for by in range(ny // wy):
            for bx in range(nx // wx):
                tokens = [
                    (bf * wf + i, by * wy + j, bx * wx + k) for i in range(wf) for j in range(wy) for k in range(wx)
                ]
                for a, ta in enumerate(tokens):
                    for b, tb in enumerate(tokens):
                        mask[m, a, b] = labels[ta] == labels[tb]
                m += 1
    return mask


@pytest.mark.parametrize(("grid", "window"), GRIDS_WINDOWS)
def test_shifted_window_mask_matches_region_labelling(grid, window):
    layout = WindowLayout.create(grid, window)
    expected = _brute_force_mask(grid, window, layout.shift)
    got = shifted_window_mask(grid, window, layout.shift)
    assert torch.equal(got, expected)
    assert got.diagonal(dim1=1, dim2=2).all(), "every token must see itself"


def test_masked_window_split_only_boundary_windows():
    grid, window = (1, 16, 16), (1, 4, 4)
    plain, masked, inverse = masked_window_split(grid, window, (0, 2, 2))
    # 4 x 4 windows: the last row and last column of windows mix wrapped tokens -> 7 masked, 9 plain.
    assert masked.numel() == 7 and plain.numel() == 9
    assert torch.equal(torch.cat([plain, masked])[inverse], torch.arange(16))
    mask = shifted_window_mask(grid, window, (0, 2, 2))
    assert mask[plain].all() and not mask[masked].all(dim=(1, 2)).any()


def test_mask_cache_is_per_grid():
    a = shifted_window_mask((1, 8, 8), (1, 4, 4), (0, 2, 2))
    b = shifted_window_mask((1, 16, 16), (1, 4, 4), (0, 2, 2))
    assert a.shape == (4, 16, 16) and b.shape == (16, 16, 16)
    assert shifted_window_mask((1, 8, 8), (1, 4, 4), (0, 2, 2)) is a


def test_layout_without_padding_rejects_grid_not_divisible_with_nearest_sizes():
    with pytest.raises(ValueError, match=r"H=16 or 32") as err:
        WindowLayout.create((1, 15, 16), (1, 8, 8), patch_size=2, allow_padding=False)
    assert "(1, 8, 8)" in str(err.value) and "(1, 16, 16)" in str(err.value)
    with pytest.raises(ValueError, match="F=4 or 8"):
        WindowLayout.create((6, 4, 4), (4, 2, 2), patch_size=2, allow_padding=False)


def test_layout_pads_grid_not_divisible_to_next_multiple():
    layout = WindowLayout.create((6, 15, 16), (4, 8, 8))
    assert layout.padded and layout.padded_grid == (8, 16, 16) and layout.grid == (6, 15, 16)
    assert (layout.num_tokens, layout.num_padded_tokens, layout.num_windows) == (6 * 15 * 16, 8 * 16 * 16, 8)
    tiled = WindowLayout.create((8, 16, 16), (4, 8, 8))
    assert not tiled.padded and tiled.padded_grid == tiled.grid
