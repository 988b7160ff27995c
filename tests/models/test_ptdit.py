"""PT-DiT model contracts: shapes, per-sample modulation, masks per grid, gradients, zero-init, ablations."""

from __future__ import annotations

import pytest
import torch

from ptdit.models.ptdit import PTDiT
from tests.helpers.models import randomize_, text_inputs, tiny_config


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return randomize_(PTDiT(tiny_config(**overrides)), seed).eval()


@pytest.mark.parametrize(
    ("frames", "height", "width", "window"),
    [(1, 16, 16, (1, 4, 4)), (1, 16, 24, (1, 4, 4)), (4, 16, 16, (2, 4, 4)), (1, 32, 16, (1, 4, 2))],
    ids=["image", "non_square", "video", "non_square_window"],
)
def test_ptdit_forward_shape(frames, height, width, window):
    model = _model()
    x = torch.randn(2, 4, frames, height, width)
    _, t, ctx, mask = text_inputs()
    out = model(x, t, ctx, mask, window_size=window)
    assert out.shape == (2, 8, frames, height, width) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_video_forward_window_4_2_2_on_24_frame_grid():
    model = _model()
    x = torch.randn(1, 4, 24, 32, 32)  # token grid 24 x 16 x 16
    _, t, ctx, mask = text_inputs(batch=1)
    out = model(x, t, ctx, mask, window_size=(4, 2, 2))
    assert out.shape == (1, 8, 24, 32, 32)
    # 6 latent frames (T2MV's 24 views): padded to 8 frames inside the blocks, cropped back
    assert model(torch.randn(1, 4, 6, 32, 32), t, ctx, mask, window_size=(4, 2, 2)).shape == (1, 8, 6, 32, 32)


@pytest.mark.parametrize(
    ("shape", "pattern"),
    [
        ((1, 4, 1, 15, 16), "multiples of the patch size 2, got H=15, W=16; nearest valid: H=14 or 16"),
        ((1, 3, 1, 16, 16), "in_channels=4"),
        ((1, 4, 16, 16), "add a frame axis"),
    ],
)
def test_bad_grids_raise_value_error(shape, pattern):
    model = _model()
    _, t, ctx, mask = text_inputs(batch=1)
    with pytest.raises(ValueError, match=pattern):
        model(torch.randn(shape), t, ctx, mask)


def test_bad_conditioning_raises():
    model = _model()
    x, t, ctx, mask = text_inputs()
    with pytest.raises(ValueError, match="text-conditional"):
        model(x, t)
    with pytest.raises(ValueError, match=r"context must be"):
        model(x, t, ctx[..., :10], mask)
    with pytest.raises(ValueError, match="context_mask must be"):
        model(x, t, ctx, mask[:, :3])
    with pytest.raises(ValueError, match="one entry per sample"):
        model(x, torch.ones(3), ctx, mask)


