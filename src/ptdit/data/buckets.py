"""Aspect-ratio and frame-count buckets, restricted to shapes the model's windows tile.

PixArt-alpha / -Sigma train on 40 aspect-ratio buckets per base resolution (their ASPECT_RATIO_256 / 512 /
1024 / 2048 tables). The four published tables are one table scaled: the 1024 one below, times base / 1024.
Each entry is (height, width); a sample goes to the bucket whose height / width ratio is nearest to its own
(PixArt's rule), is resized to cover it and center-cropped (`ptdit.data.decode.fit`).

Window awareness (docs/data.md#buckets): a bucket is kept only when its latent token grid (side / VAE factor /
patch) is a multiple of the window tiling (`ptdit.recipe.windows.window_tiling`), so every batch runs with the
model's windows. `multiple` below is that pixel multiple (VAE factor x patch x window tokens) per side. At the
published bases the table is filtered; at other bases (small test sizes) it is scaled and rounded to `multiple`.
Frame-count buckets work the same way on latent frames (`ptdit.encoders.vae.causal_latent_frames`).
"""

from __future__ import annotations

import math

PUBLISHED_BASES = (256, 512, 1024, 2048)

# PixArt's ASPECT_RATIO_1024 landscape half, (height, width) with height < width; the portrait half is its
# transpose except for 704 x 1344 (the published tables have no 1344 x 704 entry: 20 + 1 + 19 = 40 buckets),
# and the middle entry is square.
_LANDSCAPE_1024 = (
    (512, 2048), (512, 1984), (512, 1920), (512, 1856), (576, 1792), (576, 1728), (576, 1664), (640, 1600),
    (640, 1536), (704, 1472), (704, 1408), (704, 1344), (768, 1344), (768, 1280), (832, 1216), (832, 1152),
    (896, 1152), (896, 1088), (960, 1088), (960, 1024),
)  # fmt: skip


_UNMIRRORED = (704, 1344)


def aspect_ratio_table(base: int) -> list[tuple[int, int]]:
    """PixArt's aspect-ratio table at `base` px (ASPECT_RATIO_<base> for 256, 512, 1024, 2048): 40 (height,
    width) pairs sorted by height / width, from 1:4 to 4:1. Other bases scale the 1024 table (unrounded)."""
    if base < 1:
        raise ValueError(f"bucket base size must be >= 1, got {base}")
    half = [(h * base / 1024, w * base / 1024) for h, w in _LANDSCAPE_1024]
    portrait = [(w, h) for (h, w), (h0, w0) in zip(half, _LANDSCAPE_1024, strict=True) if (h0, w0) != _UNMIRRORED]
    table = [*half, (float(base), float(base)), *reversed(portrait)]
    return [(round(h), round(w)) if base in PUBLISHED_BASES else (h, w) for h, w in table]  # type: ignore[misc]


def image_buckets(base: int, multiple: int) -> list[tuple[int, int]]:
    """The (height, width) buckets at `base` px whose sides are multiples of `multiple` (the pixels of one
    window tile: VAE factor x patch x window tokens). Published bases are filtered, others rounded.

    Raises:
        ValueError: when no bucket is left (naming the base and the multiple).
    """
    if multiple < 1:
        raise ValueError(f"bucket multiple must be >= 1, got {multiple}")
    out: list[tuple[int, int]] = []
    for h, w in aspect_ratio_table(base):
        if base not in PUBLISHED_BASES:
            h, w = max(multiple, round(h / multiple) * multiple), max(multiple, round(w / multiple) * multiple)
        if h % multiple == 0 and w % multiple == 0 and (h, w) not in out:
            out.append((int(h), int(w)))
    if not out:
        raise ValueError(
            f"no aspect-ratio bucket at {base} px has sides divisible by {multiple} px (VAE factor x patch x window); "
            "choose another data.size or a smaller window"
        )
    return sorted(out, key=lambda hw: hw[0] / hw[1])


def nearest_bucket(height: int, width: int, buckets: list[tuple[int, int]]) -> int:
    """Index of the bucket whose height / width ratio is nearest to the sample's (PixArt's rule; ties go to the
    first)."""
    ratio = height / width
    return min(range(len(buckets)), key=lambda i: abs(buckets[i][0] / buckets[i][1] - ratio))


def frame_buckets(max_frames: int, temporal_factor: int, temporal_multiple: int) -> list[int]:
    """Frame counts up to `max_frames` the causal VAE encodes (1 + a multiple of its temporal factor) whose latent
    frame count is a multiple of `temporal_multiple` (the temporal window); empty when none is."""
    from ptdit.encoders.vae import causal_latent_frames

    return [
        f
        for f in range(2, max_frames + 1)
        if (f - 1) % temporal_factor == 0 and causal_latent_frames(f, temporal_factor) % temporal_multiple == 0
    ]


def nearest_frames(frames: int, choices: list[int]) -> int:
    """The largest frame bucket a clip of `frames` frames fills (the smallest bucket when it fills none: it is
    then too short and skipped as bad data when loaded)."""
    fitting = [f for f in choices if f <= frames]
    return max(fitting) if fitting else min(choices)


def check_divisible(size: int, multiple: int, what: str) -> None:
    if size % multiple:
        below = max(multiple, size // multiple * multiple)
        raise ValueError(f"{what} {size} is not a multiple of {multiple}; use {below} or {below + multiple}")


def describe(buckets: list[tuple[int, int]]) -> str:
    """'12 buckets, 1:2.0 .. 2.0:1' for messages."""
    low, high = buckets[0], buckets[-1]
    return f"{len(buckets)} buckets from {low[0]}x{low[1]} to {high[0]}x{high[1]} (height x width)"


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)


__all__ = [
    "PUBLISHED_BASES",
    "aspect_ratio_table",
    "describe",
    "frame_buckets",
    "image_buckets",
    "nearest_bucket",
    "nearest_frames",
]
