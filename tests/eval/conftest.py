"""Tiny trained checkpoints for the evaluation tests (built once per session: a couple of training steps each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.train import tiny_train_config


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
