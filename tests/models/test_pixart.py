"""PixArt-alpha baseline against diffusers' PixArtTransformer2DModel with the same weights."""

from __future__ import annotations

import pytest
import torch

from ptdit.config import PixArtConfig
from ptdit.models.pixart import PixArtAlpha
from tests.helpers.models import randomize_


def test_pixart_matches_diffusers_pixart_transformer():
    diffusers = pytest.importorskip("diffusers")
    cfg = PixArtConfig(dim=32, depth=2, num_heads=2, context_dim=24)
    ours = randomize_(PixArtAlpha(cfg)).eval()
    theirs = diffusers.PixArtTransformer2DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=4,
        out_channels=8,
        num_layers=2,
        cross_attention_dim=32,
        attention_bias=True,
        sample_size=16,
        patch_size=2,
        activation_fn="gelu-approximate",
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        caption_channels=24,
        interpolation_scale=1,
    ).eval()
    missing, unexpected = theirs.load_state_dict(ours.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("pos_embed.pos_embed") for k in missing), (missing, unexpected)
    x = torch.randn(2, 4, 1, 16, 16)
    t = torch.tensor([10.0, 600.0])
    ctx = torch.randn(2, 5, 24)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        ref = theirs(
            x[:, :, 0],
            encoder_hidden_states=ctx,
            encoder_attention_mask=mask,
            timestep=t,
            added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        ).sample
        got = ours(x, t, ctx, mask)[:, :, 0]
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
