"""Spatial tiling with linear blending, and temporal chunking, as the CausalVAE reference does them.

Both bound memory by running the encoder or decoder on pieces. They are exact re-statements of the
reference's `tiled_decode2d` / `tiled_encode2d` (spatial) and `tiled_decode` / `tiled_encode` (temporal), so
tiled outputs match the reference's tiled outputs, not the untiled ones (tiling changes the result: GroupNorm
statistics and attention are per tile).

Spatial tiling, with a tile of `tile_in` input rows/cols giving `tile_out` output rows/cols:
* tiles start every `stride = int(tile_in * (1 - overlap))` input rows and cols (the last ones may be thin);
* each tile's first `blend = int(tile_out * overlap)` output rows are a linear ramp from the tile above to
  this tile (weight of this tile y / blend at row y), then its first `blend` cols the same ramp from the
  tile on the left. Neighbours are taken *after* their own blending, as the reference does in place;
* every tile keeps its top-left `tile_out - blend` rows and cols, and the kept pieces are concatenated.

Temporal chunking, with chunks of `chunk` input frames: chunks start every `chunk - 1` frames, so
neighbours share one frame; every chunk after the first drops its first output frame (the causal VAE
treats a chunk's first frame as an image, which is one output frame in either direction).

Shape legend: B batch, C channels, F frames, H / W rows / cols of the input, primes for the output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["blend_edge", "tiled_2d", "tiled_over_time"]


def blend_edge(before: Tensor, tile: Tensor, extent: int, dim: int) -> Tensor:
    """Linear cross-fade of the last rows (cols) of `before` into the first rows (cols) of `tile`.

    Args:
        before: (B, C, F, H, W) the neighbour above (dim -2) or to the left (dim -1), already blended itself.
        tile: (B, C, F, H, W) the tile being placed.
        extent: requested ramp length; clipped to both tiles' sizes along `dim`.
        dim: -2 (rows) or -1 (cols).

    Returns:
        `tile` with its first `extent` rows (cols) replaced by before * (1 - y / extent) + tile * y / extent.
    """
    extent = min(before.shape[dim], tile.shape[dim], extent)
    if extent == 0:
        return tile
    # The reference multiplies by Python floats: weights in float64, each product in (at least) float32 and
    # rounded to the tile dtype, then summed in the tile dtype.
    shape = [1] * tile.dim()
    shape[dim] = extent
    w = (torch.arange(extent, dtype=torch.float64, device=tile.device) / extent).view(shape)
    compute = torch.promote_types(tile.dtype, torch.float32)
    fade_out = before.narrow(dim, before.shape[dim] - extent, extent) * (1 - w).to(compute)
    fade_in = tile.narrow(dim, 0, extent) * w.to(compute)
    head = fade_out.to(tile.dtype) + fade_in.to(tile.dtype)
    return torch.cat([head, tile.narrow(dim, extent, tile.shape[dim] - extent)], dim=dim)


def tiled_2d(
    fn: Callable[[Tensor], Tensor], x_BCFHW: Tensor, *, tile: tuple[int, int], overlap_factor: float
) -> Tensor:
    """Runs `fn` on overlapping spatial tiles of x and blends the results (see the module docstring).

    Args:
        fn: maps a (B, C, F, h, w) tile with h, w <= tile[0] to (B, C', F', h * r, w * r), r = tile[1] / tile[0].
        x_BCFHW: the input.
        tile: (input tile side, output tile side).
        overlap_factor: fraction of a tile shared with each neighbour.

    Returns:
        (B, C', F', H', W') assembled row by row, so only one row of full tiles is held at a time.
    """
    tile_in, tile_out = tile
    stride = int(tile_in * (1 - overlap_factor))
    blend = int(tile_out * overlap_factor)
    keep = tile_out - blend
    height, width = x_BCFHW.shape[-2:]
    rows: list[Tensor] = []
    above: list[Tensor] = []
    for top in range(0, height, stride):
        row: list[Tensor] = []
        for j, left in enumerate(range(0, width, stride)):
            out = fn(x_BCFHW[..., top : top + tile_in, left : left + tile_in])
            if above:
                out = blend_edge(above[j], out, blend, dim=-2)
            if row:
                out = blend_edge(row[-1], out, blend, dim=-1)
            row.append(out)
        rows.append(torch.cat([out[..., :keep, :keep] for out in row], dim=-1))
        above = row
    return torch.cat(rows, dim=-2)


def tiled_over_time(fn: Callable[[Tensor], Tensor], x_BCFHW: Tensor, *, chunk: int) -> Tensor:
    """Runs `fn` on chunks of `chunk` frames sharing one frame with the previous chunk, and joins the outputs.

    Args:
        fn: the (B, C, f, H, W) -> (B, C', f', H', W') map, causal in time.
        x_BCFHW: the input, F frames.
        chunk: frames per chunk (>= 2).

    Returns:
        (B, C', F', H', W'): the first chunk's output, then each later chunk's output without its first frame.
    """
    frames = x_BCFHW.shape[2]
    pieces: list[Tensor] = []
    for k, start in enumerate(range(0, frames, chunk - 1)):
        if k > 0 and start + 1 >= frames:
            break  # the previous chunk already ends on the last frame
        out = fn(x_BCFHW[:, :, start : start + chunk])
        pieces.append(out if k == 0 else out[:, :, 1:])
    return torch.cat(pieces, dim=2)
