"""Latent shape -> validated attention window: the paper's window rule, in one place.

The paper keeps 8 x 8 windows per frame at every resolution (256 px -> (1, 2, 2), ..., 2048 px -> (1, 16, 16);
paper Eq. 4 and its table; docs/architecture.md#window-sizes) and a temporal window p_f = 4 for video;
multi-view uses p_f = 2 (docs/decisions.md#multi-view-window). Sizes the rule does not divide are padded
(docs/decisions.md#any-size). A model trained with an explicit window keeps
it: the window is part of the checkpoint's pipeline settings. Global-attention baselines (DiT, PixArt-alpha)
have no window.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ptdit.attention.window import Size3, validate_window
from ptdit.recipe.tasks import get_task

if TYPE_CHECKING:
    from ptdit.config import ModelConfig

WINDOWS_PER_SIDE = 8  # images keep 8 x 8 = 64 windows at 256, 512, 1024 and 2048 px


def temporal_window(task: str) -> int:
    """The paper's temporal window p_f (in latent frames) for a task."""
    return get_task(task).temporal_window


def token_grid(latent_shape: Sequence[int], patch_size: int) -> Size3:
    """(B, C, F, H, W) or (C, F, H, W) latent shape -> (F, Y, X) token grid for a spatial patch size."""
    *_, frames, height, width = latent_shape
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"latent height and width must be multiples of the patch size {patch_size}, got H={height}, W={width}"
        )
    return (int(frames), height // patch_size, width // patch_size)


def paper_window(grid: Size3, *, temporal: int | None = None) -> Size3:
    """Window for a token grid (F, Y, X) following the paper: (1, Y/8, X/8) for images, (temporal, Y/8, X/8)
    for video (default: the video task's p_f).

    Sizes the paper's rule does not divide (docs/decisions.md#any-size): a side of Y tokens gets windows of
    max(Y // 8, 1) tokens (fewer than 8 tokens: one-token windows) and a clip of fewer frames than `temporal`
    one window of all its frames; the model pads the token grid up to the next multiple of the window
    (docs/architecture.md#padding-and-masking). On the sizes the paper uses this is exactly its window.
    """
    temporal = temporal_window("t2v") if temporal is None else temporal
    nf, ny, nx = grid
    if min(grid) < 1 or temporal < 1:
        raise ValueError(f"token grid and temporal window must be positive, got grid {grid}, temporal {temporal}")
    pf = 1 if nf == 1 else min(temporal, nf)
    return (pf, max(ny // WINDOWS_PER_SIDE, 1), max(nx // WINDOWS_PER_SIDE, 1))


def has_windows(model_config: ModelConfig) -> bool:
    """Whether the architecture uses windows at all (PT-DiT does; the global-attention baselines do not)."""
    return model_config.arch == "ptdit"


def resolve_window(
    latent_shape: Sequence[int], *, model_config: ModelConfig, task: str = "t2i", window: Sequence[int] | None = None
) -> Size3 | None:
    """The validated window for latents of `latent_shape`, or None for models without windows.

    Args:
        latent_shape: (B, C, F, H, W) or (C, F, H, W).
        model_config: the network's config (architecture, patch size, proxy window).
        task: selects the temporal window of the paper's rule.
        window: an explicit window (a checkpoint's or the user's); None applies the paper's rule.

    Raises:
        ValueError: naming the sizes, when the latent is not a multiple of the patch or the proxy window does
            not divide the window. A window that does not tile the token grid is valid: the grid is padded
            (docs/architecture.md#padding-and-masking).
    """
    if not has_windows(model_config):
        return None
    grid = token_grid(latent_shape, model_config.patch_size)
    chosen = tuple(window) if window is not None else paper_window(grid, temporal=temporal_window(task))
    return validate_window(grid, chosen, patch_size=model_config.patch_size, proxy_window=model_config.proxy_window)


def window_tiling(model_config: ModelConfig, *, task: str = "t2i", window: Sequence[int] | None = None) -> Size3:
    """How many tokens (frames, rows, cols) a size must be a multiple of for this model's windows to tile it
    without padding (other sizes work too, padded: docs/architecture.md#padding-and-masking).

    With an explicit window that is the window itself; with the paper's rule the token grid splits into 8 x 8
    windows and whole temporal windows. (1, 1, 1) for models without windows.
    """
    if not has_windows(model_config):
        return (1, 1, 1)
    if window is not None:
        return tuple(int(w) for w in window)  # type: ignore[return-value]
    return (temporal_window(task), WINDOWS_PER_SIDE, WINDOWS_PER_SIDE)


__all__ = [
    "WINDOWS_PER_SIDE",
    "has_windows",
    "paper_window",
    "resolve_window",
    "temporal_window",
    "token_grid",
    "window_tiling",
]
