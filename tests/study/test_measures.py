"""The studies' measures on constructed cases with known answers."""

from __future__ import annotations

import pytest
import torch

from ptdit.study.measures import (
    grid_artefact_ratio,
    in_window_mass,
    ranks,
    spearman,
    spread,
    window_ids,
    window_row_similarity,
)

GRID = (8, 8)
WINDOW = (2, 2)


def _block_diagonal(grid=GRID, window=WINDOW) -> torch.Tensor:
    ids = window_ids(grid, window)
    same = (ids[:, None] == ids[None, :]).float()
    return same / same.sum(-1, keepdim=True)


def test_block_diagonal_attention_stays_in_its_window():
    assert in_window_mass(_block_diagonal(), GRID, WINDOW) == pytest.approx(1.0)
    assert in_window_mass(_block_diagonal()[None, None], GRID, WINDOW) == pytest.approx(1.0)


def test_uniform_attention_puts_tokens_per_window_over_tokens_in_the_window():
    L = GRID[0] * GRID[1]
    uniform = torch.full((L, L), 1.0 / L)
    assert in_window_mass(uniform, GRID, WINDOW) == pytest.approx(4 / L)
    assert in_window_mass(uniform, GRID, (4, 4)) == pytest.approx(16 / L)


def test_window_ids_are_raster_windows():
    ids = window_ids((4, 4), (2, 2)).view(4, 4)
    assert ids.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    with pytest.raises(ValueError, match="does not tile"):
        window_ids((4, 5), (2, 2))


def test_identical_attention_rows_have_similarity_one():
    L = GRID[0] * GRID[1]
    row = torch.rand(L).softmax(-1)
    probs = row.expand(2, 3, L, L)  # every query attends alike
    sim = window_row_similarity(probs, GRID, WINDOW)
    assert sim["same_window"] == pytest.approx(1.0, abs=1e-6)
    assert sim["cross_window"] == pytest.approx(1.0, abs=1e-6)


def test_rows_shared_within_windows_score_higher_than_across():
    L = GRID[0] * GRID[1]
    ids = window_ids(GRID, WINDOW)
    torch.manual_seed(0)
    per_window = torch.rand(int(ids.max()) + 1, L) ** 4  # a peaked distribution per window
    probs = per_window[ids] / per_window[ids].sum(-1, keepdim=True)
    sim = window_row_similarity(probs, GRID, WINDOW)
    assert sim["same_window"] == pytest.approx(1.0, abs=1e-6)
    assert sim["cross_window"] < 0.9
    assert sim["ratio"] > 1.1


def test_grid_artefact_ratio_is_one_for_a_ramp_and_large_for_window_edges():
    ramp = torch.arange(32.0)[None, None, :].expand(2, 3, 32, 32) / 32  # (N, C, H, W): the same step everywhere
    assert grid_artefact_ratio(ramp, patch=2, window=(2, 2)) == pytest.approx(1.0, rel=1e-5)
    cols = torch.arange(32) // 4  # a constant per 4 px window: jumps only on window edges
    blocky = (cols[None, :] + cols[:, None]).float()[None, None, None].expand(1, 3, 1, 32, 32)
    assert grid_artefact_ratio(blocky + 0.01 * ramp[:1, :, None], patch=2, window=(2, 2)) > 100
    with pytest.raises(ValueError, match="no patch boundary"):
        grid_artefact_ratio(ramp, patch=2, window=(1, 1))


def test_spearman_and_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert spearman([1.0], [2.0]) is None
    assert ranks([3.0, 1.0, 3.0]).tolist() == [2.5, 1.0, 2.5]
    with pytest.raises(ValueError, match="equally long"):
        spearman([1, 2], [1])


def test_spread_over_seeds():
    s = spread([1.0, 3.0])
    assert (s["mean"], s["min"], s["max"], s["n"]) == (2.0, 1.0, 3.0, 2)
    assert s["std"] == pytest.approx(2**0.5)
    assert spread([5.0])["std"] == 0.0
