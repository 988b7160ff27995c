"""Aspect-ratio / frame-count buckets and the step-deterministic samplers (ptdit.data.buckets, ptdit.data.sampling)."""

from __future__ import annotations

import numpy as np
import pytest

from ptdit.config import replace
from ptdit.data.buckets import aspect_ratio_table, frame_buckets, image_buckets, nearest_bucket, nearest_frames
from ptdit.data.sampling import BucketBatches, EpochShuffle
from ptdit.encoders.vae import causal_latent_frames
from ptdit.presets.models import get_preset
from ptdit.recipe.windows import resolve_window


def test_published_tables_have_pixarts_values():
    for base in (256, 512, 1024, 2048):
        table = aspect_ratio_table(base)
        assert len(table) == 40 and (base, base) in table
        assert table[0] == (base // 2, base * 2) and table[-1] == (base * 2, base // 2)  # 1:4 and 4:1
        ratios = [h / w for h, w in table]
        assert ratios == sorted(ratios)
    assert (128, 496) in aspect_ratio_table(256) and (1792, 576) in aspect_ratio_table(1024)  # '0.26', '3.11'
    assert (1344, 704) not in aspect_ratio_table(1024) and (704, 1344) in aspect_ratio_table(1024)  # as published
    assert (1408, 2816) in aspect_ratio_table(2048) and (352, 704) in aspect_ratio_table(512)  # '0.5'


@pytest.mark.parametrize(
    ("base", "factor", "patch", "window"),
    [(256, 8, 2, (1, 2, 2)), (512, 8, 2, (1, 4, 4)), (1024, 8, 2, (1, 8, 8)), (2048, 8, 2, (1, 16, 16)),
     (24, 1, 2, (1, 2, 2)), (32, 1, 4, (1, 2, 2)), (40, 1, 2, (1, 3, 3))],
)  # fmt: skip
def test_every_bucket_is_tiled_by_the_models_window(base, factor, patch, window):
    config = replace(get_preset("PT-DiT/Tiny"), patch_size=patch, window_size=window)
    multiple = factor * patch * window[1]
    buckets = image_buckets(base, multiple)
    assert buckets
    for h, w in buckets:
        assert h % multiple == 0 and w % multiple == 0
        # The recipe's validation (the one the model runs) accepts the latent grid of every bucket.
        resolve_window((1, 4, 1, h // factor, w // factor), model_config=config, window=window)


def test_paper_window_buckets_at_published_bases_are_filtered_not_rounded():
    kept = image_buckets(512, 8 * 2 * 8)  # SD VAE, patch 2, 8 windows of 8 x 8 -> 128 px multiples
    assert set(kept) <= set(aspect_ratio_table(512)) and (512, 512) in kept and (352, 704) not in kept
    with pytest.raises(ValueError, match="no aspect-ratio bucket"):
        image_buckets(256, 384)


def test_nearest_bucket_follows_the_aspect_ratio():
    buckets = aspect_ratio_table(256)
    assert buckets[nearest_bucket(300, 300, buckets)] == (256, 256)
    assert buckets[nearest_bucket(100, 400, buckets)] == (128, 512)
    h, w = buckets[nearest_bucket(480, 640, buckets)]
    assert abs(h / w - 0.75) < 0.04


def test_frame_buckets_have_latent_frames_divisible_by_the_temporal_window():
    choices = frame_buckets(40, temporal_factor=4, temporal_multiple=4)
    assert choices == [13, 29]
    assert all(causal_latent_frames(f, 4) % 4 == 0 for f in choices)
    assert frame_buckets(8, 1, 2) == [2, 4, 6, 8]
    assert nearest_frames(30, choices) == 29 and nearest_frames(5, choices) == 13


def test_epoch_shuffle_reads_every_sample_once_per_epoch_in_a_new_order():
    order = EpochShuffle(10, seed=3)
    epochs = [[order(e * 10 + i) for i in range(10)] for e in range(3)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1]
    assert [EpochShuffle(10, seed=3)(p) for p in range(30)] == [i for e in epochs for i in e]


def _sampler(start: int, stop: int, seed: int = 0, rank: int = 0, world: int = 1) -> BucketBatches:
    assignment = np.array([0] * 9 + [1] * 4 + [2] * 3)
    shapes = [(16, 16, 1), (8, 32, 1), (32, 8, 1)]
    return BucketBatches(
        assignment, shapes, start_step=start, stop_step=stop, global_batch=4, rank=rank, world_size=world, seed=seed
    )


def test_bucket_batches_are_one_bucket_each_and_cover_every_sample_each_epoch():
    sampler = _sampler(0, 12)
    assert sampler.per_epoch == 3 + 1 + 1
    shapes_of = {0: (16, 16, 1), 1: (8, 32, 1), 2: (32, 8, 1)}
    for epoch in range(2):
        seen = []
        for batch in list(sampler)[epoch * 5 : (epoch + 1) * 5]:
            assert len(batch) == 4 and len({shape for _, shape in batch}) == 1
            seen += [i for i, _ in batch]
            assert all(shapes_of[int(i >= 9) + int(i >= 13)] == shape for i, shape in batch)
        assert set(seen) == set(range(16))  # partial batches are filled from their own bucket, nothing dropped


def test_bucket_sampler_is_a_function_of_seed_and_step_so_resume_is_exact():
    whole = list(_sampler(0, 12))
    assert list(_sampler(5, 12)) == whole[5:]
    assert list(_sampler(0, 12)) == whole
    assert list(_sampler(0, 12, seed=1)) != whole
    halves = [list(_sampler(0, 12, rank=r, world=2)) for r in range(2)]
    assert [a + b for a, b in zip(*halves, strict=True)] == whole
