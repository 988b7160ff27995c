"""FLOP accounting (ptdit.eval.flops): analytic per-branch formulas against torch's FlopCounterMode, Eq. 4, geometry."""

from __future__ import annotations

import math

import pytest
import torch

from ptdit.config import DiTConfig, PixArtConfig, PTDiTConfig
from ptdit.eval.flops import (
    analytic_macs,
    attention_cost_ratio,
    count_macs,
    counted_macs,
    crossover_resolution,
    eq4_rows,
    flops_summary,
    latent_frames,
    padding_macs,
    paper_window,
    token_grid,
)
from ptdit.models.registry import build_model
from ptdit.presets.models import get_preset

TEXT = 7  # caption tokens of the tiny configs

# (id, config, token grid, window): tiny models covering every branch and ablation switch.
CASES = [
    ("ptdit-image", PTDiTConfig(dim=32, depth=2, num_heads=2, context_dim=24), (1, 8, 8), (1, 4, 4)),
    ("ptdit-video", PTDiTConfig(dim=32, depth=2, num_heads=2, context_dim=24), (4, 8, 8), (2, 4, 4)),
    ("ptdit-nonsquare", PTDiTConfig(dim=32, depth=3, num_heads=2, context_dim=24), (1, 8, 4), (1, 2, 2)),
    (
        "ptdit-proxy-window",
        PTDiTConfig(dim=32, depth=2, num_heads=2, context_dim=24, proxy_window=(1, 2, 2)),
        (1, 8, 8),
        (1, 4, 4),
    ),
    (
        "ptdit-interpolate",
        PTDiTConfig(dim=32, depth=2, num_heads=2, context_dim=24, injection="interpolate"),
        (1, 8, 8),
        (1, 4, 4),
    ),
    (
        "ptdit-linear",
        PTDiTConfig(
            dim=32,
            depth=2,
            num_heads=2,
            context_dim=24,
            injection="linear",
            injection_grid=(1, 8, 8),
            window_size=(1, 4, 4),
        ),
        (1, 8, 8),
        (1, 4, 4),
    ),
    (
        "ptdit-no-tcm-no-giim",
        PTDiTConfig(
            dim=32,
            depth=2,
            num_heads=2,
            context_dim=24,
            use_window_attention=False,
            use_shifted_window=False,
            use_global_interaction=False,
        ),
        (1, 8, 8),
        (1, 4, 4),
    ),
    (
        "ptdit-class",
        PTDiTConfig(dim=32, depth=2, num_heads=2, conditioning="class", num_classes=10),
        (1, 8, 8),
        (1, 2, 2),
    ),
    ("ptdit-window-1", PTDiTConfig(dim=32, depth=1, num_heads=2, context_dim=24), (1, 4, 4), (1, 1, 1)),
    ("ptdit-padded", PTDiTConfig(dim=32, depth=2, num_heads=2, context_dim=24), (3, 5, 6), (2, 4, 4)),
    (
        "ptdit-padded-sub-proxies",
        PTDiTConfig(dim=32, depth=1, num_heads=2, context_dim=24, window_size=(1, 4, 4), proxy_window=(1, 2, 2)),
        (1, 7, 10),
        (1, 4, 4),
    ),
    ("dit", DiTConfig(dim=32, depth=2, num_heads=2, num_classes=10, input_size=16), (1, 8, 8), None),
    ("dit-video", DiTConfig(dim=32, depth=2, num_heads=2, num_classes=10, input_size=16), (3, 4, 4), None),
    ("pixart", PixArtConfig(dim=32, depth=2, num_heads=2, context_dim=24), (1, 8, 8), None),
    ("pixart-video", PixArtConfig(dim=32, depth=3, num_heads=2, context_dim=24), (2, 4, 8), None),
]


@pytest.mark.parametrize(("config", "grid", "window"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "fwd+bwd"])
def test_analytic_and_counted_flops_agree(config, grid, window, backward):
    macs = analytic_macs(config, grid, window=window, batch=2, text_tokens=TEXT)
    counted = counted_macs(config, grid, window=window, batch=2, text_tokens=TEXT, backward=backward)
    expected_total = macs.forward_backward() if backward else macs.forward
    factor = 3 if backward else 1
    assert abs(counted.total - expected_total) <= 0.01 * expected_total
    if window == (1, 1, 1):
        # One-token windows: einsum turns the 1 x 1 "matmul" into an elementwise product the counter ignores.
        return
    # The formulas are exact: the split into attention and text attention agrees too.
    assert counted.total == expected_total
    assert counted.attention_all == factor * (macs.attention_total + macs.text_attention)
    if not backward:  # the counter cannot attribute backward ops to text cross-attention (see count_macs)
        assert counted.attention == macs.attention_total
        assert counted.text_attention == macs.text_attention


def test_counter_on_real_cpu_run_with_sdpa_matches_analytic():
    """A real CPU forward with SDPA (registered CPU flash formula) counts what the analytic formulas say."""
    from torch.utils.flop_counter import FlopCounterMode

    from ptdit.attention.backends import use_attention_backend
    from ptdit.eval.flops import register_cpu_sdpa_flops

    config = CASES[0][1]  # window (1, 4, 4) on 8 x 8 tokens: 4 proxies, no length-1 einsum (see count_macs)
    model = build_model(config, window_size=(1, 4, 4)).eval()
    x, t, ctx = torch.randn(2, 4, 1, 16, 16), torch.rand(2) * 1000, torch.randn(2, TEXT, 24)
    register_cpu_sdpa_flops()
    with torch.no_grad(), use_attention_backend("sdpa"), FlopCounterMode(display=False) as counter:
        model(x, t, ctx)
    macs = analytic_macs(model.config, (1, 8, 8), batch=2, text_tokens=TEXT)
    assert counter.get_total_flops() == 2 * macs.forward
    with torch.no_grad():
        assert count_macs(lambda: model(x, t, ctx)).total == macs.forward  # MATH backend path