def test_per_sample_modulation_equals_single_runs():
    model = _model()
    x, _, ctx, mask = text_inputs(batch=3)
    t = torch.tensor([10.0, 500.0, 990.0])
    batched = model(x, t, ctx, mask)
    singles = torch.cat([model(x[i : i + 1], t[i : i + 1], ctx[i : i + 1], mask[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles, atol=1e-5, rtol=1e-5)


def test_grid_change_never_reuses_a_wrong_mask():
    model = _model()
    _, t, ctx, mask = text_inputs()
    x8, x16 = torch.randn(2, 4, 1, 16, 16), torch.randn(2, 4, 1, 32, 32)
    first = model(x8, t, ctx, mask)
    model(x16, t, ctx, mask)
    again = model(x8, t, ctx, mask)
    fresh = _model()(x8, t, ctx, mask)
    torch.testing.assert_close(again, first, atol=0, rtol=0)
    torch.testing.assert_close(again, fresh, atol=0, rtol=0)
    torch.testing.assert_close(_model()(x16, t, ctx, mask), model(x16, t, ctx, mask), atol=0, rtol=0)


def test_window_override_changes_output_and_weights_do_not_depend_on_it():
    model = _model()
    x, t, ctx, mask = text_inputs()
    a = model(x, t, ctx, mask, window_size=(1, 4, 4))
    b = model(x, t, ctx, mask, window_size=(1, 2, 2))
    assert not torch.allclose(a, b)


def test_all_params_receive_grad():
    model = _model().train()
    x, t, ctx, mask = text_inputs()
    model(x, t, ctx, mask)[:, :4].square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, f"zero gradient for {name}"
        assert torch.isfinite(p.grad).all(), name


def test_zero_init_branches_inactive_at_init():
    torch.manual_seed(0)
    model = PTDiT(tiny_config()).eval()
    for block in model.transformer_blocks:
        for name in ("linear_1_visual", "linear_2"):
            assert getattr(block, name).weight.abs().sum() == 0 and getattr(block, name).bias.abs().sum() == 0
    x, t, ctx, mask = text_inputs()
    before = model(x, t, ctx, mask)
    with torch.no_grad():
        for block in model.transformer_blocks:
            for name in ("proxy_attn1", "pvisual_attn2", "attn3"):
                for p in getattr(block, name).parameters():
                    p.add_(torch.randn_like(p))
    torch.testing.assert_close(model(x, t, ctx, mask), before, atol=0, rtol=0)


def test_split_shifted_windows_equals_reference_path_in_model():
    model = _model().train()
    x, t, ctx, mask = text_inputs()
    for block in model.transformer_blocks:
        block.split_shifted_windows = True
    fast = model(x, t, ctx, mask)
    g_fast = torch.autograd.grad(fast.square().sum(), list(model.parameters()))
    for block in model.transformer_blocks:
        block.split_shifted_windows = False
    ref = model(x, t, ctx, mask)
    g_ref = torch.autograd.grad(ref.square().sum(), list(model.parameters()))
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_context_mask_all_padding_is_finite_and_acts_unmasked():
    model = _model()
    x, t, ctx, _ = text_inputs()
    none_valid = torch.zeros(2, ctx.shape[1])
    out = model(x, t, ctx, none_valid)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, model(x, t, ctx, None), atol=1e-6, rtol=1e-6)


def test_padding_tokens_never_attended():
    model = _model()
    x, t, ctx, mask = text_inputs()
    out = model(x, t, ctx, mask)
    ctx2 = ctx.clone()
    ctx2[0, -2:] = torch.randn(2, ctx.shape[2]) * 10  # padded positions of sample 0
    torch.testing.assert_close(model(x, t, ctx2, mask), out, atol=0, rtol=0)
    ctx2[0, 0] += 1.0  # a real token changes the output
    assert not torch.allclose(model(x, t, ctx2, mask)[0], out[0])


def test_bf16_autocast_and_bf16_weights_have_no_nan():
    model = _model()
    x, t, ctx, mask = text_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, ctx, mask)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    ref = model(x, t, ctx, mask)
    out16 = model.to(torch.bfloat16)(x, t, ctx, mask)
    assert out16.dtype == torch.float32 and torch.isfinite(out16).all()
    torch.testing.assert_close(out16, ref, atol=0.15, rtol=0.1)


# ---------------------------------------------------------------------------------------------------------------
# Ablation switches (Table 2): each one removes or changes exactly what it names
# ---------------------------------------------------------------------------------------------------------------


def _param_prefixes(model):
    return {name.split(".")[2] for name in model.state_dict() if name.startswith("transformer_blocks.0.")}


def test_ablation_without_giim_drops_the_module_and_changes_output():
    full = _model()
    model = _model(use_global_interaction=False)
    names = _param_prefixes(model)
    assert not names & {"proxy_attn1", "pvisual_attn2", "linear_1_visual"}
    assert {"attn1", "attn3", "attn2", "ff"} <= names
    x, t, ctx, mask = text_inputs()
    # Same remaining weights, without the GIIM branch: the output differs from the full model.
    full_state = {k: v for k, v in full.state_dict().items() if k in model.state_dict()}
    model.load_state_dict(full_state)
    assert not torch.allclose(model(x, t, ctx, mask), full(x, t, ctx, mask))
    # ... and equals the full model with its GIIM output projection zeroed.
    with torch.no_grad():
        for block in full.transformer_blocks:
            block.linear_1_visual.weight.zero_()
            block.linear_1_visual.bias.zero_()
    torch.testing.assert_close(model(x, t, ctx, mask), full(x, t, ctx, mask), atol=1e-6, rtol=1e-6)


def test_ablation_without_shifted_window_equals_zeroed_branch():
    full = _model()
    model = _model(use_shifted_window=False)
    assert not _param_prefixes(model) & {"attn3", "linear_2", "proxy_scale_shift_table"}
    model.load_state_dict({k: v for k, v in full.state_dict().items() if k in model.state_dict()})
    with torch.no_grad():
        for block in full.transformer_blocks:
            block.linear_2.weight.zero_()
            block.linear_2.bias.zero_()
    x, t, ctx, mask = text_inputs()
    torch.testing.assert_close(model(x, t, ctx, mask), full(x, t, ctx, mask), atol=1e-6, rtol=1e-6)


def test_ablation_without_tcm_has_no_local_attention():
    model = _model(use_window_attention=False, use_shifted_window=False)
    assert not _param_prefixes(model) & {"attn1", "attn3", "linear_2"}
    x, t, ctx, mask = text_inputs()
    assert torch.isfinite(model(x, t, ctx, mask)).all()


def test_window_attention_switch_changes_output():
    a, b = _model(), _model(use_window_attention=False)
    b.load_state_dict({k: v for k, v in a.state_dict().items() if k in b.state_dict()})
    x, t, ctx, mask = text_inputs()
    assert not torch.allclose(a(x, t, ctx, mask), b(x, t, ctx, mask))


@pytest.mark.parametrize("mode", ["first", "random"])
def test_proxy_mode_switch_changes_output(mode):
    mean = _model()
    other = _model(proxy_mode=mode)
    other.load_state_dict(mean.state_dict())
    x, t, ctx, mask = text_inputs()
    assert not torch.allclose(mean(x, t, ctx, mask), other(x, t, ctx, mask))


def test_random_proxies_reproducible_with_generator():
    model = _model(proxy_mode="random")
    x, t, ctx, mask = text_inputs()
    outs = []
    for _ in range(2):
        for i, block in enumerate(model.transformer_blocks):
            block.proxy_generator = torch.Generator().manual_seed(i)
        outs.append(model(x, t, ctx, mask))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


def test_interpolate_injection_upsamples_proxies():
    model = _model(injection="interpolate")
    assert "pvisual_attn2" not in _param_prefixes(model) and "linear_1_visual" in _param_prefixes(model)
    x, t, ctx, mask = text_inputs()
    out = model(x, t, ctx, mask)
    assert torch.isfinite(out).all()
    # video too (trilinear)
    xv = torch.randn(2, 4, 4, 16, 16)
    assert model(xv, t, ctx, mask, window_size=(2, 4, 4)).shape == (2, 8, 4, 16, 16)


def test_interpolate_injection_of_constant_proxies_is_constant_over_tokens():
    model = _model(injection="interpolate")
    block = model.transformer_blocks[0]
    layout = model.layout((1, 4, 1, 16, 16))
    x_BMWD = torch.randn(1, 1, 1, 32).expand(1, layout.num_windows, layout.window_tokens, 32).contiguous()
    inj = block.global_interaction(x_BMWD, layout)
    torch.testing.assert_close(inj, inj[:, :1, :1].expand_as(inj), atol=1e-5, rtol=1e-5)


def test_linear_injection_is_resolution_specific():
    model = _model(injection="linear", injection_grid=(1, 8, 8))
    block = model.transformer_blocks[0]
    assert block.proxy_to_tokens.weight.shape == (64, 4)  # (N tokens, M proxies)
    x, t, ctx, mask = text_inputs()
    assert torch.isfinite(model(x, t, ctx, mask)).all()
    with pytest.raises(ValueError, match="built for token grid"):
        model(torch.randn(2, 4, 1, 32, 32), t, ctx, mask)


def test_several_proxies_per_window():
    one = _model()
    four = _model(proxy_window=(1, 2, 2))
    four.load_state_dict(one.state_dict())
    x, t, ctx, mask = text_inputs()
    assert not torch.allclose(one(x, t, ctx, mask), four(x, t, ctx, mask))
    with pytest.raises(ValueError, match="does not divide"):
        four(torch.randn(2, 4, 1, 24, 24), t, ctx, mask, window_size=(1, 3, 3))


def test_compression_ratio_changes_windows_and_proxies():
    model = _model()
    layout_2 = model.layout((1, 4, 1, 32, 32), (1, 2, 2))
    layout_8 = model.layout((1, 4, 1, 32, 32), (1, 8, 8))
    assert (layout_2.num_windows, layout_2.window_tokens) == (64, 4)
    assert (layout_8.num_windows, layout_8.window_tokens) == (4, 64)


def test_class_conditional_model():
    model = _model(conditioning="class", num_classes=10)
    assert "attn2" not in _param_prefixes(model) and not hasattr(model, "caption_projection")
    x = torch.randn(2, 4, 1, 16, 16)
    t = torch.tensor([100.0, 700.0])
    out = model(x, t, class_labels=torch.tensor([1, 2]))
    assert out.shape == (2, 8, 1, 16, 16)
    null = model(x, t, class_labels=torch.tensor([10, 10]))
    dropped = model(x, t, class_labels=torch.tensor([1, 2]), force_drop_mask=torch.tensor([True, True]))
    torch.testing.assert_close(dropped, null, atol=0, rtol=0)
    with pytest.raises(ValueError, match="class labels must lie"):
        model(x, t, class_labels=torch.tensor([1, 11]))
    with pytest.raises(ValueError, match="class-conditional"):
        model(x, t)


def test_unconditional_model():
    model = _model(conditioning="none")
    out = model(torch.randn(2, 4, 1, 16, 16), torch.tensor([1.0, 2.0]))
    assert out.shape == (2, 8, 1, 16, 16)


def test_inference_mode_first_call_does_not_poison_training():
    # Masks and positional embeddings are cached; building them under inference_mode must not break training.
    from ptdit.attention.window import masked_window_split, shifted_window_mask
    from ptdit.nn.embeddings import sincos_pos_embed_3d

    for cache in (shifted_window_mask, masked_window_split, sincos_pos_embed_3d):
        cache.cache_clear()
    model = _model().train()
    x, t, ctx, mask = text_inputs()
    with torch.inference_mode():
        model(x, t, ctx, mask)
    model(x, t, ctx, mask).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
