"""Checkpoint I/O (ptdit.models.registry save_model / load_model): round trip, clear errors, atomic saves."""

from __future__ import annotations

import pytest
import torch

import ptdit
from ptdit.config import PTDiTConfig
from ptdit.models.registry import save_model
from tests.helpers.models import randomize_, text_inputs, tiny_config


def test_checkpoint_roundtrip_identical_outputs(tmp_path):
    model = randomize_(ptdit.PTDiT(tiny_config())).eval()
    save_model(model, tmp_path / "ckpt")
    loaded = ptdit.load_model(tmp_path / "ckpt")
    assert isinstance(loaded.config, PTDiTConfig) and loaded.config == model.config
    x, t, ctx, mask = text_inputs()
    torch.testing.assert_close(loaded(x, t, ctx, mask), model(x, t, ctx, mask), atol=0, rtol=0)


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint folder"):
        ptdit.load_model(tmp_path / "missing")
    save_model(ptdit.PTDiT(tiny_config()), tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        ptdit.load_model(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ptdit.load_model(tmp_path / "ckpt")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    model = ptdit.PTDiT(tiny_config())
    save_model(model, tmp_path / "ckpt")
    before = (tmp_path / "ckpt" / "model.safetensors").read_bytes()
    import ptdit.models.registry as registry

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(registry, "write_json", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(randomize_(model), tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
