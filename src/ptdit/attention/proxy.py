"""Proxy tokens of the Global Information Interaction Module (docs/architecture.md#proxy-tokens).

Shape legend: B batch, M windows, W tokens per window, P proxy tokens, Q tokens per proxy group, D width.
By default one proxy summarises one window (P = M). With `proxy_window` smaller than the window, each window
is split into contiguous sub-windows of that size and each sub-window gives one proxy, which is
`avg_pool3d` of the token grid with kernel = stride = proxy_window.

On a padded layout (docs/architecture.md#padding-and-masking) a proxy summarises only the real tokens of its
group; a group with no real token gives a padding proxy, which `real_proxy_index` leaves out.
"""

from __future__ import annotations

import torch
from einops import rearrange

from ptdit.attention.window import Size3, WindowLayout, window_partition, window_reverse
from ptdit.nn.cache import cached_tensor_builder

PROXY_MODES = ("mean", "first", "random")


def _reduce_groups(
    groups_BPQD: torch.Tensor, mode: str, generator: torch.Generator | None, real_PQ: torch.Tensor | None = None
) -> torch.Tensor:
    """One proxy per group of Q tokens: their mean, the first one, or a uniformly random one; with `real_PQ`
    (True = real token) only real tokens count."""
    if mode == "mean":
        if real_PQ is None:
            return groups_BPQD.mean(dim=2)
        # where, not a product: a padded value never enters the sum, nor its gradient
        total_BPD = torch.where(real_PQ[None, :, :, None], groups_BPQD, 0).sum(dim=2)
        return total_BPD / real_PQ.sum(dim=1).clamp(min=1)[None, :, None].to(groups_BPQD.dtype)
    if mode == "first":
        # Padding sits at the end of every axis, so a group's first token is real whenever any token is.
        return groups_BPQD[:, :, 0]
    if mode == "random":
        return _random_tokens(groups_BPQD, generator, real_PQ)
    raise ValueError(f"unknown proxy mode {mode!r}; choose one of {PROXY_MODES}")


def _random_tokens(
    groups_BPQD: torch.Tensor, generator: torch.Generator | None, real_PQ: torch.Tensor | None
) -> torch.Tensor:
    """One uniformly random (real) token per group, drawn independently per sample, group and call;
    `generator` makes the draw reproducible."""
    B, P, Q, D = groups_BPQD.shape
    gen_device = generator.device if generator is not None else groups_BPQD.device
    if real_PQ is None:
        idx_BP = torch.randint(0, Q, (B, P), generator=generator, device=gen_device)
    else:  # the largest of uniform scores over the real tokens is a uniform draw among them
        scores_BPQ = torch.rand((B, P, Q), generator=generator, device=gen_device)
        idx_BP = scores_BPQ.masked_fill(~real_PQ.to(gen_device), -1.0).argmax(dim=2)
    idx_BP = idx_BP.to(groups_BPQD.device)
    return torch.gather(groups_BPQD, 2, idx_BP[:, :, None, None].expand(B, P, 1, D))[:, :, 0]


def proxy_grid(layout: WindowLayout, proxy_window: Size3) -> Size3:
    """(F, Y, X) grid of the proxies for contiguous sub-windows of size `proxy_window` (of the padded grid)."""
    return tuple(g // q for g, q in zip(layout.padded_grid, proxy_window, strict=True))


def _groups(x_BMWD: torch.Tensor, layout: WindowLayout, proxy_window: Size3) -> torch.Tensor:
    """(B, P, Q, D): the tokens of each proxy group, groups in raster order of the proxy grid."""
    if proxy_window == layout.window:
        return x_BMWD
    grid_BFYXD = window_reverse(x_BMWD, layout.padded_grid, layout.window)
    return window_partition(grid_BFYXD, proxy_window)


@cached_tensor_builder
def _real_groups(layout: WindowLayout, proxy_window: Size3, device: str = "cpu") -> torch.Tensor:
    """(P, Q) boolean, True = real token, for the proxy groups of a padded layout."""
    real_1MW1 = layout.real_mask(torch.device("cpu"))[None, :, :, None]
    return _groups(real_1MW1, layout, proxy_window)[0, :, :, 0].to(device)


@cached_tensor_builder
def _real_proxy_index(layout: WindowLayout, proxy_window: Size3, device: str) -> torch.Tensor:
    return torch.nonzero(_real_groups(layout, proxy_window).any(dim=1)).flatten().to(device)


def real_proxy_index(layout: WindowLayout, proxy_window: Size3 | None, device: torch.device) -> torch.Tensor | None:
    """Indices of the proxies with at least one real token; None when nothing is padded (all are real)."""
    if not layout.padded:
        return None
    return _real_proxy_index(layout, tuple(proxy_window or layout.window), str(device))


def real_proxy_mask(layout: WindowLayout, proxy_window: Size3 | None, device: torch.device) -> torch.Tensor | None:
    """(P,) boolean, True = the proxy has at least one real token; None when nothing is padded."""
    if not layout.padded:
        return None
    return _real_groups(layout, tuple(proxy_window or layout.window), str(device)).any(dim=1)


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
        mode: "mean" (paper default), "first" (top-left token) or "random" (arXiv v1). On a padded layout
            each uses the real tokens of its group only.
        strided: reproduce the reference's grouping when several proxies share a window (reference defect 3:
            proxy j averages every k-th token, k = window / proxy_window per spatial axis, over all frames of the
            window). Only for comparisons with the reference; mean mode only; not on padded layouts.
        generator: random source for mode "random".

    Returns:
        (B, P, D) proxies of every group, padding groups included (see `real_proxy_index`). Unless `strided`,
        they are in raster order of the proxy grid (`proxy_grid(layout, proxy_window)`), which the
        interpolation injection relies on.
    """
    window = layout.window
    proxy_window = tuple(window if proxy_window is None else proxy_window)
    if strided and proxy_window != window:
        return _strided_proxies(x_BMWD, layout, proxy_window, mode)
    real_PQ = _real_groups(layout, proxy_window, str(x_BMWD.device)) if layout.padded else None
    return _reduce_groups(_groups(x_BMWD, layout, proxy_window), mode, generator, real_PQ)


def _strided_proxies(x_BMWD: torch.Tensor, layout: WindowLayout, proxy_window: Size3, mode: str) -> torch.Tensor:
    """The reference's strided grouping (see `pool_proxy_tokens`)."""
    if mode != "mean":
        raise ValueError(f"strided (reference_compat) proxies support mode 'mean' only, got {mode!r}")
    if layout.padded:
        raise ValueError(
            f"strided (reference_compat) proxies need a grid the window tiles; grid {layout.grid} is padded to "
            f"{layout.padded_grid} for window {layout.window}: use reference_compat=False or a tiling size"
        )
    window = layout.window
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
