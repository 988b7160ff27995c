"""Presets, parameter counts, config JSON, checkpoint round-trip, `ptdit models`."""

from __future__ import annotations

import json

import pytest
import torch

import ptdit
from ptdit.cli.main import main
from ptdit.config import PTDiTConfig, config_from_dict
from ptdit.models.registry import build_model, count_parameters, save_model
from ptdit.presets.models import MODEL_PRESETS
from tests.helpers.models import randomize_, text_inputs, tiny_config


def _formula_text(D, depth):
    return depth * (30 * D * D + 36 * D) + 8 * D * D + 4413 * D + 32


@pytest.mark.parametrize(
    ("name", "D", "depth"),
    [("PT-DiT/B", 640, 12), ("PT-DiT/L", 864, 28), ("PT-DiT/XL", 1152, 28), ("PT-DiT/H", 1440, 30)],
)
def test_text_presets_match_parameter_formula(name, D, depth):
    assert count_parameters(build_model(name, device="meta"))["total"] == _formula_text(D, depth)


def test_known_counts():
    def count(name):
        return count_parameters(build_model(name, device="meta"))

    assert count("PT-DiT/XL")["total"] == 1_131_629_216
    assert count("DiT-XL/2") == {"total": 675_129_632, "trainable": 674_834_720}
    s = count("PT-DiT/S-Class")["total"]
    assert s == 10 * (26 * 288**2 + 32 * 288) + 7 * 288**2 + (17 + 258 + 6 + 2 + 32 + 1001) * 288 + 32


def test_presets_build_and_validate():
    for name in MODEL_PRESETS:
        model = build_model(name, device="meta")
        assert model.config.to_dict()["arch"] in ("ptdit", "dit", "pixart")


def test_models_json_cli(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in rows]
    for required in [
        "PT-DiT/S-Class",
        "PT-DiT/B",
        "PT-DiT/L",
        "PT-DiT/XL",
        "PT-DiT/H",
        "DiT-S/2",
        "DiT-B/2",
        "DiT-L/2",
        "DiT-XL/2",
        "PixArt-alpha-XL/2",
    ]:
        assert required in names
    for row in rows:
        assert {"name", "total_parameters", "trainable_parameters", "depth", "width", "heads"} <= set(row)
    xl = rows[names.index("PT-DiT/XL")]
    assert (xl["total_parameters"], xl["depth"], xl["width"], xl["heads"]) == (1_131_629_216, 28, 1152, 16)


def test_config_json_roundtrip_and_unknown_key():
    cfg = tiny_config(proxy_window=(1, 2, 2), window_size=(1, 4, 4))
    data = json.loads(json.dumps(cfg.to_dict()))
    assert config_from_dict(data) == cfg
    with pytest.raises(ValueError, match=r"unknown ptdit config keys \['dpeth'\]"):
        config_from_dict({**data, "dpeth": 3})
    with pytest.raises(ValueError, match="arch"):
        config_from_dict({"dim": 3})
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("PT-DiT/XXL")


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
