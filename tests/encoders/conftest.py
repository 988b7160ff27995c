"""Fixtures of the encoder tests: tiny offline models built from configs (tests/helpers/tiny_encoders.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tiny_encoders import make_tiny_clip, make_tiny_t5, make_tiny_vae, make_tiny_video_vae


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_encoders")
    return {
        "t5": make_tiny_t5(root / "t5"),
        "clip": make_tiny_clip(root / "clip"),
        "vae": make_tiny_vae(root / "vae", scaling_factor=0.5, shift_factor=0.1),
        "wan": make_tiny_video_vae(root / "wan"),
    }
