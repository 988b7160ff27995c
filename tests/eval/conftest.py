"""Shared evaluation-test fixtures, built once per session: tiny metric networks
(tests/helpers/metric_networks.py) and tiny trained checkpoints (a couple of training steps each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.metric_networks import make_tiny_clip_model, make_tiny_dinov2, make_tiny_i3d, make_tiny_inception
from tests.helpers.train import tiny_train_config


@pytest.fixture(scope="session")
def tiny_inception(tmp_path_factory):
    """A calibrated width-1/32 FID Inception-v3 state dict file."""
    return make_tiny_inception(tmp_path_factory.mktemp("inception") / "tiny_inception.pth")


@pytest.fixture(scope="session")
def tiny_i3d(tmp_path_factory):
    """A calibrated width-1/32 I3D state dict file."""
    return make_tiny_i3d(tmp_path_factory.mktemp("i3d") / "tiny_i3d.pt")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """A tiny CLIPModel folder with tokenizer and image processor."""
    return make_tiny_clip_model(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory):
    """A tiny Dinov2Model folder with its image processor."""
    return make_tiny_dinov2(tmp_path_factory.mktemp("dinov2"))


def _train(out: Path, *overrides: str, **sections) -> Path:
    from ptdit.train.loop import train

    cfg = tiny_train_config("train.max_steps=2", "data.size=32", "pipeline.text_max_length=40", *overrides, **sections)
    return train(cfg, out, show_progress=False).checkpoint


@pytest.fixture(scope="session")
def t2i_checkpoint(tmp_path_factory) -> Path:
    """A 2-step PT-DiT on 32 px shapes (words encoder long enough for every suite prompt), sampling in 2 steps."""
    return _train(tmp_path_factory.mktemp("t2i") / "run")


@pytest.fixture(scope="session")
def t2v_checkpoint(tmp_path_factory) -> Path:
    """A 2-step PT-DiT on 4-frame 32 px moving-shapes clips."""
    return _train(
        tmp_path_factory.mktemp("t2v") / "run",
        data={"dataset": "moving-shapes", "size": 32, "options": {"frames": 4}},
        pipeline={"task": "t2v"},
    )
