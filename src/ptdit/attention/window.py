"""Window geometry for PT-DiT: partition / reverse, cyclic shift, and the shifted-window mask
(docs/architecture.md#windows).

Shape legend: B batch, F/Y/X token-grid frames/rows/cols, D width, M windows, W tokens per window.
Windows are ordered (frame-block, row-block, col-block) in raster order and tokens inside a window
(frame, row, col) offsets in raster order, as in the reference. Nothing here is fixed at construction:
every function takes the actual grid, and masks are cached per (grid, window, shift, device).

A grid that the window does not tile is padded at the end of every axis up to the next multiple of the
window (docs/architecture.md#padding-and-masking): padded tokens are never keys of any attention, and
`WindowLayout.reverse` crops them away. A grid the window tiles takes none of that code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
    split = split_by_mask(shifted_window_mask(grid, window, shift, "cpu"))
    return tuple(t.to(device) for t in split)


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


def padded_size(grid: Size3, window: Size3) -> Size3:
    """`grid` rounded up to the next multiple of `window` on every axis."""
    return tuple(-(-g // w) * w for g, w in zip(grid, window, strict=True))


def pad_grid(x_BFYXD: torch.Tensor, padded_grid: Size3) -> torch.Tensor:
    """Zero-pads a (B, F, Y, X, D) token grid at the end of each axis to `padded_grid`."""
    nf, ny, nx = x_BFYXD.shape[1:4]
    pf, py, px = padded_grid
    return F.pad(x_BFYXD, (0, 0, 0, px - nx, 0, py - ny, 0, pf - nf))


@cached_tensor_builder
def real_token_mask(
    grid: Size3, padded_grid: Size3, window: Size3, shift: Size3, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(M, W) boolean, True where a token of the windows of the padded grid rolled by -shift is real."""
    real_FYX = torch.zeros(padded_grid, dtype=torch.bool)
    real_FYX[: grid[0], : grid[1], : grid[2]] = True
    rolled = shift_windows(real_FYX[None, ..., None], shift)
    return window_partition(rolled, window)[0, ..., 0].to(device)


