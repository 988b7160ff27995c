"""Reference-weight conversion (ptdit.interop.official): fixture parity (docs/checkpoints.md#parity-fixtures), XL key
file, converter errors, released pipeline defaults."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import ptdit
from ptdit.cli.main import main
from ptdit.interop.official import convert_official, reference_config_to_ptdit
from ptdit.models.registry import build_model


class NotATensor:
    """A class `torch.load(weights_only=True)` must refuse to unpickle."""


@pytest.fixture(scope="module")
def fixture_file(fixtures_dir):
    """The parity fixture of docs/checkpoints.md#parity-fixtures (tests/fixtures/README.md)."""
    return fixtures_dir / "ptdit_official_image.safetensors"


@pytest.fixture(scope="module")
def fixture_parts(tmp_path_factory, fixture_file):
    tensors = load_file(str(fixture_file))
    with safe_open(str(fixture_file), "pt") as f:
        metadata = f.metadata()
    folder = tmp_path_factory.mktemp("reference")
    params = {k.removeprefix("param."): v for k, v in tensors.items() if k.startswith("param.")}
    save_file(params, str(folder / "weights.safetensors"))
    torch.save(params, folder / "weights.pt")
    (folder / "config.json").write_text(json.dumps(metadata))
    return folder, tensors, params


@pytest.mark.parametrize("weights_name", ["weights.safetensors", "weights.pt"])
def test_fixture_parity_through_cli(fixture_parts, tmp_path, weights_name, capsys):
    folder, tensors, _ = fixture_parts
    out_dir = tmp_path / "converted"
    args = ["convert-official", "--weights", str(folder / weights_name), "--config", str(folder / "config.json")]
    assert main([*args, "--out", str(out_dir)]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "model.safetensors"]
    model = ptdit.load_model(out_dir)
    with torch.no_grad():
        out = model(
            tensors["input.latents"],
            tensors["input.timestep"],
            context=tensors["input.context"],
            context_mask=tensors["input.context_mask"],
        )
    assert out.shape == (2, 8, 1, 16, 16) and out.dtype == torch.float32
    err = (out - tensors["output"]).abs().max().item()
    assert err <= 1e-4, f"max abs error {err:.3g} against the reference output"
    torch.testing.assert_close(out, tensors["output"], atol=1e-4, rtol=1e-4)


def test_fixture_parity_with_math_backend_and_metadata_config(fixture_parts, fixture_file, tmp_path):
    _folder, tensors, params = fixture_parts
    with_meta = tmp_path / "with_meta.safetensors"
    with safe_open(str(fixture_file), "pt") as f:
        save_file(params, str(with_meta), metadata=f.metadata())
    model = ptdit.load_model(convert_official(with_meta, None, tmp_path / "ckpt"))
    with torch.no_grad(), ptdit.use_attention_backend("math"):
        out = model(
            tensors["input.latents"], tensors["input.timestep"], tensors["input.context"], tensors["input.context_mask"]
        )
    torch.testing.assert_close(out, tensors["output"], atol=1e-4, rtol=1e-4)


def test_converter_unwraps_nesting_and_prefix(fixture_parts, tmp_path):
    folder, _tensors, params = fixture_parts
    nested = {"state_dict": {f"module.{k}": v for k, v in params.items()}}
    nested["state_dict"]["module.pos_embed.pos_embed"] = torch.zeros(1, 1, 64, 64)
    torch.save(nested, tmp_path / "nested.pt")
    model = ptdit.load_model(convert_official(tmp_path / "nested.pt", folder / "config.json", tmp_path / "out"))
    torch.testing.assert_close(model.state_dict()["proj_out.weight"], params["proj_out.weight"])