def test_depth_extrapolation_equals_direct_count():
    config = PTDiTConfig(dim=32, depth=5, num_heads=2, context_dim=24)
    from ptdit.eval.flops import _count_model

    direct = _count_model(config, (1, 8, 8), (1, 4, 4), 1, TEXT, True)
    assert counted_macs(config, (1, 8, 8), window=(1, 4, 4), text_tokens=TEXT, backward=True) == direct


def test_branch_formulas_by_hand():
    """PT-DiT/XL at 2048 px: spot-check branches against the formulas of docs/flops.md#per-branch-formulas."""
    config = get_preset("PT-DiT/XL")
    D, N, p = 1152, 16384, 256
    macs = analytic_macs(config, (1, 128, 128), window=(1, 16, 16), text_tokens=120)
    assert macs.attention["proxy_self_attention"] == config.depth * 2 * (N // p) ** 2 * D
    assert macs.attention["visual_cross_attention"] == config.depth * 2 * N * N // p * D
    assert (
        macs.attention["window_attention"] + macs.attention["shifted_window_attention"] == config.depth * 4 * p * N * D
    )
    assert macs.linear["ffn"] == config.depth * 8 * N * D * D
    assert macs.text_attention == config.depth * 2 * N * 120 * D
    dit = analytic_macs(get_preset("DiT-XL/2"), (1, 128, 128))
    assert dit.attention_total == 28 * 2 * N * N * D
    # At equal width and depth PT-DiT needs well under 60% of DiT's forward MACs at 2048 px.
    assert macs.forward / dit.forward < 0.6


@pytest.mark.parametrize(
    ("resolution", "window", "expected"),
    [(256, (1, 2, 2), 0.34375), (512, (1, 4, 4), 0.09766), (1024, (1, 8, 8), 0.04712), (2048, (1, 16, 16), 0.03517)],
)
def test_eq4_attention_ratio_table(resolution, window, expected):
    tokens = math.prod(token_grid(resolution))
    assert paper_window(resolution) == window
    ratio = attention_cost_ratio(window, tokens)
    assert round(ratio, 5) == pytest.approx(expected, abs=1e-5)
    p = math.prod(window)
    assert ratio == pytest.approx(1 / p**2 + 1 / p + 2 * p / tokens, rel=1e-12)


def test_eq4_rows_and_video_example():
    rows = eq4_rows()
    assert [f"{r['ratio']:.1%}" for r in rows] == ["34.4%", "9.8%", "4.7%", "3.5%"]
    assert [r["paper"] for r in rows][-1] == 0.023  # the printed value Eq. 4 contradicts (docs/flops.md)
    # Eq. 4 video example (docs/flops.md#eq-4-attention-cost): 256 px, 96 frames -> 24 x 16 x 16 tokens, window
    # (4, 2, 2): 7.2%.
    assert attention_cost_ratio(paper_window(256, 96), math.prod(token_grid(256, 96))) == pytest.approx(
        0.0716, abs=1e-4
    )


@pytest.mark.parametrize(("frames", "latent"), [(1, 1), (96, 24), (288, 72), (17, 5), (16, 4), (2, 1), (3, 2)])
def test_latent_frames_rule(frames, latent):
    assert latent_frames(frames) == latent


def test_paper_window_and_grid_errors():
    assert paper_window(512, 96) == (4, 4, 4)
    assert paper_window(64) == (1, 1, 1)
    assert token_grid(512, 288) == (72, 32, 32)
    with pytest.raises(ValueError, match="multiple of 16 px"):
        token_grid(100)
    assert paper_window(272) == (1, 2, 2)  # 17 tokens per side: windows of 2, padded to 18
    assert paper_window(256, 10) == (3, 2, 2)  # 3 latent frames: one window of all frames


def test_padding_is_reported_with_its_cost():
    """T2MV's 6 latent frames with p_f = 4: 8 frames in the blocks, a third more block tokens."""
    config = get_preset("PT-DiT/XL")
    row = flops_summary("PT-DiT/XL", config, 512, 24, window=(4, 4, 4), verify=False)
    assert row["grid"] == [6, 32, 32] and row["padded_grid"] == [8, 32, 32]
    assert row["padding_tokens"] == 2 * 32 * 32 and 0.2 < row["padding_share"] < 0.25  # 1/4 of the padded run
    extra = padding_macs(config, (6, 32, 32), window=(4, 4, 4))
    assert extra == pytest.approx(row["gmac_padding"] * 1e9) and extra > 0
    tiled = flops_summary("PT-DiT/XL", config, 512, 24, window=(2, 4, 4), verify=False)
    assert tiled["padding_tokens"] == 0 and tiled["gmac_padding"] == 0 and tiled["padded_grid"] == tiled["grid"]


def test_crossover_at_equal_width():
    pt = get_preset("PT-DiT/XL")
    at = crossover_resolution(pt, get_preset("DiT-XL/2"))
    assert at is not None and 256 < at <= 2048
    cheaper = analytic_macs(pt, token_grid(at), window=paper_window(at)).forward
    assert cheaper < analytic_macs(get_preset("DiT-XL/2"), token_grid(at)).forward
