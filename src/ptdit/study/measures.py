"""The studies' measures (docs/study.md#measures): rank correlation, seed spread, grid artefacts, and the
window structure of attention maps (paper Fig. 2, made quantitative).

Shape legend: N samples (or heads), L tokens (raster order over a (Y, X) grid), H / W pixel rows / columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

Size2 = tuple[int, int]


# ----------------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------------


def ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties given their average rank."""
    array = np.asarray(values, dtype=float)
    order = np.argsort(array, kind="stable")
    out = np.empty(len(array))
    out[order] = np.arange(1, len(array) + 1)
    for value in np.unique(array):
        tied = array == value
        out[tied] = out[tied].mean()
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman rank correlation of two equally long sequences; None when it is undefined (fewer than 2 items, or
    one side constant)."""
    if len(a) != len(b):
        raise ValueError(f"spearman needs equally long sequences, got {len(a)} and {len(b)}")
    if len(a) < 2:
        return None
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """Mean, sample standard deviation (0 for one value), min and max over seeds."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return {
        "mean": float(array.mean()),
        "std": std,
        "min": float(array.min()),
        "max": float(array.max()),
        "n": len(array),
    }


# ----------------------------------------------------------------------------------------------------------------
# Grid artefacts (paper Fig. 10: without shifted windows, visible grid artefacts)
# ----------------------------------------------------------------------------------------------------------------


def grid_artefact_ratio(pixels: torch.Tensor, patch: int, window: Size2) -> float:
    """Image-gradient energy across window boundaries divided by that across the patch boundaries inside windows.

    Both sets of pixel edges are patch boundaries, so patch-level artefacts cancel and only the windows' own
    discontinuities remain; an image with no preference for the window grid scores about 1, a model that draws
    its windows' edges scores above 1.

    Args:
        pixels: (N, C, F, H, W) or (N, C, H, W) images.
        patch: pixels per token side.
        window: (rows, cols) of a window in tokens; at least one side must be > 1 (else there is no inside).
    """
    if max(window) < 2:
        raise ValueError(f"window {window} has no patch boundary inside it; the grid-artefact ratio needs one > 1")
    x = pixels.float()
    x = x.flatten(0, -3) if x.dim() >= 3 else x  # (..., H, W)
    on, inside = [], []
    for axis, size in ((-2, window[0]), (-1, window[1])):
        if size < 2:
            continue
        diff = (x.narrow(axis, 1, x.shape[axis] - 1) - x.narrow(axis, 0, x.shape[axis] - 1)).square()
        # the edge between pixel i and i + 1 is a patch boundary when (i + 1) % patch == 0
        edges = torch.arange(1, x.shape[axis])
        patch_edge = edges % patch == 0
        window_edge = edges % (patch * size) == 0
        energy = diff.mean(dim=tuple(d for d in range(diff.dim()) if d != diff.dim() + axis))
        on.append(energy[window_edge].mean())
        inside.append(energy[patch_edge & ~window_edge].mean())
    return float(torch.stack(on).mean() / torch.stack(inside).mean().clamp(min=1e-12))


# ----------------------------------------------------------------------------------------------------------------
# Attention maps of global-attention baselines
# ----------------------------------------------------------------------------------------------------------------


def window_ids(grid: Size2, window: Size2) -> torch.Tensor:
    """(L,) index of each raster-order token's window."""
    Y, X = grid
    wy, wx = window
    if Y % wy or X % wx:
        raise ValueError(f"window {window} does not tile the token grid {grid}")
    rows = torch.arange(Y)[:, None] // wy
    cols = torch.arange(X)[None, :] // wx
    return (rows * (X // wx) + cols).flatten()


def in_window_mass(probs: torch.Tensor, grid: Size2, window: Size2) -> float:
    """Mean share of each query's attention that falls on keys of its own window.

    Args:
        probs: (..., L, L) attention probabilities (rows sum to 1), tokens in raster order of `grid`.
    Uniform attention gives W / L (tokens per window over tokens); block-diagonal attention over windows gives 1.
    """
    ids = window_ids(grid, window).to(probs.device)
    same_LL = ids[:, None] == ids[None, :]
    return float((probs.float() * same_LL).sum(-1).mean())


def _offsets(window: Size2) -> list[Size2]:
    """Distinct token offsets (dy, dx) that occur between two tokens of one window (one of each +/- pair)."""
    wy, wx = window
    return [(dy, dx) for dy in range(wy) for dx in range(-wx + 1, wx) if (dy, dx) > (0, 0)]


def _pair_similarity(probs: torch.Tensor, ids: torch.Tensor, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """(..., K) cosine similarity of the attention rows of token pairs over the keys outside both tokens' windows."""
    a, b = probs[..., first, :].float(), probs[..., second, :].float()
    outside_KL = (ids[None, :] != ids[first][:, None]) & (ids[None, :] != ids[second][:, None])
    a, b = a * outside_KL, b * outside_KL
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp(min=1e-12)


def window_row_similarity(probs: torch.Tensor, grid: Size2, window: Size2) -> dict[str, float]:
    """How alike the attention rows of tokens in one window are, against pairs at the same offsets that straddle
    windows (paper Fig. 2: tokens of a window attend alike, which is what lets one proxy speak for them).

    Args:
        probs: (..., L, L) attention probabilities, raster order of `grid`.

    Returns:
        `{"same_window", "cross_window", "ratio"}`: mean cosine similarity of the attention distributions over
        the keys outside both tokens' windows, for pairs in one window and for pairs at the same (dy, dx)
        offsets in different windows, averaged over offsets with equal weight. Identical rows give 1 and 1.
    """
    Y, X = grid
    ids = window_ids(grid, window).to(probs.device)
    same, cross = [], []
    for dy, dx in _offsets(window):
        yy, xx = torch.meshgrid(torch.arange(Y), torch.arange(X), indexing="ij")
        valid = (yy + dy < Y) & (xx + dx >= 0) & (xx + dx < X)
        first = (yy * X + xx)[valid].to(probs.device)
        second = ((yy + dy) * X + xx + dx)[valid].to(probs.device)
        sim = _pair_similarity(probs, ids, first, second)
        in_one = ids[first] == ids[second]
        if in_one.any() and (~in_one).any():
            same.append(sim[..., in_one].mean())
            cross.append(sim[..., ~in_one].mean())
    if not same:
        raise ValueError(f"window {window} on grid {grid} gives no offset with pairs both inside and across windows")
    s, c = float(torch.stack(same).mean()), float(torch.stack(cross).mean())
    return {"same_window": s, "cross_window": c, "ratio": s / c if c > 0 else math.inf}
