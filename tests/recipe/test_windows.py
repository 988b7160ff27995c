"""The window decision: latent shape + task + model config -> one validated window (paper Sec. 3.2 / 3.4)."""

from __future__ import annotations

import pytest

from ptdit.config import DiTConfig, PTDiTConfig
from ptdit.recipe import paper_window, resolve_window, temporal_window, window_tiling
from ptdit.recipe.windows import token_grid

PTDIT = PTDiTConfig(dim=32, depth=1, num_heads=2, patch_size=2, in_channels=4, out_channels=8, context_dim=8)


@pytest.mark.parametrize(("side", "window"), [(32, (1, 2, 2)), (64, (1, 4, 4)), (128, (1, 8, 8)), (256, (1, 16, 16))])
def test_paper_keeps_64_windows_per_image(side, window):
    """256, 512, 1024 and 2048 px (latents 32 ... 256 with an 8x VAE) at patch 2 keep an 8 x 8 window grid."""
    assert resolve_window((1, 4, 1, side, side), model_config=PTDIT) == window


def test_temporal_window_per_task():
    assert temporal_window("t2v") == 4 and temporal_window("t2mv") == 2
    assert resolve_window((1, 4, 8, 32, 32), model_config=PTDIT, task="t2v") == (4, 2, 2)
    assert resolve_window((1, 4, 6, 32, 32), model_config=PTDIT, task="t2mv") == (2, 2, 2)
    # 6 latent frames (T2MV's 24 views) with the video window: accepted, the model pads 6 -> 8 frames
    assert resolve_window((1, 4, 6, 32, 32), model_config=PTDIT, task="t2v") == (4, 2, 2)
    assert resolve_window((1, 4, 3, 32, 32), model_config=PTDIT, task="t2v") == (3, 2, 2)  # fewer frames: all


def test_explicit_window_is_validated_not_replaced():
    assert resolve_window((1, 4, 1, 32, 32), model_config=PTDIT, window=(1, 4, 4)) == (1, 4, 4)
    assert resolve_window((1, 4, 1, 32, 32), model_config=PTDIT, window=(1, 3, 3)) == (1, 3, 3)  # padded


def test_proxy_window_must_divide_the_window():
    from ptdit.config import replace

    config = replace(PTDIT, window_size=(1, 4, 4), proxy_window=(1, 2, 2))
    assert resolve_window((1, 4, 1, 32, 32), model_config=config, window=(1, 4, 4)) == (1, 4, 4)
    with pytest.raises(ValueError, match="proxy_window"):
        resolve_window((1, 4, 1, 24, 24), model_config=config, window=(1, 3, 3))


def test_baselines_have_no_window():
    dit = DiTConfig(dim=32, depth=1, num_heads=2, in_channels=4, num_classes=2)
    assert resolve_window((1, 4, 1, 32, 32), model_config=dit) is None
    assert window_tiling(dit) == (1, 1, 1)


def test_tiling_of_sizes():
    assert window_tiling(PTDIT, task="t2v") == (4, 8, 8)
    assert window_tiling(PTDIT, task="t2mv") == (2, 8, 8)
    assert window_tiling(PTDIT, window=(1, 2, 2)) == (1, 2, 2)


def test_small_grids_get_one_token_windows_and_bad_grids_are_named():
    assert paper_window((1, 4, 4)) == (1, 1, 1)
    with pytest.raises(ValueError, match="multiples of the patch size 2"):
        token_grid((1, 4, 1, 31, 32), 2)


@pytest.mark.parametrize(
    ("grid", "window"), [((1, 12, 16), (1, 1, 2)), ((1, 33, 40), (1, 4, 5)), ((5, 17, 64), (4, 2, 8))]
)
def test_sizes_the_rule_does_not_divide_get_floor_windows(grid, window):
    """floor(side / 8) keeps at least 8 windows per side and pads each side by less than a window."""
    assert paper_window(grid) == window


def test_the_model_accepts_what_the_recipe_resolves():
    """The network's own check agrees with the recipe on every size the recipe accepts."""
    import torch

    from ptdit.models.ptdit import PTDiT

    model = PTDiT(PTDIT).eval()
    cases = (((1, 4, 1, 16, 32), "t2i"), ((1, 4, 4, 16, 16), "t2v"), ((1, 4, 2, 16, 16), "t2mv"))
    padded = (((1, 4, 1, 18, 34), "t2i"), ((1, 4, 6, 16, 16), "t2v"), ((1, 4, 5, 22, 16), "t2mv"))
    for shape, task in cases + padded:
        window = resolve_window(shape, model_config=PTDIT, task=task)
        x = torch.randn(shape)
        with torch.no_grad():
            out = model(x, torch.tensor([500.0]), torch.randn(1, 3, 8), window_size=window)
        assert out.shape == (1, 8, *shape[2:])


def test_t2mv_runs_with_the_papers_temporal_window_padded():
    """T2MV at 512 px: 6 latent frames. The default p_f = 2 tiles them; the paper's p_f = 4 is accepted and
    pads 6 -> 8 frames (docs/decisions.md#multi-view-window)."""
    from ptdit.attention.window import WindowLayout

    shape = (1, 4, 6, 64, 64)
    assert resolve_window(shape, model_config=PTDIT, task="t2mv") == (2, 4, 4)
    assert resolve_window(shape, model_config=PTDIT, task="t2mv", window=(4, 4, 4)) == (4, 4, 4)
    assert WindowLayout.create((6, 32, 32), (4, 4, 4)).padded_grid == (8, 32, 32)
    assert not WindowLayout.create((6, 32, 32), (2, 4, 4)).padded
