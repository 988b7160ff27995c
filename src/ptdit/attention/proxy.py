"""Proxy tokens of the Global Information Interaction Module (docs/architecture.md#proxy-tokens).

Shape legend: B batch, M windows, W tokens per window, P proxy tokens, Q tokens per proxy group, D width.
By default one proxy summarises one window (P = M). With `proxy_window` smaller than the window, each window
is split into contiguous sub-windows of that size and each sub-window gives one proxy, which is
`avg_pool3d` of the token grid with kernel = stride = proxy_window.
"""

from __future__ import annotations

import torch
from einops import rearrange

from ptdit.attention.window import Size3, WindowLayout, window_partition, window_reverse

PROXY_MODES = ("mean", "first", "random")


def _reduce_groups(groups_BPQD: torch.Tensor, mode: str, generator: torch.Generator | None) -> torch.Tensor:
    """One proxy per group of Q tokens: their mean, the first one, or a uniformly random one."""
    if mode == "mean":
        return groups_BPQD.mean(dim=2)
    if mode == "first":
        return groups_BPQD[:, :, 0]
    if mode == "random":
        # Drawn independently per sample, group and call; `generator` makes the draw reproducible.
        B, P, Q, D = groups_BPQD.shape
        gen_device = generator.device if generator is not None else groups_BPQD.device
        idx_BP = torch.randint(0, Q, (B, P), generator=generator, device=gen_device).to(groups_BPQD.device)
        return torch.gather(groups_BPQD, 2, idx_BP[:, :, None, None].expand(B, P, 1, D))[:, :, 0]
    raise ValueError(f"unknown proxy mode {mode!r}; choose one of {PROXY_MODES}")


def proxy_grid(layout: WindowLayout, proxy_window: Size3) -> Size3:
    """(F, Y, X) grid of the proxies for contiguous sub-windows of size `proxy_window`."""
    return tuple(g // q for g, q in zip(layout.grid, proxy_window, strict=True))


def pool_proxy_tokens(
    x_BMWD: torch.Tensor,
    layout: WindowLayout,
    proxy_window: Size3 | None = None,
    *,
    mode: str = "mean",
    strided: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extracts proxy tokens from windowed tokens.

    Args:
        x_BMWD: (B, M, W, D) tokens in the layout's windows.
        layout: the grid and window of `x_BMWD`.
        proxy_window: size of the region one proxy summarises; None or the window size gives one per window.
        mode: "mean" (paper default), "first" (top-left token) or "random" (arXiv v1).
        strided: reproduce the reference's grouping when several proxies share a window (reference defect 3:
            proxy j averages every k-th token, k = window / proxy_window per spatial axis, over all frames of the
            window). Only for comparisons with the reference; mean mode only.
        generator: random source for mode "random".

    Returns:
        (B, P, D) proxies. Unless `strided`, they are in raster order of the proxy grid
        (`proxy_grid(layout, proxy_window)`), which the interpolation injection relies on.
    """
    window = layout.window
    proxy_window = tuple(window if proxy_window is None else proxy_window)
    if proxy_window == window:
        return _reduce_groups(x_BMWD, mode, generator)
    if strided:
        if mode != "mean":
            raise ValueError(f"strided (reference_compat) proxies support mode 'mean' only, got {mode!r}")
        ky, kx = window[1] // proxy_window[1], window[2] // proxy_window[2]
        groups = rearrange(
            x_BMWD,
            "b m (wf ay ky ax kx) d -> b (m ky kx) (wf ay ax) d",
            wf=window[0],
            ay=proxy_window[1],
            ky=ky,
            ax=proxy_window[2],
            kx=kx,
        )
        return groups.mean(dim=2)
    grid_BFYXD = window_reverse(x_BMWD, layout.grid, window)
    return _reduce_groups(window_partition(grid_BFYXD, proxy_window), mode, generator)
