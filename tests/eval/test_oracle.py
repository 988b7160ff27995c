"""Oracle scorers (ptdit.data.oracle): accept ground truth, reject shuffled captions and noise, validate inputs,
connected components."""

from __future__ import annotations

from collections import deque
from functools import cache

import numpy as np
import pytest
import torch

from ptdit.data import DATASETS, ShapesDataset, build_dataset, parse_caption
from ptdit.eval.oracle import ORACLES, label_components

NAMES = list(DATASETS)


@cache
def _batch(name: str, size: int, n: int = 200) -> tuple[torch.Tensor, list[str]]:
    """(n, 3, F, size, size) pixels and captions of samples 0 .. n - 1 (seed 7), cached across tests.

    At 64 px clips and turntables use 4 frames / views instead of 8: half the time, and a second frame count.
    """
    kwargs = {"moving-shapes": {"frames": 4}, "turntable": {"views": 4}}.get(name, {}) if size == 64 else {}
    dataset = build_dataset(name, size=size, seed=7, **kwargs)
    items = [dataset[i] for i in range(n)]
    return torch.stack([it["pixels"] for it in items]), [it["caption"] for it in items]


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


def test_demo_training_data_passes_every_check_and_is_deterministic():
    # The T2I demo trains on one to four objects per image (configs/demo-t2i.yaml), half of them two: the
    # two-object captions bind colours to shapes and place them, and real samples of them must pass every check
    # (drawn, colour, position, size, count), the same way every time.
    from ptdit.cli.demo import config_path
    from ptdit.eval.checks import check_shapes
    from ptdit.train.config import load_train_config

    cfg = load_train_config(config_path("demo-t2i.yaml"))
    dataset = build_dataset("shapes", size=cfg.data.size, seed=11, **cfg.data.options)
    items = [dataset[i] for i in range(160)]
    counts = [len(parse_caption("shapes", it["caption"])["objects"]) for it in items]
    assert counts.count(2) >= 0.4 * len(items) and max(counts) == 4
    two = [it for it, n in zip(items, counts, strict=True) if n == 2]
    pixels, captions = torch.stack([it["pixels"] for it in two]), [it["caption"] for it in two]
    scores = ORACLES["shapes"](pixels, captions)
    assert scores.mean() >= 0.98, f"mean {scores.mean():.4f}, worst {scores.min():.3f}"
    frames = ((pixels.permute(0, 2, 3, 4, 1) + 1) / 2).numpy()  # (N, F, H, W, 3) in [0, 1]
    verdicts = [[c.passed for c in check_shapes(f, c)[0]] for f, c in zip(frames, captions, strict=True)]
    assert np.mean([all(v) for v in verdicts]) >= 0.98
    # Deterministic: the same captions, pixels, scores and verdicts from a second dataset object.
    again = build_dataset("shapes", size=cfg.data.size, seed=11, **cfg.data.options)
    assert [again.caption(it["index"]) for it in two] == captions
    assert torch.equal(torch.stack([again[it["index"]]["pixels"] for it in two]), pixels)
    assert torch.equal(ORACLES["shapes"](pixels, captions), scores)
    assert [[c.passed for c in check_shapes(f, c)[0]] for f, c in zip(frames, captions, strict=True)] == verdicts


@pytest.mark.parametrize("size", [32, 64])
def test_class_oracle_accepts_labelled_samples_and_rejects_wrong_labels(size):
    """Class labels of one-object shapes: real samples score 1 with their labels; a label of another colour (same
    shape) scores 2/3; a blank image scores 0 (no object: no colour, no shape, wrong count)."""
    from ptdit.data.shapes import SHAPE_CLASSES, shape_class
    from ptdit.eval.oracle import score_shape_classes

    dataset = build_dataset("shapes", size=size, seed=3, max_objects=1, class_labels=True)
    items = [dataset[i] for i in range(60)]
    pixels, labels = torch.stack([it["pixels"] for it in items]), [it["label"] for it in items]
    assert len(set(labels)) > 12 and all(0 <= k < len(SHAPE_CLASSES) for k in labels)
    for it in items:  # the label is the caption's (colour, shape)
        (obj,) = parse_caption("shapes", it["caption"])["objects"]
        assert it["label"] == shape_class(obj["color"], obj["shape"])
    assert score_shape_classes(pixels, labels).min().item() == 1.0
    other_color = [shape_class(SHAPE_CLASSES[(k + 3) % 18][0], SHAPE_CLASSES[k][1]) for k in labels]
    assert score_shape_classes(pixels, other_color).tolist() == pytest.approx([2 / 3] * len(items))
    assert score_shape_classes(-torch.ones(2, 3, 1, size, size), [0, 5]).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="2 samples but 1 labels"):
        score_shape_classes(pixels[:2], labels[:1])


def test_class_labels_need_one_object_and_leave_the_images_unchanged():
    labelled = build_dataset("shapes", size=32, seed=5, max_objects=1, class_labels=True)
    plain = build_dataset("shapes", size=32, seed=5, max_objects=1)
    assert torch.equal(labelled[4]["pixels"], plain[4]["pixels"]) and labelled[4]["caption"] == plain[4]["caption"]
    assert "label" not in plain[4]
    with pytest.raises(ValueError, match="class_labels needs one object per image: set max_objects=1"):
        build_dataset("shapes", size=32, max_objects=2, class_labels=True)
