"""Proxy extraction: mean = avg_pool3d, first = top-left, random, contiguous sub-windows, reference lattice."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ptdit.attention.proxy import pool_proxy_tokens
from ptdit.attention.window import WindowLayout


def _grid_and_windows(grid=(4, 8, 8), window=(2, 4, 4), D=3):
    layout = WindowLayout.create(grid, window)
    x_BFYXD = torch.randn(2, *grid, D)
    return layout, x_BFYXD, layout.partition(x_BFYXD.flatten(1, 3))


def _avg_pool(x_BFYXD, kernel):
    pooled = F.avg_pool3d(x_BFYXD.permute(0, 4, 1, 2, 3), kernel_size=kernel, stride=kernel)  # (B, D, f, y, x)
    return pooled.flatten(2).transpose(1, 2)  # (B, P, D) raster order


def test_mean_proxies_equal_avg_pool3d():
    layout, x_BFYXD, x_BMWD = _grid_and_windows()
    torch.testing.assert_close(pool_proxy_tokens(x_BMWD, layout), _avg_pool(x_BFYXD, (2, 4, 4)))


def test_first_proxies_are_top_left_tokens():
    layout, x_BFYXD, x_BMWD = _grid_and_windows()
    expected = x_BFYXD[:, ::2, ::4, ::4].flatten(1, 3)
    assert torch.equal(pool_proxy_tokens(x_BMWD, layout, mode="first"), expected)


def test_random_proxies_are_tokens_of_their_window_and_reproducible():
    layout, _, x_BMWD = _grid_and_windows()
    a = pool_proxy_tokens(x_BMWD, layout, mode="random", generator=torch.Generator().manual_seed(3))
    b = pool_proxy_tokens(x_BMWD, layout, mode="random", generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    # each proxy equals one token of its own window
    match = (x_BMWD == a[:, :, None]).all(-1).any(-1)
    assert match.all()
    c = pool_proxy_tokens(x_BMWD, layout, mode="random", generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a, c)


@pytest.mark.parametrize("proxy_window", [(2, 2, 2), (1, 4, 2), (1, 1, 1)])
def test_sub_window_proxies_are_contiguous(proxy_window):
    layout, x_BFYXD, x_BMWD = _grid_and_windows()
    got = pool_proxy_tokens(x_BMWD, layout, proxy_window)
    torch.testing.assert_close(got, _avg_pool(x_BFYXD, proxy_window))


def test_strided_reference_proxies_average_lattices_over_all_frames():
    layout, x_BFYXD, x_BMWD = _grid_and_windows(grid=(2, 4, 4), window=(2, 4, 4))
    got = pool_proxy_tokens(x_BMWD, layout, (1, 2, 2), strided=True)  # k = 2 per spatial axis
    assert got.shape == (2, 4, 3)
    # proxy (jy, jx) averages rows jy, jy+2 and cols jx, jx+2 of both frames
    expected = torch.stack([x_BFYXD[:, :, jy::2, jx::2].mean(dim=(1, 2, 3)) for jy in range(2) for jx in range(2)], 1)
    torch.testing.assert_close(got, expected)
    contiguous = pool_proxy_tokens(x_BMWD, layout, (1, 2, 2))
    assert not torch.allclose(got[:, :4], contiguous[:, :4])


def test_unknown_mode_rejected():
    layout, _, x_BMWD = _grid_and_windows()
    with pytest.raises(ValueError, match="unknown proxy mode"):
        pool_proxy_tokens(x_BMWD, layout, mode="median")
