"""Tests of the native Open-Sora-Plan v1.2 CausalVAE (ptdit.encoders.causalvae).

Parity runs against `fixtures/causalvae_tiny.safetensors`: outputs of the reference (MindSpeed-MM CausalVAE,
the Qihoo-T2X pipeline's VAE) for a tiny random config, fp32 CPU; its metadata documents every tensor.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ptdit.encoders import MissingWeightsError, load_vae
from ptdit.encoders.causalvae import (
    LATENT_SCALE,
    CausalVAE,
    CausalVAEConfig,
    CausalVAEModel,
    load_causalvae,
    posterior_mean_logvar,
    save_causalvae_model,
)
from ptdit.encoders.causalvae.tiling import blend_edge, tiled_2d, tiled_over_time

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TINY = FIXTURES / "causalvae_tiny.safetensors"
RELEASED_KEYS = FIXTURES / "causalvae_released_keys.json"
ATOL = 1e-4  # fp32 parity budget; measured differences are ~1e-5 or below
NOISE_SEEDS = {"image": 1011, "video": 1021}  # the fixture's data seed 1001 + 10 / + 20 (see its metadata)


@pytest.fixture(scope="module")
def tiny() -> tuple[CausalVAEConfig, dict[str, torch.Tensor]]:
    with safe_open(str(TINY), framework="pt") as handle:
        config = CausalVAEConfig.from_dict(json.loads(handle.metadata()["config"]))
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (safe_open is not a dict)
    return config, tensors


def _params(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("param."): v for k, v in tensors.items() if k.startswith("param.")}


@pytest.fixture(scope="module")
def tiny_folder(tiny, tmp_path_factory) -> Path:
    """config.json + model.safetensors of the fixture model, written by our own saver."""
    config, tensors = tiny
    model = CausalVAEModel(config)
    model.load_state_dict(_params(tensors))
    return save_causalvae_model(model, tmp_path_factory.mktemp("causalvae"))


@pytest.fixture(scope="module")
def vae(tiny_folder) -> CausalVAE:
    loaded = load_vae(tiny_folder)
    assert isinstance(loaded, CausalVAE)
    return loaded


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} vs {tuple(expected.shape)}"
    err = (actual - expected).abs().max().item()
    assert err <= ATOL, f"{what}: max abs error {err:.3g} > {ATOL}"


# ------------------------------------------------------------------------------------------------------
# Released architecture
# ------------------------------------------------------------------------------------------------------


def test_released_config_names_shapes_and_count_on_meta() -> None:
    released = json.loads(RELEASED_KEYS.read_text())
    config = CausalVAEConfig.from_dict(released["released_ae_section"])
    assert config == CausalVAEConfig()  # our defaults are the released pipeline's VAE
    assert config.tile_latent_min_size == released["derived"]["tile_latent_min_size"] == 64
    with torch.device("meta"):
        model = CausalVAEModel(config)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == released["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == released["num_parameters"] == 239_189_991
    assert (config.spatial_factor, config.temporal_factor, config.embed_dim) == (8, 4, 4)


def test_config_reads_reference_formats_and_rejects_bad_layers() -> None:
    # Open-Sora-Plan config.json style: diffusers bookkeeping, training keys, its name for the attention.
    osp = {**CausalVAEConfig().to_dict(), "_diffusers_version": "0.27.2", "lr": 1e-5, "loss_params": {}}
    osp |= {"encoder_attention": "AttnBlock3DFix", "decoder_attention": "AttnBlock3DFix", "in_channels": 3}
    assert CausalVAEConfig.from_dict(osp).encoder_attention == "AttnBlock3DFix"
    with pytest.warns(UserWarning, match="surprise"):
        CausalVAEConfig.from_dict({"surprise": 1})
    with pytest.raises(ValueError, match="TimeDownsampleRes2x"):
        CausalVAEConfig(encoder_temporal_downsample=("", "TimeDownsampleRes2x", "", ""))
    with pytest.raises(ValueError, match=r"vae_scale_factor=\[4, 16, 16\]"):
        CausalVAEConfig(vae_scale_factor=(4, 16, 16))
    with pytest.raises(ValueError, match="one per level"):
        CausalVAEConfig(encoder_resnet_blocks=("ResnetBlock3D",) * 3)


# ------------------------------------------------------------------------------------------------------
# Parity with the reference
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["image", "video"])
def test_encode_parity(case: str, tiny, vae: CausalVAE) -> None:
    _, ref = tiny
    pixels = ref[f"{case}.pixels"]
    with torch.no_grad():
        moments = vae.model.encode(pixels)
    mean, logvar = posterior_mean_logvar(moments)
    _assert_close(moments, ref[f"{case}.moments"], "moments")
    _assert_close(mean, ref[f"{case}.posterior_mean"], "posterior mean")
    _assert_close(logvar, ref[f"{case}.posterior_logvar"], "posterior logvar")
    _assert_close(vae.encode(pixels), ref[f"{case}.latents"], "latents (mean * 0.18215)")
    # The reference's encode() samples with torch.randn after a global seed; a generator with that seed
    # draws the same noise.
    sampled = vae.encode(pixels, sample=True, generator=torch.Generator().manual_seed(NOISE_SEEDS[case]))
    _assert_close(sampled, ref[f"{case}.encode_output"], "sampled latents")


@pytest.mark.parametrize("case", ["image", "video"])
def test_decode_parity(case: str, tiny, vae: CausalVAE) -> None:
    _, ref = tiny
    _assert_close(vae.decode(ref[f"{case}.latents"]), ref[f"{case}.decoded"], f"decoded {case}")


@pytest.mark.parametrize("case", ["tiled", "tiled_t"])  # spatial tiles (20 x 20 latent), temporal chunks (10 frames)
def test_tiled_decode_parity(case: str, tiny, vae: CausalVAE) -> None:
    _, ref = tiny
    latents = ref[f"{case}.latents"]
    assert not vae.use_tiling  # the fixture config has use_tiling false
    _assert_close(vae.decode(latents), ref[f"{case}.decoded_plain"], "untiled decode")
    vae.enable_tiling(True)
    try:
        _assert_close(vae.decode(latents), ref[f"{case}.decoded_tiled"], "tiled decode")
    finally:
        vae.enable_tiling(False)


# ------------------------------------------------------------------------------------------------------
# Tiling
# ------------------------------------------------------------------------------------------------------


def test_tiling_on_small_inputs_falls_back_to_whole(tiny, tiny_folder) -> None:
    """The reference raises UnboundLocalError when tiling is on and the input fits one tile; we run it whole."""
    _, ref = tiny
    tiled = load_causalvae(tiny_folder, use_tiling=True)
    assert tiled.use_tiling
    _assert_close(tiled.decode(ref["image.latents"]), ref["image.decoded"], "decode, one tile")
    _assert_close(tiled.encode(ref["video.pixels"]), ref["video.latents"], "encode, one tile")


def test_tiled_decode_runs_decoder_on_bounded_tiles(tiny) -> None:
    """A large non-square video latent is decoded tile by tile, each within the tile limits."""
    config, tensors = tiny
    model = CausalVAEModel(dataclasses.replace(config, use_tiling=True, tile_latent_min_size_t=2))
    model.load_state_dict(_params(tensors))
    seen: list[tuple[int, ...]] = []
    model.decoder.register_forward_pre_hook(lambda _module, args: seen.append(tuple(args[0].shape[2:])))
    z = torch.randn(1, 4, 3, 9, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model.decode(z)
    assert out.shape == (1, 3, 9, 72, 80)
    assert len(seen) == 2 * 2 * 2  # 2 chunks (frames 0-1, 1-2) x 2 tile rows (0, 7) x 2 tile cols (0, 7)
    assert max(f for f, _, _ in seen) <= 2
    assert max(max(y, x) for _, y, x in seen) <= config.tile_latent_min_size


def test_tiled_encode_shape(tiny) -> None:
    config, tensors = tiny
    model = CausalVAEModel(dataclasses.replace(config, use_tiling=True))  # 64 px tiles, 8 latent
    model.load_state_dict(_params(tensors))
    vae = CausalVAE(model)
    pixels = torch.rand(1, 3, 5, 40, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert vae.encode(pixels).shape == (1, 4, 2, 5, 16)  # tile cols at 0, 56, 112 px keep 7 + 7 + 2 latent


def test_tiled_2d_of_a_local_map_is_exact() -> None:
    """Where neighbouring tiles agree, blending changes nothing: a per-pixel map tiles exactly, any size."""
    x = torch.randn(2, 3, 2, 13, 22, generator=torch.Generator().manual_seed(0))

    def upsample(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(t, scale_factor=(1, 4, 4), mode="nearest") * 2 + 1

    # stride int(8 * 0.75) = 6 inputs, ramp int(32 * 0.25) = 8 outputs, keep 32 - 8 = 24 = 6 * 4 outputs.
    out = tiled_2d(upsample, x, tile=(8, 32), overlap_factor=0.25)
    torch.testing.assert_close(out, upsample(x), atol=1e-6, rtol=0)


def test_blend_edge_is_the_linear_ramp() -> None:
    before, tile = torch.randn(1, 1, 1, 6, 5), torch.randn(1, 1, 1, 4, 5)
    out = blend_edge(before, tile, 3, dim=-2)
    for y in range(3):  # row y: (1 - y/3) * before[-3 + y] + (y/3) * tile[y]
        torch.testing.assert_close(out[..., y, :], before[..., 3 + y, :] * (1 - y / 3) + tile[..., y, :] * (y / 3))
    torch.testing.assert_close(out[..., 3:, :], tile[..., 3:, :], atol=0, rtol=0)
    assert blend_edge(before, tile[..., :2, :], 3, dim=-2).shape == (1, 1, 1, 2, 5)  # ramp clipped to 2 rows


def test_temporal_chunks_reassemble_a_causal_map() -> None:
    """Chunks share one frame and later ones drop their first output frame: a causal frame map is exact."""
    x = torch.randn(1, 2, 11, 3, 3, generator=torch.Generator().manual_seed(0))

    def expand(t: torch.Tensor) -> torch.Tensor:  # F -> 1 + 4 (F - 1), each frame depends on itself only
        return torch.cat([t[:, :, :1], t[:, :, 1:].repeat_interleave(4, dim=2)], dim=2) * 3

    for chunk in (2, 3, 8, 10, 11, 12):
        torch.testing.assert_close(tiled_over_time(expand, x, chunk=chunk), expand(x), atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------------
# Interface: frame rule, shapes, clamping
# ------------------------------------------------------------------------------------------------------


def test_frame_rule_and_shape_errors(vae: CausalVAE) -> None:
    assert [vae.latent_frames(f) for f in (1, 5, 9, 17)] == [1, 2, 3, 5]
    assert vae.pixel_frames(3) == 9 and vae.latent_shape(9, 32, 48) == (3, 4, 6)
    with pytest.raises(ValueError, match="nearest valid: 9 or 13"):
        vae.latent_frames(10)
    with pytest.raises(ValueError, match=r"nearest valid: 1$"):
        vae.latent_frames(0)
    with pytest.raises(ValueError, match="nearest valid: 5 or 9"):
        vae.encode(torch.zeros(1, 3, 6, 16, 16))
    with pytest.raises(ValueError, match="multiples of 8"):
        vae.encode(torch.zeros(1, 3, 1, 12, 16))
    with pytest.raises(ValueError, match=r"\(B, 4, F, H, W\)"):
        vae.decode(torch.zeros(1, 8, 1, 2, 2))


def test_non_square_video_round_trip_shapes_and_clamp(vae: CausalVAE) -> None:
    pixels = torch.rand(2, 3, 5, 16, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    latents = vae.encode(pixels)
    assert latents.shape == (2, 4, 2, 2, 5) and latents.dtype == torch.float32
    decoded = vae.decode(latents, clamp=True)
    assert decoded.shape == (2, 3, 5, 16, 40) and decoded.abs().max() <= 1.0
    # Batch entries are independent.
    _assert_close(vae.encode(pixels[1:]), latents[1:], "batch slice")


# ------------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------------


def _write_folder(folder: Path, config: CausalVAEConfig, checkpoint: object) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    torch.save(checkpoint, folder / "checkpoint.ckpt")
    return folder


def test_checkpoint_nesting(tiny, tmp_path: Path) -> None:
    config, tensors = tiny
    params = _params(tensors)
    ema = {k: v + 1 for k, v in params.items()}
    key = "decoder.conv_out.conv.bias"
    # MindSpeed-MM order by default: `model`, then `state_dict`, then `ema_state_dict`; `module.` / `loss.` tidied.
    ddp = {f"module.{k}": v for k, v in params.items()} | {"module.loss.logvar": torch.zeros(())}
    folder = _write_folder(tmp_path / "a", config, {"state_dict": ddp, "ema_state_dict": ema, "step": 3})
    torch.testing.assert_close(load_causalvae(folder).model.state_dict()[key], params[key])
    ema_vae = load_causalvae(folder, weights_key="ema_state_dict")
    torch.testing.assert_close(ema_vae.model.state_dict()[key], ema[key])
    folder = _write_folder(tmp_path / "b", config, {"ema_state_dict": ema})
    torch.testing.assert_close(load_causalvae(folder / "checkpoint.ckpt").model.state_dict()[key], ema[key])
    folder = _write_folder(tmp_path / "c", config, {"state_dict": {"gen_model": params}})  # Open-Sora-Plan trainer
    torch.testing.assert_close(load_causalvae(folder).model.state_dict()[key], params[key])
    with pytest.raises(ValueError, match=r"no 'model' dict; its top-level keys are \[state_dict\]"):
        load_causalvae(folder, weights_key="model")


def test_loading_refuses_pickled_objects_and_names_mismatches(tiny, tmp_path: Path) -> None:
    config, tensors = tiny
    params = _params(tensors)
    folder = _write_folder(tmp_path / "objects", config, {"state_dict": params, "args": argparse.Namespace(lr=1)})
    with pytest.raises(ValueError, match="Python objects besides tensors"):
        load_causalvae(folder)
    broken = dict(params)
    del broken["quant_conv.conv.bias"]
    broken["decoder.conv_in.conv.bias"] = torch.zeros(7)
    broken["extra.weight"] = torch.zeros(1)
    save_file(broken, str(tmp_path / "broken.safetensors"))
    with pytest.raises(ValueError) as info:
        load_causalvae(tmp_path / "broken.safetensors", config=config)
    message = str(info.value)
    assert "\n" not in message
    for part in ("1 missing [quant_conv.conv.bias]", "1 unexpected [extra.weight]", "(7,) vs (32,)"):
        assert part in message


def test_released_alias_offline_is_a_missing_weights_error(monkeypatch, tmp_path: Path) -> None:
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache, even where it is downloaded
    with pytest.raises(MissingWeightsError, match=re.escape("LanguageBind/Open-Sora-Plan-v1.2.0")):
        load_vae("opensora-plan-v1.2")


def test_bf16_weights_load_directly(tiny, tiny_folder, monkeypatch) -> None:
    _, ref = tiny
    devices: list[str] = []
    original = torch.nn.Conv3d.reset_parameters

    def record(self: torch.nn.Conv3d) -> None:
        devices.append(self.weight.device.type)
        original(self)

    monkeypatch.setattr(torch.nn.Conv3d, "reset_parameters", record)
    vae = load_causalvae(tiny_folder, dtype=torch.bfloat16)
    assert set(devices) == {"meta"}  # built without materialising fp32 weights
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16} and vae.dtype == torch.bfloat16
    # bf16 rounding through ~20 layers of random weights: measured max / mean abs error 0.12 / 0.014 on
    # outputs of mean magnitude 0.26 (decode), 0.003 / 0.0006 on latents of mean magnitude 0.023 (encode).
    decoded = vae.decode(ref["image.latents"])
    assert decoded.dtype == torch.float32
    err = (decoded - ref["image.decoded"]).abs()
    assert err.max() < 0.3 and err.mean() < 0.03, (err.max().item(), err.mean().item())
    err = (vae.encode(ref["image.pixels"]) - ref["image.latents"]).abs()
    assert err.max() < 0.01 and err.mean() < 0.002, (err.max().item(), err.mean().item())


def test_scale_is_applied_once_in_each_direction(vae: CausalVAE) -> None:
    assert LATENT_SCALE == 0.18215
    z = torch.randn(1, 4, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(z * LATENT_SCALE), vae.model.decode(z), atol=1e-4, rtol=0)
