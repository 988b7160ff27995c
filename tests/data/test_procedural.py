"""The procedural dataset contract (ptdit.data.procedural): shapes, ranges, determinism, argument checks."""

from __future__ import annotations

import pytest
import torch

from ptdit.data import DATASETS, build_dataset

NAMES = list(DATASETS)
FRAMES = {"shapes": 1, "moving-shapes": 8, "turntable": 8}


@pytest.mark.parametrize("name", NAMES)
def test_sample_shape_dtype_range(name):
    dataset = build_dataset(name, num_samples=10)
    assert len(dataset) == 10
    item = dataset[3]
    assert set(item) == {"pixels", "caption", "index"}
    assert item["pixels"].shape == (3, FRAMES[name], 32, 32)
    assert item["pixels"].dtype == torch.float32
    assert item["pixels"].min() >= -1 and item["pixels"].max() <= 1
    assert item["pixels"].min() == -1  # black background
    assert isinstance(item["caption"], str) and item["index"] == 3


@pytest.mark.parametrize(
    ("name", "kwargs", "frames"), [("moving-shapes", {"frames": 3}, 3), ("turntable", {"views": 5}, 5)]
)
def test_frame_and_view_counts(name, kwargs, frames):
    assert build_dataset(name, size=48, **kwargs)[0]["pixels"].shape == (3, frames, 48, 48)


@pytest.mark.parametrize("name", NAMES)
def test_determinism_and_order_independence(name):
    a, b = build_dataset(name, seed=3), build_dataset(name, seed=3)
    forward = [a[i] for i in (0, 1, 2, 3)]
    backward = [b[i] for i in (3, 2, 1, 0)][::-1]
    torch.manual_seed(123)  # the global RNG must not matter
    again = a[2]
    for x, y in zip(forward, backward, strict=True):
        assert torch.equal(x["pixels"], y["pixels"]) and x["caption"] == y["caption"]
    assert torch.equal(again["pixels"], forward[2]["pixels"])
    other = build_dataset(name, seed=4)
    assert any(not torch.equal(other[i]["pixels"], forward[i]["pixels"]) for i in range(4))
    assert a.caption(1) == forward[1]["caption"]


@pytest.mark.parametrize("name", NAMES)
def test_index_errors(name):
    dataset = build_dataset(name, num_samples=5)
    with pytest.raises(IndexError):
        dataset[5]
    with pytest.raises(IndexError):
        dataset[-1]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("shapes", {"size": 8}),
        ("shapes", {"size": 32.0}),
        ("shapes", {"seed": -1}),
        ("shapes", {"num_samples": 0}),
        ("shapes", {"min_objects": 0}),
        ("shapes", {"min_objects": 2, "max_objects": 1}),
        ("shapes", {"max_objects": 5}),
        ("moving-shapes", {"frames": 1}),
        ("turntable", {"views": 0}),
    ],
)
def test_argument_validation(name, kwargs):
    with pytest.raises(ValueError, match=str(next(iter(kwargs.values())))):
        build_dataset(name, **kwargs)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="moving-shapes"):
        build_dataset("mnist")
    with pytest.raises(TypeError):
        build_dataset("shapes", frames=4)  # an argument of another dataset


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("moving-shapes", {"max_objects": 3}),
        ("moving-shapes", {"min_objects": 0}),
        ("turntable", {"single_color_fraction": 1.5}),
    ],
)
def test_benchmark_option_validation(name, kwargs):
    with pytest.raises(ValueError, match=str(next(iter(kwargs.values())))):
        build_dataset(name, **kwargs)
