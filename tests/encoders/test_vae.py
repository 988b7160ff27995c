"""VAEs (ptdit.encoders.vae): identity, image (AutoencoderKL) and video (AutoencoderKLWan) adapters, with tiny
offline models (tests/encoders/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers.tiny_encoders import make_tiny_video_vae

pytest.importorskip("transformers")
pytest.importorskip("diffusers")

from ptdit.encoders import IdentityVAE, ImageVAE, VideoVAE, load_vae


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
