"""Training checkpoints (ptdit.train.state): a crash during a save keeps the previous checkpoint."""

from __future__ import annotations

import pytest

import ptdit
from ptdit.train.loop import train
from ptdit.train.state import latest_checkpoint
from tests.helpers.train import tiny_train_config


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_train_config("train.max_steps=4", "train.checkpoint_every=2")
    import ptdit.train.state as state

    original, calls = state.write_json, []

    def crash_on_second_progress(path, data):
        if path.name == "progress.json":
            calls.append(path)
            if len(calls) == 2:
                raise KeyboardInterrupt("killed during save")
        return original(path, data)

    monkeypatch.setattr(state, "write_json", crash_on_second_progress)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "run", show_progress=False)
    latest = latest_checkpoint(tmp_path / "run")
    assert latest.name == "step-0000002"
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["latest", "step-0000002"]
    ptdit.load_model(latest, weights="ema.safetensors")  # loadable
    # A folder left behind by a hard kill (never renamed into place) is ignored as well.
    (tmp_path / "run" / "checkpoints" / ".step-0000004.tmp-x").mkdir()
    assert latest_checkpoint(tmp_path / "run").name == "step-0000002"
