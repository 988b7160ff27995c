"""PT-DiT on token grids the window does not tile (docs/architecture.md#padding-and-masking): padded tokens
change no real output, get no gradient, the two GIIM paths agree, and tiling sizes take none of this code."""

from __future__ import annotations

import pytest
import torch

import ptdit.attention.window as window_module
from ptdit.attention.backends import use_attention_backend
from ptdit.models.ptdit import PTDiT
from tests.helpers.models import randomize_, text_inputs, tiny_config

# (latent shape (B, C, F, H, W), window): odd frames, non-square, every axis padded
PADDED = [((2, 4, 3, 18, 22), (2, 4, 4)), ((2, 4, 5, 16, 12), (4, 2, 2)), ((2, 4, 1, 10, 14), (1, 4, 4))]


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return randomize_(PTDiT(tiny_config(**overrides)), seed).eval()


def _inputs(shape, seed=0):
    _, t, ctx, mask = text_inputs(batch=shape[0], seed=seed)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)), t, ctx, mask


def _block_io(model, shape, window):
    """A block's windowed input on a padded layout, with random values everywhere (padding included)."""
    layout = model.layout(shape, window)
    x_BMWD = torch.randn(shape[0], layout.num_windows, layout.window_tokens, model.config.dim)
    t6_B6D = torch.randn(shape[0], 6, model.config.dim) * 0.3
    _, _, ctx, mask = text_inputs(batch=shape[0])
    ctx_BSD = model.caption_projection(ctx)
    return layout, x_BMWD, t6_B6D, ctx_BSD, (mask > 0.5)[:, None, :]


VARIANTS = {
    "paper": {},
    "first": {"proxy_mode": "first"},
    "random": {"proxy_mode": "random"},
    "sub_window_proxies": {"proxy_window": (1, 2, 2)},
    "no_giim": {"use_global_interaction": False},
    "no_shift": {"use_shifted_window": False},
}


@pytest.mark.parametrize(("shape", "window"), PADDED)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_padded_values_change_no_real_output(shape, window, variant):
    model = _model(**VARIANTS[variant])
    block = model.transformer_blocks[0]
    layout, x_BMWD, t6, ctx, ctx_mask = _block_io(model, shape, window)
    real_MW = layout.real_mask(x_BMWD.device)
    other_BMWD = torch.where(real_MW[None, :, :, None], x_BMWD, 100 * torch.randn_like(x_BMWD))

    def run(x):
        block.proxy_generator = torch.Generator().manual_seed(5)
        return block(x, t6, layout, ctx, ctx_mask)

    out, out_other = run(x_BMWD), run(other_BMWD)
    assert torch.isfinite(out).all() and torch.isfinite(out_other).all()
    assert torch.equal(out[:, real_MW], out_other[:, real_MW])


@pytest.mark.parametrize(("shape", "window"), PADDED)
def test_padded_tokens_get_no_gradient_and_gradients_are_finite(shape, window):
    model = _model()
    block = model.transformer_blocks[0]
    layout, x_BMWD, t6, ctx, ctx_mask = _block_io(model, shape, window)
    x_BMWD.requires_grad_(True)
    real_MW = layout.real_mask(x_BMWD.device)
    out = block(x_BMWD, t6, layout, ctx, ctx_mask)
    (out[:, real_MW] * torch.randn_like(out[:, real_MW])).sum().backward()
    assert torch.isfinite(x_BMWD.grad).all()
    assert x_BMWD.grad[:, ~real_MW].abs().max() == 0 and x_BMWD.grad[:, real_MW].abs().max() > 0
    assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)


@pytest.mark.parametrize(("shape", "window"), PADDED)
@pytest.mark.parametrize("backend", ["math", "sdpa"])
def test_model_forward_backward_on_padded_sizes(shape, window, backend):
    model = _model()
    x, t, ctx, mask = _inputs(shape)
    x.requires_grad_(True)
    with use_attention_backend(backend):
        out = model(x, t, ctx, mask, window_size=window)
        assert out.shape == (shape[0], 8, *shape[2:]) and torch.isfinite(out).all()
        out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize(("shape", "window"), PADDED)
