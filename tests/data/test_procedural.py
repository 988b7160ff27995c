"""Procedural datasets and oracle scorers: determinism, contracts, caption grammar, oracle accuracy."""

from __future__ import annotations

from collections import deque
from functools import cache

import numpy as np
import pytest
import torch

from ptdit.data import (
    DATASETS,
    ORACLES,
    VOCABULARY,
    ShapesDataset,
    build_dataset,
    format_caption,
    parse_caption,
    random_captions,
)
from ptdit.data.oracle import label_components

NAMES = list(DATASETS)
FRAMES = {"shapes": 1, "moving-shapes": 8, "turntable": 8}
SPEC_KEYS = {
    "shapes": {"objects"},
    "moving-shapes": {"color", "shape", "direction"},
    "turntable": {"kind", "color", "top_color"},
}


@cache
def _batch(name: str, size: int, n: int = 200) -> tuple[torch.Tensor, list[str]]:
    """(n, 3, F, size, size) pixels and captions of samples 0 .. n - 1 (seed 7), cached across tests.

    At 64 px clips and turntables use 4 frames / views instead of 8: half the time, and a second frame count.
    """
    kwargs = {"moving-shapes": {"frames": 4}, "turntable": {"views": 4}}.get(name, {}) if size == 64 else {}
    dataset = build_dataset(name, size=size, seed=7, **kwargs)
    items = [dataset[i] for i in range(n)]
    return torch.stack([it["pixels"] for it in items]), [it["caption"] for it in items]


# --------------------------------------------------------------------------------------------------------------
# Dataset contract
# --------------------------------------------------------------------------------------------------------------


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


def test_shapes_object_counts_and_no_overlap():
    dataset = ShapesDataset(min_objects=2, max_objects=3, size=32)
    for i in range(50):
        objects = dataset.sample_spec(i)["objects"]
        assert 2 <= len(objects) <= 3
        assert len({o["position"] for o in objects}) == len(objects)
    # Single objects only.
    assert all(len(ShapesDataset(max_objects=1).sample_spec(i)["objects"]) == 1 for i in range(20))


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


# --------------------------------------------------------------------------------------------------------------
# Captions
# --------------------------------------------------------------------------------------------------------------


def test_vocabulary_is_small_sorted_and_lower_case():
    assert len(VOCABULARY) < 40
    assert list(VOCABULARY) == sorted(set(VOCABULARY))
    assert all(w.isalpha() and w.islower() for w in VOCABULARY)


@pytest.mark.parametrize("name", NAMES)
def test_captions_use_vocabulary_and_roundtrip(name):
    kwargs = {"max_objects": 4} if name == "shapes" else {}
    captions = random_captions(name, 300, seed=5, **kwargs)
    assert len(set(captions)) > 50
    for caption in captions:
        assert set(caption.split()) <= set(VOCABULARY), caption
        spec = parse_caption(name, caption)
        assert set(spec) == SPEC_KEYS[name]
        assert format_caption(name, spec) == caption
    dataset = build_dataset(name, seed=5, **kwargs)
    assert captions[:5] == [dataset[i]["caption"] for i in range(5)]


def test_parse_examples():
    assert parse_caption("shapes", "a small red circle at the top left and a large blue square at the center") == {
        "objects": [
            {"size": "small", "color": "red", "shape": "circle", "position": "top left"},
            {"size": "large", "color": "blue", "shape": "square", "position": "center"},
        ]
    }
    assert parse_caption("shapes", "a large green triangle at the top")["objects"][0]["position"] == "top"
    assert parse_caption("moving-shapes", "a red circle moving left") == {
        "color": "red",
        "shape": "circle",
        "direction": "left",
    }
    assert parse_caption("turntable", "a red cube with a blue top") == {
        "kind": "cube",
        "color": "red",
        "top_color": "blue",
    }


@pytest.mark.parametrize(
    ("name", "caption"),
    [
        ("shapes", "a red circle at the top left"),  # size missing
        ("shapes", "a small red circle at the top left and"),
        ("shapes", "a small purple circle at the center"),
        ("moving-shapes", "a red circle moving sideways"),
        ("moving-shapes", "a red circle moving left fast"),
        ("turntable", "a red cube with a blue"),
        ("shapes-3d", "a red cube with a blue top"),
    ],
)
def test_parse_rejects_invalid_captions(name, caption):
    with pytest.raises(ValueError):
        parse_caption(name, caption)


# --------------------------------------------------------------------------------------------------------------
# Oracles
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", NAMES)
def test_oracle_accepts_ground_truth(name, size):
    pixels, captions = _batch(name, size)
    scores = ORACLES[name](pixels, captions)
    assert scores.shape == (len(captions),) and scores.dtype == torch.float32
    assert scores.mean() >= 0.98, f"mean {scores.mean():.4f}, worst {scores.min():.3f}"


@pytest.mark.parametrize("name", NAMES)
def test_oracle_rejects_shuffled_captions_noise_and_blank(name):
    pixels, captions = _batch(name, 32)
    pixels, captions = pixels[:100], captions[:100]
    oracle = ORACLES[name]
    shuffled = oracle(pixels, captions[1:] + captions[:1])
    noise = oracle(torch.rand(pixels.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1, captions)
    black = oracle(torch.full_like(pixels, -1.0), captions)
    grey = oracle(torch.zeros_like(pixels), captions)
    assert shuffled.mean() < 0.5, shuffled.mean()
    for name_, s in {"noise": noise, "black": black, "grey": grey}.items():
        assert s.mean() < 0.1, (name_, s.mean())
    assert ((shuffled >= 0) & (shuffled <= 1)).all()


def test_shapes_oracle_scores_render_of_parsed_caption():
    # Shapes render from the captioned attributes alone, so any valid caption can be drawn and checked.
    dataset = ShapesDataset(size=32)
    captions = [
        "a small red circle at the top left and a large blue square at the bottom right",
        "a large white triangle at the center",
    ]
    pixels = torch.stack(
        [
            torch.from_numpy(dataset.render(parse_caption("shapes", c)).transpose(3, 0, 1, 2).copy()) * 2 - 1
            for c in captions
        ]
    )
    assert torch.equal(ORACLES["shapes"](pixels, captions), torch.ones(2))
    # One wrong attribute out of 4 * 2 + 1: colour.
    wrong = ["a small green circle at the top left and a large blue square at the bottom right", captions[1]]
    torch.testing.assert_close(ORACLES["shapes"](pixels, wrong), torch.tensor([8 / 9, 1.0]))


def test_oracle_validates_inputs():
    pixels, captions = _batch("shapes", 32)
    with pytest.raises(ValueError, match="captions"):
        ORACLES["shapes"](pixels[:3], captions[:2])
    with pytest.raises(ValueError, match="B, 3, F, H, W"):
        ORACLES["shapes"](pixels[:2, :, 0], captions[:2])


def _reference_components(mask: np.ndarray) -> int:
    seen, count = np.zeros_like(mask), 0
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        count, queue = count + 1, deque([start])
        seen[start] = True
        while queue:
            r, c = queue.popleft()
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < mask.shape[0] and 0 <= nc < mask.shape[1] and mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    queue.append((nr, nc))
    return count


@pytest.mark.parametrize("density", [0.3, 0.55, 0.8])
def test_label_components_matches_bfs(density):
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((24, 24)) < density
        labels = label_components(mask)
        assert (labels[~mask] == -1).all()
        assert len(np.unique(labels[mask])) == _reference_components(mask)
        # Neighbouring foreground pixels share a label.
        both = mask[1:] & mask[:-1]
        assert (labels[1:][both] == labels[:-1][both]).all()
