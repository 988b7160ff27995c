"""Tiny metric networks for the evaluation tests, built once per session (tests/helpers/metric_networks.py)."""

from __future__ import annotations

import pytest

from tests.helpers.metric_networks import make_tiny_clip_model, make_tiny_dinov2, make_tiny_i3d, make_tiny_inception


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
