"""Buckets for a training run: the model's window tiling (`ptdit.recipe.windows`) -> the shapes it can train on
(`ptdit.data.buckets`) -> each stored sample's bucket, from its header (docs/data.md#buckets)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ptdit.data.buckets import describe, frame_buckets, image_buckets, nearest_bucket, nearest_frames
from ptdit.recipe.windows import window_tiling
from ptdit.train.config import TrainConfig


def bucket_multiples(cfg: TrainConfig, spatial_factor: int, temporal_factor: int) -> tuple[int, int]:
    """(latent-frame multiple, pixel multiple per side) a bucket needs so that the model's window tiles it."""
    model_config = cfg.model_config()
    if getattr(model_config, "reference_compat", False):
        raise ValueError(
            "data.buckets=pixart trains on non-square grids, where model.reference_compat=true reproduces the "
            "reference's transposed positional embedding; set model.reference_compat=false (it changes no weight; "
            "docs/decisions.md#positional-embedding-on-non-square-grids)"
        )
    window = getattr(model_config, "window_size", None)
    tile_f, tile_y, tile_x = window_tiling(model_config, task=cfg.pipeline.task, window=window)
    patch = model_config.patch_size
    if tile_y != tile_x:
        raise ValueError(f"aspect-ratio buckets need a square spatial window, got {tile_y} x {tile_x} tokens")
    return tile_f, spatial_factor * patch * tile_y


def bucket_shapes(cfg: TrainConfig, frames: int, vae: Any = None) -> tuple[list[tuple[int, int]], list[int]]:
    """(image buckets (height, width), frame buckets) for this run; frame buckets are [1] for images."""
    spatial = getattr(vae, "spatial_factor", 1)
    temporal = getattr(vae, "temporal_factor", 1)
    tile_f, multiple = bucket_multiples(cfg, spatial, temporal)
    images = image_buckets(cfg.data.size, multiple)
    if frames == 1:
        return images, [1]
    choices = frame_buckets(frames, temporal, tile_f)
    if not choices:
        raise ValueError(
            f"no frame count up to data.options.frames={frames} gives latent frames divisible by the temporal window "
            f"{tile_f} (VAE temporal factor {temporal}); raise frames"
        )
    return images, choices


def bucket_assignment(
    cfg: TrainConfig, dataset: Any, vae: Any = None, *, show_progress: bool = False
) -> tuple[list[tuple[int, int, int]], np.ndarray]:
    """(bucket shapes (height, width, frames), bucket number of each sample). Samples whose header cannot be read
    go to the `data.size` square bucket and are skipped as bad data when loaded."""
    from tqdm.auto import tqdm

    images, frame_choices = bucket_shapes(cfg, dataset.frames, vae)
    default = nearest_bucket(cfg.data.size, cfg.data.size, images)
    keys: dict[tuple[int, int, int], int] = {}
    assignment = np.zeros(len(dataset), dtype=np.int64)
    for i in tqdm(range(len(dataset)), desc="bucketing", disable=not show_progress, file=sys.stderr):
        shape = dataset.media_shape(i)
        image = default if shape is None else nearest_bucket(shape[0], shape[1], images)
        frames = 1 if frame_choices == [1] else nearest_frames(shape[2] if shape else 0, frame_choices)
        key = (*images[image], frames)
        assignment[i] = keys.setdefault(key, len(keys))  # type: ignore[arg-type]
    if show_progress:
        print(f"data buckets: {describe(images)}; {len(keys)} in use", file=sys.stderr)
    return list(keys), assignment  # type: ignore[arg-type]


def cached_buckets(cfg: TrainConfig, cache: Any, vae: Any = None) -> tuple[list[tuple[int, int, int]], list[int]]:
    """(bucket shapes, bucket of each sample) that a bucketed feature cache recorded, checked against the shapes
    this run's model can train on (its window must tile every bucket)."""
    recorded = cache.buckets()
    if recorded is None:
        raise ValueError(
            "data.buckets=pixart but the feature cache holds one size; write the cache from a config with "
            "data.buckets=pixart (ptdit cache --set data.buckets=pixart), or set data.buckets=none"
        )
    shapes, assignment = recorded
    images, frame_choices = bucket_shapes(cfg, int(cache.manifest["frames"]), vae)
    for height, width, frames in shapes:
        if (height, width) not in images or frames not in frame_choices:
            raise ValueError(
                f"the feature cache's bucket {height}x{width}x{frames} is not one this model's window tiles; write "
                "the cache from this config (ptdit cache, with --stage NAME for a staged config)"
            )
    return shapes, assignment


__all__ = ["bucket_assignment", "bucket_multiples", "bucket_shapes", "cached_buckets"]