def test_giim_dropping_padded_proxies_equals_masking_them(shape, window):
    """Fast path (padding proxies left out) against the reference path (kept and masked as keys)."""
    results = []
    for drop in (True, False):
        model = _model()
        for block in model.transformer_blocks:
            block.drop_padded_proxies = drop
        x, t, ctx, mask = _inputs(shape)
        x.requires_grad_(True)
        out = model(x, t, ctx, mask, window_size=window)
        out.square().mean().backward()
        results.append((out, x.grad, [p.grad for p in model.parameters()]))
    (out_a, gx_a, gp_a), (out_b, gx_b, gp_b) = results
    torch.testing.assert_close(out_a, out_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx_a, gx_b, atol=1e-5, rtol=1e-5)
    for a, b in zip(gp_a, gp_b, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("shape", "window"), PADDED[:1])
def test_split_shifted_windows_equals_all_masked_on_padded_sizes(shape, window):
    model = _model()
    x, t, ctx, mask = _inputs(shape)
    outs = []
    for split in (True, False):
        for block in model.transformer_blocks:
            block.split_shifted_windows = split
        outs.append(model(x, t, ctx, mask, window_size=window))
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)


def test_tiling_sizes_take_no_padding_code(monkeypatch):
    """The fast path: where the window tiles the grid nothing is padded, cropped or masked for padding."""

    def forbidden(*args, **kwargs):
        raise AssertionError("padding code ran on a tiling size")

    for name in ("pad_grid", "real_token_mask", "padded_window_mask", "padded_window_split"):
        monkeypatch.setattr(window_module, name, forbidden)
    model = _model()
    x, t, ctx, mask = _inputs((2, 4, 4, 16, 24))
    assert not model.layout(x.shape, (2, 4, 4)).padded
    assert torch.isfinite(model(x, t, ctx, mask, window_size=(2, 4, 4))).all()


@pytest.mark.parametrize("injection", ["interpolate", "linear"])
def test_injections_tied_to_the_grid_refuse_padding(injection):
    overrides = {"injection": injection} | ({"injection_grid": (1, 8, 8)} if injection == "linear" else {})
    model = _model(**overrides)
    x, t, ctx, mask = _inputs((2, 4, 1, 16, 16))
    with pytest.raises(ValueError, match="window tiles"):
        model(x, t, ctx, mask, window_size=(1, 3, 3))


@pytest.mark.parametrize("shape", [(2, 4, 1, 10, 14), (2, 4, 3, 6, 10)], ids=["non_square", "odd_frames"])
@pytest.mark.parametrize("arch", ["dit", "pixart"])
def test_global_attention_baselines_need_only_patch_divisibility(shape, arch):
    """DiT and PixArt-alpha attend globally: any size that is a multiple of the patch runs, forward and backward."""
    from ptdit.config import DiTConfig, PixArtConfig
    from ptdit.models.registry import build_model

    torch.manual_seed(0)
    if arch == "dit":
        model = randomize_(build_model(DiTConfig(dim=32, depth=2, num_heads=2, num_classes=10, input_size=16)))
        kwargs = {"class_labels": torch.tensor([1, 2])}
    else:
        model = randomize_(build_model(PixArtConfig(dim=32, depth=2, num_heads=2, context_dim=24)))
        _, _, ctx, mask = text_inputs(batch=2)
        kwargs = {"context": ctx, "context_mask": mask}
    x = torch.randn(shape, requires_grad=True)
    out = model(x, torch.tensor([10.0, 900.0]), **kwargs)
    assert out.shape == (2, 8, *shape[2:]) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    with pytest.raises(ValueError, match="nearest valid: H=10 or 12"):
        model(torch.randn(2, 4, 1, 11, 14), torch.tensor([10.0, 900.0]), **kwargs)


@pytest.mark.slow
def test_padded_sizes_agree_across_attention_backends():
    """The padding masks become SDPA masks and FlexAttention block masks alike (flex: forward on CPU)."""
    model = _model()
    x, t, ctx, mask = _inputs(PADDED[0][0])
    outs = {}
    with torch.no_grad():
        for backend in ("math", "sdpa", "flex"):
            with use_attention_backend(backend):
                outs[backend] = model(x, t, ctx, mask, window_size=PADDED[0][1])
    torch.testing.assert_close(outs["sdpa"], outs["math"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outs["flex"], outs["math"], atol=1e-5, rtol=1e-5)
