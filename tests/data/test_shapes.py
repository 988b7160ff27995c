"""The shapes dataset (ptdit.data.shapes): object counts and no overlap."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptdit.data import ShapesDataset


def test_shapes_object_counts_and_no_overlap():
    dataset = ShapesDataset(min_objects=2, max_objects=3, size=32)
    for i in range(50):
        objects = dataset.sample_spec(i)["objects"]
        assert 2 <= len(objects) <= 3
        assert len({o["position"] for o in objects}) == len(objects)
    # Single objects only.
    assert all(len(ShapesDataset(max_objects=1).sample_spec(i)["objects"]) == 1 for i in range(20))


def test_two_movers_are_distinct_parallel_and_apart_in_every_frame():
    from ptdit.data import MovingShapesDataset
    from ptdit.data.captions import moving_objects
    from ptdit.eval.oracle import find_blobs

    dataset = MovingShapesDataset(size=32, seed=2, max_objects=2, min_objects=2)
    for i in range(40):
        spec = dataset.sample_spec(i)
        movers = moving_objects(spec)
        assert len(movers) == 2
        assert (movers[0]["color"], movers[0]["shape"]) != (movers[1]["color"], movers[1]["shape"])
        assert {m["direction"] for m in movers} <= {"left", "right"} or {m["direction"] for m in movers} <= {
            "up",
            "down",
        }
        frames = dataset.render(spec)
        # Two separate connected components in every frame: the movers never touch.
        assert all(len(find_blobs(frame, 0.5)) == 2 for frame in frames)


def test_render_caption_is_deterministic_and_matches_the_caption():
    from ptdit.data import build_dataset, parse_caption
    from ptdit.eval.oracle import ORACLES

    cases = {
        "shapes": "a small red circle at the top left and a large blue square at the bottom right",
        "moving-shapes": "a red circle moving left and a blue square moving right",
        "turntable": "a green pyramid",
    }
    for name, caption in cases.items():
        dataset = build_dataset(name, seed=5)
        a, b, c = (dataset.render_caption(caption, seed=s) for s in (0, 0, 1))
        assert torch.equal(a, b)
        assert name == "shapes" or not torch.equal(a, c)  # shapes have no render-only parameters
        if " and " not in caption or name == "shapes":
            assert ORACLES[name](a[None], [caption]).item() == 1.0
        assert parse_caption(name, caption)  # still a valid caption


def test_single_color_turntable_objects():
    from ptdit.data import TurntableDataset, parse_caption

    dataset = TurntableDataset(single_color_fraction=0.5, seed=1)
    captions = [dataset.caption(i) for i in range(60)]
    single = [c for c in captions if "top" not in c]
    assert 15 < len(single) < 45
    spec = parse_caption("turntable", single[0])
    assert spec["color"] == spec["top_color"]
    # The default keeps two-tone objects only.
    assert all("top" in TurntableDataset().caption(i) for i in range(30))


def test_shapes_count_weights():
    dataset = ShapesDataset(max_objects=4, count_weights=[2, 5, 2, 1])
    counts = [len(dataset.sample_spec(i)["objects"]) for i in range(600)]
    shares = [counts.count(n) / len(counts) for n in (1, 2, 3, 4)]
    assert abs(shares[1] - 0.5) < 0.07 and abs(shares[3] - 0.1) < 0.05 and min(shares) > 0
    # A zero weight never draws its count; the weights are relative; the default draws counts uniformly.
    only_two = ShapesDataset(min_objects=1, max_objects=3, count_weights=[0, 1, 0])
    assert all(len(only_two.sample_spec(i)["objects"]) == 2 for i in range(30))
    assert ShapesDataset(max_objects=2, count_weights=[1, 1]).caption(5) == ShapesDataset(
        max_objects=2, count_weights=[3, 3]
    ).caption(5)
    for bad in ([1, 2], [1, -1, 1, 1], [0, 0, 0, 0], "1,2,3,4", [1, float("nan"), 1, 1]):
        with pytest.raises(ValueError, match="count_weights"):
            ShapesDataset(max_objects=4, count_weights=bad)


@pytest.mark.parametrize("size", [16, 32])
def test_grid_motion_shows_the_same_raster_in_every_frame(size):
    # `grid_motion`: the box starts on the pixel grid and moves whole pixels, so every frame is the first one
    # shifted by `step` pixels per frame in the captioned direction (sub-pixel motion changes the raster).
    from ptdit.data import MovingShapesDataset
    from ptdit.data.shapes import DIRECTION_VECTORS

    dataset = MovingShapesDataset(size=size, seed=3, grid_motion=True)
    assert dataset.step == (1 if size == 16 else 2)
    for i in range(30):
        spec = dataset.sample_spec(i)
        assert all(c - 0.5 == int(c) for c in spec["start"])  # pixel centres
        frames = dataset.render(spec)
        dx, dy = (int(v) for v in DIRECTION_VECTORS[spec["direction"]])
        for f in range(1, dataset.frames):
            shift = f * dataset.step
            # (no wrap-around: the mover stays inside the image)
            assert (frames[f] == np.roll(frames[0], (shift * dy, shift * dx), axis=(0, 1))).all(), (i, f)


def test_grid_motion_clips_keep_two_movers_apart_and_the_oracle_reads_them():
    from ptdit.data import MovingShapesDataset
    from ptdit.eval.oracle import find_blobs, score_moving_shapes

    dataset = MovingShapesDataset(size=16, seed=4, max_objects=2, grid_motion=True)
    clips = torch.stack([dataset[i]["pixels"] for i in range(120)])
    captions = [dataset.caption(i) for i in range(120)]
    assert sum(" and " in c for c in captions) > 30
    assert score_moving_shapes(clips, captions).mean().item() >= 0.98
    for i in range(120):
        if " and " in captions[i]:
            assert all(len(find_blobs(f, 0.5)) == 2 for f in dataset.render(dataset.sample_spec(i)))
    with pytest.raises(ValueError, match="grid_motion must be true or false"):
        MovingShapesDataset(size=16, grid_motion="yes")
