"""PackVAE (ptdit.encoders.vae): the weightless space-time packing used by the T2V demo."""

from __future__ import annotations

import pytest
import torch

from ptdit.encoders import PackVAE, load_vae


def _pixels(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize(("name", "t", "s"), [("pack-t4", 4, 1), ("pack-s2", 1, 2), ("pack-t2-s2", 2, 2)])
def test_pack_vae_names_factors_and_exact_roundtrip(name: str, t: int, s: int) -> None:
    vae = load_vae(name)
    assert isinstance(vae, PackVAE) and vae.name == f"pack-t{t}-s{s}"
    assert (vae.latent_channels, vae.spatial_factor, vae.temporal_factor) == (3 * t * s * s, s, t)
    x = _pixels(2, 3, 8, 8, 12)
    z = vae.encode(x)
    assert z.shape == (2, 3 * t * s * s, 8 // t, 8 // s, 12 // s)
    assert torch.equal(vae.decode(z), x)
    assert vae.latent_shape(8, 8, 12) == z.shape[2:] and vae.pixel_shape(*z.shape[2:]) == (8, 8, 12)


def test_pack_vae_channel_order_is_frame_row_col_rgb() -> None:
    """Channel (pt, ps, qs, c) of latent (f, y, x) is pixel c of frame f t + pt at row y s + ps, col x s + qs."""
    vae = PackVAE(temporal_factor=2, spatial_factor=2)
    x = _pixels(1, 3, 4, 4, 4)
    z = vae.encode(x)
    for pt, ps, qs, c in [(0, 0, 0, 0), (1, 0, 1, 2), (1, 1, 0, 1)]:
        channel = ((pt * 2 + ps) * 2 + qs) * 3 + c
        assert z[0, channel, 1, 1, 0] == x[0, c, 2 + pt, 2 + ps, qs]


def test_pack_vae_moves_motion_into_one_latent() -> None:
    """A dot moving right over 4 frames lands in one latent position's channels (what the T2V demo relies on)."""
    x = -torch.ones(1, 3, 4, 1, 4)
    for f in range(4):
        x[0, :, f, 0, f] = 1.0
    z = PackVAE(temporal_factor=4).encode(x)  # (1, 12, 1, 1, 4)
    lit = [(int(c) // 3, int(col)) for c, col in (z[0, :, 0, 0] > 0).nonzero().tolist()]
    assert sorted(set(lit)) == [(0, 0), (1, 1), (2, 2), (3, 3)]  # frame pt is lit at column pt


def test_pack_vae_bad_sizes_name_the_valid_ones() -> None:
    vae = load_vae("pack-t4-s2")
    with pytest.raises(ValueError, match=r"multiple of 4 .* got 6; nearest valid: 4 or 8"):
        vae.encode(_pixels(1, 3, 6, 8, 8))
    with pytest.raises(ValueError, match="multiples of 2"):
        vae.latent_shape(8, 7, 8)
    with pytest.raises(ValueError, match=r"shape \(B, 48, F, H, W\)"):
        vae.decode(torch.zeros(1, 12, 1, 4, 4))
    with pytest.raises(ValueError, match="temporal_factor must be an int >= 1"):
        PackVAE(temporal_factor=0)
    assert vae.pixel_frames(3) == 12


@pytest.mark.parametrize("name", ["pack", "pack-t", "pack-x2", "packt4"])
def test_malformed_pack_names_are_not_pack_vaes(name: str) -> None:
    from ptdit.encoders.vae import parse_pack_vae

    assert parse_pack_vae(name) is None
