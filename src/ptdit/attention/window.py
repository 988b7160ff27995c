"""Window geometry for PT-DiT: partition / reverse, cyclic shift, and the shifted-window mask
(docs/architecture.md#windows).

Shape legend: B batch, F/Y/X token-grid frames/rows/cols, D width, M windows, W tokens per window.
Windows are ordered (frame-block, row-block, col-block) in raster order and tokens inside a window
(frame, row, col) offsets in raster order, as in the reference. Nothing here is fixed at construction:
every function takes the actual grid, and masks are cached per (grid, window, shift, device).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange

from ptdit.nn.cache import cached_tensor_builder

Size3 = tuple[int, int, int]


def window_partition(x_BFYXD: torch.Tensor, window: Size3) -> torch.Tensor:
    """Splits a token grid into non-overlapping windows.

    Args:
        x_BFYXD: (B, F, Y, X, D) token grid; F, Y, X divisible by `window`.
        window: (wf, wy, wx).

    Returns:
        (B, M, W, D) with M = F Y X / W windows of W = wf wy wx tokens.
    """
    wf, wy, wx = window
    return rearrange(x_BFYXD, "b (f wf) (y wy) (x wx) d -> b (f y x) (wf wy wx) d", wf=wf, wy=wy, wx=wx)


def window_reverse(x_BMWD: torch.Tensor, grid: Size3, window: Size3) -> torch.Tensor:
    """Inverse of `window_partition`: (B, M, W, D) windows -> (B, F, Y, X, D) token grid."""
    (nf, ny, nx), (wf, wy, wx) = grid, window
    return rearrange(
        x_BMWD,
        "b (f y x) (wf wy wx) d -> b (f wf) (y wy) (x wx) d",
        f=nf // wf,
        y=ny // wy,
        x=nx // wx,
        wf=wf,
        wy=wy,
        wx=wx,
    )


def shift_windows(x_BFYXD: torch.Tensor, shift: Size3) -> torch.Tensor:
    """Cyclic shift of the token grid by -shift (token at i moves to i - s); negate `shift` to undo it."""
    return torch.roll(x_BFYXD, shifts=tuple(-s for s in shift), dims=(1, 2, 3))


def half_window_shift(window: Size3) -> Size3:
    """The shift used by PT-DiT's shifted-window attention: half a window on every axis
    (docs/architecture.md#shifted-windows-and-the-mask)."""
    return (window[0] // 2, window[1] // 2, window[2] // 2)


def _wrapped_region_ids(grid: Size3, shift: Size3) -> torch.Tensor:
    """(F, Y, X) region id per token of the rolled grid: which tokens wrapped around on each axis.

    On an axis of length L rolled by s > 0, the tokens at rolled positions [L - s, L) came from the other end
    of the grid. Two tokens of one shifted window may attend to each other iff they lie on the same side of
    the wrap on every axis. This equals the Swin 27-region recipe (segments [0, L-w), [L-w, L-s), [L-s, L)),
    because the first two segments are never in one window.
    """
    ids = torch.zeros(grid, dtype=torch.long)
    for axis, (length, s) in enumerate(zip(grid, shift, strict=True)):
        wrapped = (torch.arange(length) >= length - s).long() if s > 0 else torch.zeros(length, dtype=torch.long)
        view = [1, 1, 1]
        view[axis] = length
        ids = ids * 2 + wrapped.view(view)
    return ids


@cached_tensor_builder
def shifted_window_mask(grid: Size3, window: Size3, shift: Size3, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean (M, W, W) mask for attention inside the windows of the rolled grid; True = may attend.

    Cached per (grid, window, shift, device): never reused for another grid (reference defect 2).
    """
    ids_FYX = _wrapped_region_ids(grid, shift)
    ids_MW = window_partition(ids_FYX[None, ..., None], window)[0, ..., 0]  # (M, W)
    return (ids_MW[:, :, None] == ids_MW[:, None, :]).to(device)


@cached_tensor_builder
def masked_window_split(
    grid: Size3, window: Size3, shift: Size3, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Splits windows into those that need the mask and those that do not.

    Only the last window along each shifted axis mixes wrapped and unwrapped tokens, so most shifted windows
    are mask-free and can run on unmasked (fused) attention.

    Returns:
        (plain_idx, masked_idx, inverse_perm): window indices without / with a non-trivial mask, and the
        permutation that puts cat([plain, masked]) back into window order.
    """
    needs_mask_M = ~shifted_window_mask(grid, window, shift, "cpu").all(dim=(1, 2))
    plain_idx = torch.nonzero(~needs_mask_M).flatten()
    masked_idx = torch.nonzero(needs_mask_M).flatten()
    inverse_perm = torch.argsort(torch.cat([plain_idx, masked_idx]))
    return plain_idx.to(device), masked_idx.to(device), inverse_perm.to(device)


@cached_tensor_builder
def rolled_window_index(
    grid: Size3, window: Size3, shift: Size3, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(perm, inverse): token permutations between the windowed layout and the windowed layout of the rolled grid.

    `x.flatten(1, 2)[:, perm]` equals reverse -> roll by -shift -> partition, in one gather instead of three
    full copies; `inverse` undoes it.
    """
    ids_BFYXD = torch.arange(grid[0] * grid[1] * grid[2]).view(1, *grid, 1)
    perm = window_partition(shift_windows(ids_BFYXD, shift), window).flatten()  # source window-layout token ids
    ids_layout = window_partition(ids_BFYXD, window).flatten()  # window-layout position -> grid id
    # perm holds grid ids; map them to window-layout positions.
    position_of_id = torch.empty_like(ids_layout)
    position_of_id[ids_layout] = torch.arange(ids_layout.numel())
    perm = position_of_id[perm]
    return perm.to(device), torch.argsort(perm).to(device)


def nearest_multiples(value: int, multiple: int) -> str:
    """'16 or 32' style hint of the valid sizes nearest to `value`."""
    below = (value // multiple) * multiple
    above = below + multiple
    return f"{above}" if below == 0 else (f"{below}" if below == value else f"{below} or {above}")


@dataclass(frozen=True)
class WindowLayout:
    """The token grid and window geometry of one forward pass, validated once and shared by all blocks.

    Attributes:
        grid: token grid (F, Y, X).
        window: window size (wf, wy, wx); each divides the grid.
        shift: shift of the shifted-window attention (half a window).
    """

    grid: Size3
    window: Size3
    shift: Size3

    @classmethod
    def create(cls, grid: Size3, window: Size3, *, patch_size: int = 1) -> WindowLayout:
        """Validates that `window` tiles `grid`; the error names the latent sizes that would work."""
        grid, window = tuple(int(g) for g in grid), tuple(int(w) for w in window)
        if any(w < 1 for w in window):
            raise ValueError(f"window sizes must be >= 1, got window {window}")
        if any(g % w for g, w in zip(grid, window, strict=True)):
            latent = (grid[0], grid[1] * patch_size, grid[2] * patch_size)
            steps = (window[0], window[1] * patch_size, window[2] * patch_size)
            hints = ", ".join(
                f"{name}={nearest_multiples(v, m)}"
                for name, v, m in zip(("F", "H", "W"), latent, steps, strict=True)
                if v % m
            )
            raise ValueError(
                f"latent size (F={latent[0]}, H={latent[1]}, W={latent[2]}) gives token grid {grid}, which window "
                f"{window} (patch {patch_size}) does not tile: F, H, W must be multiples of {steps}; nearest valid: "
                f"{hints}; or pass another window_size"
            )
        return cls(grid=grid, window=window, shift=half_window_shift(window))

    @property
    def num_windows(self) -> int:
        return (self.grid[0] // self.window[0]) * (self.grid[1] // self.window[1]) * (self.grid[2] // self.window[2])

    @property
    def window_tokens(self) -> int:
        return self.window[0] * self.window[1] * self.window[2]

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    def partition(self, x_BLD: torch.Tensor) -> torch.Tensor:
        """(B, L, D) tokens in raster order -> (B, M, W, D) windows."""
        return window_partition(x_BLD.unflatten(1, self.grid), self.window)

    def reverse(self, x_BMWD: torch.Tensor) -> torch.Tensor:
        """(B, M, W, D) windows -> (B, L, D) tokens in raster order."""
        return window_reverse(x_BMWD, self.grid, self.window).flatten(1, 3)

    def roll(self, x_BMWD: torch.Tensor, *, inverse: bool = False) -> torch.Tensor:
        """Re-windows `x` on the grid rolled by -shift (or undoes that with inverse=True), as one gather."""
        perm, inverse_perm = rolled_window_index(self.grid, self.window, self.shift, str(x_BMWD.device))
        index = inverse_perm if inverse else perm
        return x_BMWD.flatten(1, 2).index_select(1, index).view(x_BMWD.shape)

    def roll_reference(self, x_BMWD: torch.Tensor, *, inverse: bool = False) -> torch.Tensor:
        """`roll` written as its definition: back to the grid, cyclic shift, re-partition (three copies)."""
        shift = tuple(-s for s in self.shift) if inverse else self.shift
        grid_BFYXD = window_reverse(x_BMWD, self.grid, self.window)
        return window_partition(shift_windows(grid_BFYXD, shift), self.window)

    @property
    def has_shift(self) -> bool:
        return any(s > 0 for s in self.shift)

    def shift_mask(self, device: torch.device) -> torch.Tensor:
        """(M, W, W) boolean mask of the shifted windows for this grid."""
        return shifted_window_mask(self.grid, self.window, self.shift, str(device))

    def shift_split(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """See `masked_window_split`."""
        return masked_window_split(self.grid, self.window, self.shift, str(device))


def validate_window(grid: Size3, window: Size3, *, patch_size: int = 1, proxy_window: Size3 | None = None) -> Size3:
    """`window` as a tuple when it tiles `grid` (and `proxy_window` divides it); ValueError naming the sizes."""
    layout = WindowLayout.create(grid, window, patch_size=patch_size)
    if proxy_window is not None and any(w % q for w, q in zip(layout.window, proxy_window, strict=True)):
        raise ValueError(f"proxy_window {tuple(proxy_window)} does not divide the window {layout.window}")
    return layout.window
