"""Tests of ptdit.encoders: text encoders, VAEs and the missing-weights errors, with tiny offline models.

Every model is built from a config by tests/_tiny_encoders.py and saved into a temporary folder; nothing is
downloaded (HF_HUB_OFFLINE=1 while loading).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from _tiny_encoders import (
    TINY_CLIP_DIM,
    TINY_T5_DIM,
    make_tiny_clip,
    make_tiny_t5,
    make_tiny_vae,
    make_tiny_video_vae,
)

pytest.importorskip("transformers")
pytest.importorskip("diffusers")

from ptdit.encoders import (
    IdentityVAE,
    ImageVAE,
    MissingWeightsError,
    TextEncoder,
    VideoVAE,
    clean_caption,
    load_text_encoder,
    load_vae,
)
from ptdit.encoders.errors import require

T5_LENGTH = 16


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


@pytest.fixture(scope="module")
def t5(folders: dict[str, Path]) -> TextEncoder:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return load_text_encoder(folders["t5"], max_length=T5_LENGTH)


@pytest.fixture(scope="module")
def image_vae(folders: dict[str, Path]) -> ImageVAE:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        vae = load_vae(folders["vae"])
    assert isinstance(vae, ImageVAE)
    return vae


@pytest.fixture(scope="module")
def video_vae(folders: dict[str, Path]) -> VideoVAE:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        vae = load_vae(folders["wan"])
    assert isinstance(vae, VideoVAE)
    return vae


def _pixels(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ------------------------------------------------------------------------------------------------------
# Import cost and optional dependencies
# ------------------------------------------------------------------------------------------------------


def test_import_is_lazy() -> None:
    code = (
        "import sys, ptdit.encoders as e; "
        "heavy = [m for m in ('transformers', 'diffusers') if m in sys.modules]; "
        "assert not heavy, heavy; e.load_vae; assert 'diffusers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_require_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"pip install 'ptdit\[video\]'"):
        require("ptdit_no_such_package_xyz", "video")


# ------------------------------------------------------------------------------------------------------
# Text encoders
# ------------------------------------------------------------------------------------------------------


def test_clean_caption() -> None:
    # The reference cleaner (tests/encoders/test_text_reference.py has the fixture cases) drops "&" and keeps
    # the "." left of a removed "a.png".
    assert clean_caption("  A <b>Red</b>   CAT\n&amp; a dog https://x.org/a.png www.y.com  ") == "a red cat a dog ."
    assert clean_caption("") == ""
    assert clean_caption("plain caption") == "plain caption"


def test_t5_shapes_mask_and_empty_prompt(t5: TextEncoder) -> None:
    assert (t5.kind, t5.dim, t5.max_length, t5.clean_captions) == ("t5", TINY_T5_DIM, T5_LENGTH, True)
    emb, mask = t5.encode(["a cat", ""])
    assert emb.shape == (2, T5_LENGTH, TINY_T5_DIM) and emb.dtype == torch.float32
    assert mask.shape == (2, T5_LENGTH) and mask.dtype == torch.long
    # ByT5: one token per byte plus EOS; the rest is padding (mask 0).
    assert mask.sum(1).tolist() == [len("a cat") + 1, 1]
    assert mask[0, :6].all() and not mask[0, 6:].any()
    ids, _ = t5.tokenize([""])
    assert ids[0, 0].item() == t5.tokenizer.eos_token_id
    assert (ids[0, 1:] == t5.tokenizer.pad_token_id).all()
    assert torch.isfinite(emb).all()


def test_t5_mask_is_used_in_encoder(folders: dict[str, Path], t5: TextEncoder) -> None:
    # With the mask applied inside T5, more padding must not change the real tokens' features.
    longer = load_text_encoder(folders["t5"], max_length=2 * T5_LENGTH)
    emb_a, mask_a = t5.encode(["a small dog"])
    emb_b, _ = longer.encode(["a small dog"])
    n = int(mask_a.sum())
    torch.testing.assert_close(emb_a[:, :n], emb_b[:, :n], atol=1e-5, rtol=1e-5)


def test_t5_truncation_warns_with_dropped_count(t5: TextEncoder) -> None:
    long_prompt = "x" * 30  # 30 bytes + EOS = 31 tokens -> 15 dropped at length 16
    with pytest.warns(UserWarning, match=r"1 of 2 prompts .* max_length=16 .*prompt 1: 15") as record:
        emb, mask = t5.encode(["ok", long_prompt])
    assert len(record) == 1
    assert emb.shape == (2, T5_LENGTH, TINY_T5_DIM) and mask[1].all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t5.encode(["x" * (T5_LENGTH - 1)])  # exactly max_length tokens with EOS: no warning


def test_t5_caption_cleaning_flag(folders: dict[str, Path], t5: TextEncoder) -> None:
    raw = "A <i>Red</i> CAT https://example.com/cat"
    emb_clean, _ = t5.encode([raw])
    emb_ref, _ = t5.encode(["a red cat"])
    torch.testing.assert_close(emb_clean, emb_ref, atol=0, rtol=0)
    plain = load_text_encoder(folders["t5"], max_length=T5_LENGTH, clean_captions=False)
    assert not torch.equal(plain.encode(["A CAT"])[0], t5.encode(["A CAT"])[0])


def test_t5_reload_gives_identical_outputs(folders: dict[str, Path], t5: TextEncoder) -> None:
    from transformers import T5EncoderModel

    again = load_text_encoder(folders["t5"], kind="t5", max_length=T5_LENGTH)
    prompts = ["A Photo", "", "two dogs"]
    torch.testing.assert_close(again.encode(prompts), t5.encode(prompts), atol=0, rtol=0)
    ids, mask = t5.tokenize([clean_caption(p) for p in prompts])
    direct = T5EncoderModel.from_pretrained(folders["t5"]).eval()
    with torch.no_grad():
        ref = direct(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(t5.encode(prompts)[0], ref, atol=0, rtol=0)


def test_t5_bf16_weights_return_float32(folders: dict[str, Path]) -> None:
    enc = load_text_encoder(folders["t5"], max_length=8, dtype=torch.bfloat16)
    assert enc.dtype == torch.bfloat16
    emb, _ = enc.encode(["a"])
    assert emb.dtype == torch.float32 and emb.shape == (1, 8, TINY_T5_DIM)


def test_clip_shapes_and_mask(folders: dict[str, Path]) -> None:
    clip = load_text_encoder(folders["clip"])
    assert (clip.kind, clip.dim, clip.max_length, clip.clean_captions) == ("clip", TINY_CLIP_DIM, 77, False)
    emb, mask = clip.encode(["the cat on the dog", ""])
    assert emb.shape == (2, 77, TINY_CLIP_DIM) and emb.dtype == torch.float32
    # BOS + 5 word tokens + EOS; the empty prompt is BOS + EOS.
    assert mask.sum(1).tolist() == [7, 2]
    assert not mask[:, 7:].any()
    with pytest.warns(UserWarning, match="prompts exceed the clip max_length=77"):
        clip.encode(["the cat " * 60])
    with pytest.raises(ValueError, match="position limit 77"):
        load_text_encoder(folders["clip"], max_length=100)


def test_text_encoder_kind_detection_errors(folders: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"model_type 't5'.*kind='clip'"):
        load_text_encoder(folders["t5"], kind="clip")
    with pytest.raises(ValueError, match="kind must be one of"):
        load_text_encoder(folders["t5"], kind="bert")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert'"):
        load_text_encoder(tmp_path)


def test_text_encoder_rejects_bad_prompts(t5: TextEncoder) -> None:
    with pytest.raises(TypeError, match="list of strings"):
        t5.encode("a cat")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="every prompt must be a str"):
        t5.encode(["a", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="prompts is empty"):
        t5.encode([])


# ------------------------------------------------------------------------------------------------------
# VAEs
# ------------------------------------------------------------------------------------------------------


def test_identity_vae_roundtrip_exact() -> None:
    vae = load_vae("identity")
    assert isinstance(vae, IdentityVAE)
    assert (vae.latent_channels, vae.spatial_factor, vae.temporal_factor) == (3, 1, 1)
    x = _pixels(2, 3, 4, 8, 6)
    z = vae.encode(x)
    assert z.shape == x.shape and torch.equal(vae.decode(z), x)
    assert vae.latent_shape(4, 8, 6) == (4, 8, 6) and vae.pixel_shape(4, 8, 6) == (4, 8, 6)
    with pytest.raises(ValueError, match=r"shape \(B, 3, F, H, W\)"):
        vae.encode(torch.zeros(1, 3, 8, 8))


def test_image_vae_shapes_and_scaling(image_vae: ImageVAE) -> None:
    vae = image_vae
    assert (vae.latent_channels, vae.spatial_factor, vae.temporal_factor) == (4, 2, 1)
    x = _pixels(2, 3, 1, 32, 32)
    z = vae.encode(x)
    assert z.shape == (2, 4, 1, 16, 16) and z.dtype == torch.float32
    # latents = (mean - shift_factor) * scaling_factor, from the config (0.1, 0.5)
    with torch.no_grad():
        raw = vae.model.encode(x[:, :, 0]).latent_dist.mode()
    torch.testing.assert_close(z[:, :, 0], (raw - 0.1) * 0.5, atol=1e-5, rtol=1e-5)
    out = vae.decode(z)
    assert out.shape == (2, 3, 1, 32, 32) and out.dtype == torch.float32
    with torch.no_grad():
        ref = vae.model.decode(raw).sample.clamp(-1, 1)
    torch.testing.assert_close(out[:, :, 0], ref, atol=1e-5, rtol=1e-5)
    assert out.abs().max() <= 1.0
    assert vae.latent_shape(1, 32, 48) == (1, 16, 24) and vae.pixel_shape(1, 16, 24) == (1, 32, 48)
    with pytest.raises(ValueError, match="multiples of 2"):
        vae.latent_shape(1, 31, 32)


def test_image_vae_on_video_is_per_frame(folders: dict[str, Path], image_vae: ImageVAE) -> None:
    x = _pixels(2, 3, 3, 16, 16, seed=1)
    z = image_vae.encode(x)
    assert z.shape == (2, 4, 3, 8, 8)
    torch.testing.assert_close(z[:, :, 1:2], image_vae.encode(x[:, :, 1:2]), atol=1e-5, rtol=1e-5)
    chunked = load_vae(folders["vae"], frame_chunk=2)
    torch.testing.assert_close(chunked.encode(x), z, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(chunked.decode(z), image_vae.decode(z), atol=1e-5, rtol=1e-5)
    assert image_vae.decode(z).shape == (2, 3, 3, 16, 16)


def test_image_vae_sampling_and_reload(folders: dict[str, Path], image_vae: ImageVAE) -> None:
    x = _pixels(1, 3, 1, 16, 16, seed=2)
    a = image_vae.encode(x, sample=True, generator=torch.Generator().manual_seed(0))
    b = image_vae.encode(x, sample=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, image_vae.encode(x))
    torch.testing.assert_close(load_vae(folders["vae"]).encode(x), image_vae.encode(x), atol=0, rtol=0)


def test_video_vae_shapes_and_normalisation(video_vae: VideoVAE) -> None:
    vae = video_vae
    assert (vae.latent_channels, vae.spatial_factor, vae.temporal_factor) == (4, 8, 4)
    assert vae.latent_shape(9, 32, 32) == (3, 4, 4) and vae.pixel_shape(3, 4, 4) == (9, 32, 32)
    assert vae.latent_shape(1, 32, 32) == (1, 4, 4)
    x = _pixels(1, 3, 9, 32, 32, seed=3)
    z = vae.encode(x)
    assert z.shape == (1, 4, 3, 4, 4) and z.dtype == torch.float32
    with torch.no_grad():
        raw = vae.model.encode(x).latent_dist.mode()
    mean = torch.tensor([0.1, -0.2, 0.3, 0.0]).view(1, 4, 1, 1, 1)
    std = torch.tensor([2.0, 0.5, 1.0, 1.5]).view(1, 4, 1, 1, 1)
    torch.testing.assert_close(z, (raw - mean) / std, atol=1e-5, rtol=1e-5)
    out = vae.decode(z)
    assert out.shape == (1, 3, 9, 32, 32) and out.abs().max() <= 1.0
    assert vae.decode(z, per_frame=True).shape == (1, 3, 3, 32, 32)
    with pytest.raises(ValueError, match=r"1 \+ a multiple of 4"):
        vae.encode(_pixels(1, 3, 8, 32, 32))


def test_video_vae_reload_identical(folders: dict[str, Path], video_vae: VideoVAE) -> None:
    x = _pixels(1, 3, 5, 16, 16, seed=4)
    torch.testing.assert_close(load_vae(folders["wan"]).encode(x), video_vae.encode(x), atol=0, rtol=0)


def test_video_vae_without_latent_stats_is_identity(tmp_path: Path) -> None:
    from diffusers import AutoencoderKLWan

    folder = make_tiny_video_vae(tmp_path / "wan")
    config = json.loads((folder / "config.json").read_text())
    config["latents_mean"] = config["latents_std"] = None
    (folder / "config.json").write_text(json.dumps(config))
    vae = load_vae(folder)
    x = _pixels(1, 3, 1, 16, 16)
    with torch.no_grad():
        raw = AutoencoderKLWan.from_pretrained(folder).encode(x).latent_dist.mode()
    torch.testing.assert_close(vae.encode(x), raw, atol=1e-6, rtol=1e-6)


def test_video_vae_rejects_stats_of_wrong_length(tmp_path: Path) -> None:
    folder = make_tiny_video_vae(tmp_path / "wan", latents_mean=[0.0] * 16, latents_std=[1.0] * 16)
    with pytest.raises(ValueError, match="expected z_dim=4"):
        load_vae(folder)


def test_load_vae_rejects_unknown_class(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match=r"'UNet2DModel'.*supported VAEs"):
        load_vae(tmp_path)


# ------------------------------------------------------------------------------------------------------
# Missing weights: fast, clear, one line
# ------------------------------------------------------------------------------------------------------


def _assert_fast_clear_error(fn, name: str) -> MissingWeightsError:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError) as info:
        fn()
    assert time.perf_counter() - start < 5.0
    message = str(info.value)
    assert name in message and "--local-dir" in message and "\n" not in message
    assert isinstance(info.value, FileNotFoundError)
    return info.value


def test_missing_local_folder(tmp_path: Path) -> None:
    missing = str(tmp_path / "no_such_model")
    _assert_fast_clear_error(lambda: load_text_encoder(missing), missing)
    _assert_fast_clear_error(lambda: load_vae(missing), missing)


def test_unknown_hub_id_offline() -> None:
    _assert_fast_clear_error(lambda: load_text_encoder("ptdit-tests/no-such-t5"), "ptdit-tests/no-such-t5")
    err = _assert_fast_clear_error(lambda: load_vae("ptdit-tests/no-such-vae"), "ptdit-tests/no-such-vae")
    assert "HF_HUB_OFFLINE" in str(err)
    # Aliases resolve to the hub id they stand for, and the error names it.
    _assert_fast_clear_error(lambda: load_text_encoder("t5-xxl"), "google/t5-v1_1-xxl")
    err = _assert_fast_clear_error(lambda: load_vae("wan2.1"), "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")
    assert "--include 'vae/*'" in str(err)


def test_folder_without_weights(folders: dict[str, Path], tmp_path: Path) -> None:
    _assert_fast_clear_error(lambda: load_vae(tmp_path), str(tmp_path))  # no config.json at all
    for kind in ("t5", "vae"):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "config.json").write_text((folders[kind] / "config.json").read_text())
        loader = load_text_encoder if kind == "t5" else load_vae
        err = _assert_fast_clear_error(lambda loader=loader, folder=folder: loader(folder), str(folder))
        # Text encoders are checked for weights and tokenizer files before loading; VAEs fail in diffusers.
        assert ("missing model weights" if kind == "t5" else "loading failed") in str(err)


def test_unreachable_hub_fails_fast_without_offline_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    # Online mode, but the endpoint refuses connections: the probe must short-cut huggingface_hub's retries.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    err = _assert_fast_clear_error(lambda: load_vae("ptdit-tests/no-such-vae"), "ptdit-tests/no-such-vae")
    assert "unreachable" in str(err)
