"""The paper's window sizes (SPEC 2, 5, 15): 8 x 8 spatial windows at every resolution, p_f = 4 for video."""

from __future__ import annotations

Size3 = tuple[int, int, int]

WINDOWS_PER_SIDE = 8  # images keep 8 x 8 = 64 windows at 256, 512, 1024 and 2048 px
VIDEO_TEMPORAL_WINDOW = 4
MULTIVIEW_TEMPORAL_WINDOW = 2  # T2MV: 6 latent frames at 24 views; 4 does not divide 6 (SPEC 15)


def paper_window(grid: Size3, *, temporal: int = VIDEO_TEMPORAL_WINDOW) -> Size3:
    """Window for a token grid (F, Y, X) following the paper: (1, Y/8, X/8) for images, (temporal, Y/8, X/8)
    for video. A side of fewer than 8 tokens gets windows of one token. Raises ValueError naming the sizes
    when the grid does not allow it."""
    nf, ny, nx = grid
    spatial = []
    for side in (ny, nx):
        if side < WINDOWS_PER_SIDE:
            spatial.append(1)
        elif side % WINDOWS_PER_SIDE:
            raise ValueError(
                f"token grid {ny} x {nx} is not divisible into {WINDOWS_PER_SIDE} x {WINDOWS_PER_SIDE} windows "
                f"({WINDOWS_PER_SIDE} windows do not tile {side} tokens): use a size whose token grid is a "
                f"multiple of {WINDOWS_PER_SIDE}, or give the window explicitly"
            )
        else:
            spatial.append(side // WINDOWS_PER_SIDE)
    pf = 1 if nf == 1 else temporal
    if nf % pf:
        raise ValueError(
            f"{nf} latent frames are not divisible by the temporal window {pf}: use a frame count whose latent "
            f"frame count is a multiple of {pf}, or give the window explicitly"
        )
    return (pf, spatial[0], spatial[1])