@pytest.mark.parametrize("damage", ["missing", "unexpected", "misshaped"])
def test_converter_bad_keys_one_error_nothing_written(fixture_parts, tmp_path, damage, capsys):
    folder, _, params = fixture_parts
    bad = dict(params)
    if damage == "missing":
        del bad["transformer_blocks.1.attn3.to_k.weight"]
    elif damage == "unexpected":
        bad["transformer_blocks.0.extra.weight"] = torch.zeros(2)
    else:
        bad["transformer_blocks.0.linear_2.weight"] = torch.zeros(3, 3)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    out_dir = tmp_path / "out"
    code = main(
        [
            "convert-official",
            "--weights",
            str(tmp_path / "bad.safetensors"),
            "--config",
            str(folder / "config.json"),
            "--out",
            str(out_dir),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert {"missing": "1 missing", "unexpected": "1 unexpected", "misshaped": "1 mis-shaped"}[damage] in err
    assert not out_dir.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_converter_rejects_corrupt_and_pickled_files(tmp_path, capsys):
    (tmp_path / "cfg.json").write_text(
        json.dumps(
            {
                "num_attention_heads": 2,
                "attention_head_dim": 16,
                "in_channels": 4,
                "num_layers": 1,
                "caption_channels": 8,
            }
        )
    )
    (tmp_path / "broken.safetensors").write_bytes(b"\x00\x01garbage")
    code = main(
        [
            "convert-official",
            "--weights",
            str(tmp_path / "broken.safetensors"),
            "--config",
            str(tmp_path / "cfg.json"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "corrupt" in capsys.readouterr().err

    torch.save({"x": NotATensor()}, tmp_path / "evil.pt")
    code = main(
        [
            "convert-official",
            "--weights",
            str(tmp_path / "evil.pt"),
            "--config",
            str(tmp_path / "cfg.json"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "weights_only" in capsys.readouterr().err
    code = main(
        [
            "convert-official",
            "--weights",
            str(tmp_path / "nope.pt"),
            "--config",
            str(tmp_path / "cfg.json"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_reference_config_mapping_and_checks():
    ref = {
        "num_attention_heads": "4",
        "attention_head_dim": "16",
        "in_channels": 4,
        "out_channels": 8,
        "num_layers": 3,
        "cross_attention_dim": 64,
        "caption_channels": 32,
        "compress_ratios": "[4, 2, 2]",
        "proxy_compress_ratios": [4, 2, 2],
        "shift_window": "false",
        "norm_eps": 1e-5,
    }
    cfg = reference_config_to_ptdit(ref)
    assert (cfg.dim, cfg.depth, cfg.num_heads, cfg.context_dim) == (64, 3, 4, 32)
    assert cfg.window_size == (4, 2, 2) and cfg.proxy_window is None and not cfg.use_shifted_window
    assert cfg.norm_eps == 1e-5
    with pytest.raises(ValueError, match="cross_attention_dim"):
        reference_config_to_ptdit({**ref, "cross_attention_dim": 32})
    with pytest.raises(ValueError, match="norm_elementwise_affine"):
        reference_config_to_ptdit({**ref, "norm_elementwise_affine": True})
    with pytest.raises(ValueError, match="lacks"):
        reference_config_to_ptdit({"in_channels": 4})


def test_xl_preset_matches_released_key_file(fixtures_dir):
    spec = json.loads((fixtures_dir / "ptdit_official_xl_keys.json").read_text())
    expected = {k: tuple(v) for k, v in spec["state_dict"].items() if k != "pos_embed.pos_embed"}
    model = build_model("PT-DiT/XL", device="meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == expected
    assert sum(p.numel() for p in model.parameters()) == spec["num_parameters"] == 1_131_629_216
    assert reference_config_to_ptdit(spec["config"]) == model.config


def test_released_weights_sample_with_reference_defaults(tmp_path):
    from ptdit.interop.official import RELEASED_PIPELINE

    assert (RELEASED_PIPELINE.sampler, RELEASED_PIPELINE.steps, RELEASED_PIPELINE.cfg_scale) == ("flow-euler", 30, 4.0)
    assert RELEASED_PIPELINE.text_max_length == 200 and RELEASED_PIPELINE.timestep_shift
    assert RELEASED_PIPELINE.objective == "flow"