@cached_tensor_builder
def padded_window_mask(
    grid: Size3, padded_grid: Size3, window: Size3, shift: Size3, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(M, W, W) mask for attention inside the windows of a padded grid rolled by -shift (shift 0: the plain
    windows): the shifted-window region mask, and padded tokens are never keys.

    A real query always sees itself, so only a padded query can be left without keys (an all-padding window
    or region); it attends to itself alone, which keeps every softmax row finite (no NaN, not even in
    gradients). Its output is cropped away and, being padding, it is never a key, so it reaches no real token.
    """
    keys_M1W = real_token_mask(grid, padded_grid, window, shift, "cpu")[:, None, :]
    W = keys_M1W.shape[-1]
    mask_MWW = keys_M1W.expand(-1, W, -1)
    if any(s > 0 for s in shift):
        mask_MWW = mask_MWW & shifted_window_mask(padded_grid, window, shift, "cpu")
    empty_MW1 = ~mask_MWW.any(dim=-1, keepdim=True)
    return (mask_MWW | (empty_MW1 & torch.eye(W, dtype=torch.bool))).to(device)


def split_by_mask(mask_MWW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(plain_idx, masked_idx, inverse_perm): windows whose mask allows everything / the others, and the
    permutation that puts cat([plain, masked]) back into window order."""
    needs_mask_M = ~mask_MWW.all(dim=(1, 2))
    plain_idx = torch.nonzero(~needs_mask_M).flatten()
    masked_idx = torch.nonzero(needs_mask_M).flatten()
    return plain_idx, masked_idx, torch.argsort(torch.cat([plain_idx, masked_idx]))


@cached_tensor_builder
def padded_window_split(
    grid: Size3, padded_grid: Size3, window: Size3, shift: Size3, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`masked_window_split` for `padded_window_mask`: only windows with padding or a wrap need the mask."""
    split = split_by_mask(padded_window_mask(grid, padded_grid, window, shift, "cpu"))
    return tuple(t.to(device) for t in split)


def nearest_multiples(value: int, multiple: int) -> str:
    """'16 or 32' style hint of the valid sizes nearest to `value`."""
    below = (value // multiple) * multiple
    above = below + multiple
    return f"{above}" if below == 0 else (f"{below}" if below == value else f"{below} or {above}")


def _tiling_error(grid: Size3, window: Size3, patch_size: int) -> ValueError:
    """The error for a grid that `window` does not tile, naming the latent sizes that would work."""
    latent = (grid[0], grid[1] * patch_size, grid[2] * patch_size)
    steps = (window[0], window[1] * patch_size, window[2] * patch_size)
    hints = ", ".join(
        f"{name}={nearest_multiples(v, m)}" for name, v, m in zip(("F", "H", "W"), latent, steps, strict=True) if v % m
    )
    return ValueError(
        f"latent size (F={latent[0]}, H={latent[1]}, W={latent[2]}) gives token grid {grid}, which window "
        f"{window} (patch {patch_size}) does not tile: F, H, W must be multiples of {steps}; nearest valid: "
        f"{hints}; or pass another window_size"
    )


@dataclass(frozen=True)
class WindowLayout:
    """The token grid and window geometry of one forward pass, validated once and shared by all blocks.

    Attributes:
        grid: the real token grid (F, Y, X).
        window: window size (wf, wy, wx).
        shift: shift of the shifted-window attention (half a window).
        padded_grid: `grid` rounded up to multiples of the window; the windows tile it. Equal to `grid` when
            the window tiles the grid (then nothing is padded and no padding mask exists).
    """

    grid: Size3
    window: Size3
    shift: Size3
    padded_grid: Size3

    @classmethod
    def create(cls, grid: Size3, window: Size3, *, patch_size: int = 1, allow_padding: bool = True) -> WindowLayout:
        """The layout of `grid` in windows of `window`, padding the grid where the window does not tile it
        (docs/architecture.md#padding-and-masking). With allow_padding=False such a grid raises ValueError
        naming the latent sizes that would work."""
        grid, window = tuple(int(g) for g in grid), tuple(int(w) for w in window)
        if any(w < 1 for w in window):
            raise ValueError(f"window sizes must be >= 1, got window {window}")
        if any(g < 1 for g in grid):
            raise ValueError(f"token grid sizes must be >= 1, got grid {grid}")
        padded = padded_size(grid, window)
        if padded != grid and not allow_padding:
            raise _tiling_error(grid, window, patch_size)
        return cls(grid=grid, window=window, shift=half_window_shift(window), padded_grid=padded)

    @property
    def padded(self) -> bool:
        """Whether the grid is padded (False: the window tiles the grid, the unmasked fast path)."""
        return self.padded_grid != self.grid

    @property
    def num_windows(self) -> int:
        return math.prod(p // w for p, w in zip(self.padded_grid, self.window, strict=True))

    @property
    def window_tokens(self) -> int:
        return math.prod(self.window)

    @property
    def num_tokens(self) -> int:
        """Real tokens."""
        return math.prod(self.grid)

    @property
    def num_padded_tokens(self) -> int:
        """Tokens of the padded grid (real + padding): what the blocks compute on."""
        return math.prod(self.padded_grid)

    def partition(self, x_BLD: torch.Tensor) -> torch.Tensor:
        """(B, L, D) real tokens in raster order -> (B, M, W, D) windows (zero padding where padded)."""
        grid_BFYXD = x_BLD.unflatten(1, self.grid)
        if self.padded:
            grid_BFYXD = pad_grid(grid_BFYXD, self.padded_grid)
        return window_partition(grid_BFYXD, self.window)

    def reverse(self, x_BMWD: torch.Tensor) -> torch.Tensor:
        """(B, M, W, D) windows -> (B, L, D) real tokens in raster order (padding cropped away)."""
        grid_BFYXD = window_reverse(x_BMWD, self.padded_grid, self.window)
        if self.padded:
            grid_BFYXD = grid_BFYXD[:, : self.grid[0], : self.grid[1], : self.grid[2]]
        return grid_BFYXD.flatten(1, 3)

    def roll(self, x_BMWD: torch.Tensor, *, inverse: bool = False) -> torch.Tensor:
        """Re-windows `x` on the grid rolled by -shift (or undoes that with inverse=True), as one gather."""
        perm, inverse_perm = rolled_window_index(self.padded_grid, self.window, self.shift, str(x_BMWD.device))
        index = inverse_perm if inverse else perm
        return x_BMWD.flatten(1, 2).index_select(1, index).view(x_BMWD.shape)

    def roll_reference(self, x_BMWD: torch.Tensor, *, inverse: bool = False) -> torch.Tensor:
        """`roll` written as its definition: back to the grid, cyclic shift, re-partition (three copies)."""
        shift = tuple(-s for s in self.shift) if inverse else self.shift
        grid_BFYXD = window_reverse(x_BMWD, self.padded_grid, self.window)
        return window_partition(shift_windows(grid_BFYXD, shift), self.window)

    @property
    def has_shift(self) -> bool:
        return any(s > 0 for s in self.shift)

    def real_mask(self, device: torch.device) -> torch.Tensor | None:
        """(M, W) boolean, True = real token, in the (unrolled) windows; None when nothing is padded."""
        if not self.padded:
            return None
        return real_token_mask(self.grid, self.padded_grid, self.window, (0, 0, 0), str(device))

    def window_mask(self, device: torch.device) -> torch.Tensor | None:
        """(M, W, W) mask of the plain window attention (padded tokens are not keys); None when not padded."""
        if not self.padded:
            return None
        return padded_window_mask(self.grid, self.padded_grid, self.window, (0, 0, 0), str(device))

    def window_split(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """See `masked_window_split`, for `window_mask`; None when not padded."""
        if not self.padded:
            return None
        return padded_window_split(self.grid, self.padded_grid, self.window, (0, 0, 0), str(device))

    def shift_mask(self, device: torch.device) -> torch.Tensor:
        """(M, W, W) boolean mask of the shifted windows for this grid (and its padding)."""
        if self.padded:
            return padded_window_mask(self.grid, self.padded_grid, self.window, self.shift, str(device))
        return shifted_window_mask(self.grid, self.window, self.shift, str(device))

    def shift_split(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """See `masked_window_split`."""
        if self.padded:
            return padded_window_split(self.grid, self.padded_grid, self.window, self.shift, str(device))
        return masked_window_split(self.grid, self.window, self.shift, str(device))


def validate_window(
    grid: Size3,
    window: Size3,
    *,
    patch_size: int = 1,
    proxy_window: Size3 | None = None,
    allow_padding: bool = True,
) -> Size3:
    """`window` as a tuple when it is valid for `grid` (and `proxy_window` divides it); ValueError naming the
    sizes. A window that does not tile the grid is valid (the grid is padded) unless allow_padding=False."""
    layout = WindowLayout.create(grid, window, patch_size=patch_size, allow_padding=allow_padding)
    if proxy_window is not None and any(w % q for w, q in zip(layout.window, proxy_window, strict=True)):
        raise ValueError(f"proxy_window {tuple(proxy_window)} does not divide the window {layout.window}")
    return layout.window
