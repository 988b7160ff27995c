"""The generation pipeline against the reference flow-Euler + CFG loop written out."""

from __future__ import annotations

import torch

import ptdit
from ptdit.config import PipelineConfig, PTDiTConfig
from tests.helpers.models import randomize_
from tests.helpers.tiny_encoders import TINY_T5_DIM


def test_pipeline_euler_matches_reference_loop(t5_dir):
    """The pipeline's flow-Euler + CFG equals the reference sampler written out
    (docs/inference.md#the-reference-sampler)."""
    from ptdit.encoders import IdentityVAE, load_text_encoder
    from ptdit.sampling.pipeline import GenerationPipeline

    cfg = PTDiTConfig(
        dim=32, depth=1, num_heads=2, context_dim=TINY_T5_DIM, in_channels=3, out_channels=6, window_size=(1, 2, 2)
    )
    torch.manual_seed(0)
    model = randomize_(ptdit.PTDiT(cfg)).eval()
    encoder = load_text_encoder(str(t5_dir), max_length=16)
    pipe_cfg = PipelineConfig(text_encoder=str(t5_dir), steps=5, cfg_scale=3.0, height=16, width=16)
    pipe = GenerationPipeline(model, pipe_cfg, IdentityVAE(), encoder)
    got = pipe(["a cat"], seed=3)

    emb, mask = encoder.encode(["a cat"])
    neg, neg_mask = encoder.encode([""])
    x = torch.randn(1, 3, 1, 16, 16, generator=torch.Generator().manual_seed(3)).double()
    r = (16 * 16 / 512**2) ** 0.5  # timestep shift ratio for a 16 x 16 image
    ts = [(1 - i / 5) * 1000 for i in range(5)]
    ts = [1000 * (r * t / 1000) / (1 + (r - 1) * t / 1000) for t in ts] + [0.0]
    with torch.no_grad():
        for i in range(5):
            t = torch.tensor([ts[i]] * 2, dtype=torch.float32)
            # the paper's window rule keeps 8 x 8 windows: an 8 x 8 token grid gets windows of one token
            out = model(
                torch.cat([x, x]).float(), t, torch.cat([emb, neg]), torch.cat([mask, neg_mask]), window_size=(1, 1, 1)
            )[:, :3]
            v_c, v_u = out.double().chunk(2)
            x = x + (v_u + 3.0 * (v_c - v_u)) * (ts[i] - ts[i + 1]) / 1000
    torch.testing.assert_close(got, x.float().clamp(-1, 1), atol=1e-4, rtol=1e-4)


def test_pipeline_accepts_sizes_the_window_does_not_tile(t5_dir):
    """Any multiple of patch x VAE factor and any frame count the VAE accepts: the model pads and masks
    (docs/architecture.md#padding-and-masking); other sizes name the nearest valid ones."""
    import pytest

    from ptdit.encoders import IdentityVAE, load_text_encoder
    from ptdit.sampling.pipeline import GenerationPipeline

    cfg = PTDiTConfig(dim=32, depth=1, num_heads=2, context_dim=TINY_T5_DIM, in_channels=3, out_channels=6)
    model = randomize_(ptdit.PTDiT(cfg)).eval()
    encoder = load_text_encoder(str(t5_dir), max_length=16)
    pipe_cfg = PipelineConfig(text_encoder=str(t5_dir), steps=2, cfg_scale=3.0, height=16, width=16, task="t2v")
    pipe = GenerationPipeline(model, pipe_cfg, IdentityVAE(), encoder)
    request = pipe.request(height=18, width=34, frames=3)  # 9 x 17 tokens, 3 frames: nothing tiles
    assert request.window_size == (3, 1, 2)
    assert pipe(["a cat"], seed=0, height=18, width=34, frames=3).shape == (1, 3, 3, 18, 34)
    with pytest.raises(ValueError, match="nearest valid: 16 or 18"):
        pipe.request(height=17)


def test_flow_x0_pipeline_with_packed_clips_matches_reference_loop(t5_dir):
    """objective flow-x0 with a PackVAE: the network's x0 becomes the velocity (x0 - x) / sigma, CFG mixes the
    predictions, and the packed latents decode to 8 frames (docs/training.md#objectives)."""
    from ptdit.encoders import PackVAE, load_text_encoder
    from ptdit.sampling.pipeline import GenerationPipeline

    cfg = PTDiTConfig(
        dim=32, depth=1, num_heads=2, context_dim=TINY_T5_DIM, in_channels=12, out_channels=12, window_size=(2, 2, 2)
    )
    torch.manual_seed(0)
    model = randomize_(ptdit.PTDiT(cfg)).eval()
    encoder = load_text_encoder(str(t5_dir), max_length=16)
    pipe_cfg = PipelineConfig(
        task="t2v", objective="flow-x0", timestep_shift=False, text_encoder=str(t5_dir), vae="pack-t4",
        steps=4, cfg_scale=3.0, height=8, width=8, frames=8,
    )  # fmt: skip
    pipe = GenerationPipeline(model, pipe_cfg, PackVAE(temporal_factor=4), encoder)
    got = pipe(["a cat"], seed=3)
    assert got.shape == (1, 3, 8, 8, 8)
    window = pipe.request().window_size  # the paper's window rule for 2 latent frames of 4 x 4 tokens

    emb, mask = encoder.encode(["a cat"])
    neg, neg_mask = encoder.encode([""])
    x = torch.randn(1, 12, 2, 8, 8, generator=torch.Generator().manual_seed(3)).double()
    ts = [(1 - i / 4) * 1000 for i in range(4)] + [0.0]
    with torch.no_grad():
        for i in range(4):
            t = torch.tensor([ts[i]] * 2, dtype=torch.float32)
            out = model(
                torch.cat([x, x]).float(), t, torch.cat([emb, neg]), torch.cat([mask, neg_mask]), window_size=window
            )
            x0_c, x0_u = out.double().chunk(2)
            x0 = x0_u + 3.0 * (x0_c - x0_u)
            x = x + (x0 - x) / (ts[i] / 1000) * (ts[i] - ts[i + 1]) / 1000
    want = PackVAE(temporal_factor=4).decode(x.float()).clamp(-1, 1)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
