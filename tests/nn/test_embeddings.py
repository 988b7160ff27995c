"""Positional and timestep embeddings (docs/architecture.md#embeddings-and-conditioning)."""

from __future__ import annotations

import math

import torch

from ptdit.nn.embeddings import sincos_1d, sincos_pos_embed_2d, sincos_pos_embed_3d, timestep_embedding, unpatchify


def test_sincos_1d_layout():
    code = sincos_1d(torch.tensor([0.0, 2.0]), 8)
    omega = 10000.0 ** (-torch.arange(4, dtype=torch.float64) / 4)
    torch.testing.assert_close(code[1], torch.cat([torch.sin(2 * omega), torch.cos(2 * omega)]))
    assert code[0, :4].abs().max() == 0 and (code[0, 4:] == 1).all()


def test_pe_channels_split_for_non_square_grid():
    D, grid = 64, (3, 4, 6)
    pe = sincos_pos_embed_3d(grid, D).reshape(*grid, D)
    t, col, row = pe[..., : D // 4], pe[..., D // 4 : D // 4 + 3 * D // 8], pe[..., D // 4 + 3 * D // 8 :]
    # temporal channels vary only along F, column channels only along X, row channels only along Y
    assert torch.equal(t, t[:, :1, :1].expand_as(t))
    assert torch.equal(col, col[:1, :1, :].expand_as(col))
    assert torch.equal(row, row[:1, :, :1].expand_as(row))
    torch.testing.assert_close(row[0, :, 0], sincos_1d(torch.arange(4), 3 * D // 8).float())
    torch.testing.assert_close(col[0, 0, :], sincos_1d(torch.arange(6), 3 * D // 8).float())


def test_reference_compat_reproduces_quirk_and_agrees_on_square_grids():
    D = 32
    square = (1, 5, 5)
    assert torch.equal(sincos_pos_embed_3d(square, D), sincos_pos_embed_3d(square, D, reference_compat=True))
    grid = (1, 4, 6)  # Y = 4, X = 6
    quirk = sincos_pos_embed_3d(grid, D, reference_compat=True)
    correct = sincos_pos_embed_3d(grid, D)
    assert not torch.equal(quirk, correct)
    k = torch.arange(24)
    expected_col = sincos_1d(k % 4, 3 * D // 8).float()  # k mod H' in the column channels
    expected_row = sincos_1d(k // 4, 3 * D // 8).float()
    torch.testing.assert_close(quirk[:, D // 4 : D // 4 + 3 * D // 8], expected_col)
    torch.testing.assert_close(quirk[:, D // 4 + 3 * D // 8 :], expected_row)


def test_pe_interpolation_scale_divides_spatial_positions():
    a = sincos_pos_embed_3d((1, 4, 4), 32, interpolation_scale=2.0)
    col = a[:, 8:20]
    torch.testing.assert_close(col[1], sincos_1d(torch.tensor([0.5]), 12)[0].float())


def test_dit_2d_pe_is_column_then_row():
    pe = sincos_pos_embed_2d((1, 3, 5), 16)
    torch.testing.assert_close(pe[7, :8], sincos_1d(torch.tensor([7 % 5]), 8)[0].float())
    torch.testing.assert_close(pe[7, 8:], sincos_1d(torch.tensor([7 // 5]), 8)[0].float())


def test_timestep_embedding_cos_first():
    emb = timestep_embedding(torch.tensor([0.0, 500.0]), 256)
    assert emb.shape == (2, 256)
    assert (emb[0, :128] == 1).all() and (emb[0, 128:] == 0).all()
    f5 = 10000 ** (-5 / 128)
    torch.testing.assert_close(emb[1, 5], torch.tensor(math.cos(500 * f5)))
    torch.testing.assert_close(emb[1, 128 + 5], torch.tensor(math.sin(500 * f5)))


def test_unpatchify_channel_layout():
    # token (f, r, c), channel (pi * p + qi) * C + ch -> out[ch, f, r p + pi, c p + qi]
    p, C, grid = 2, 3, (1, 2, 3)
    y = torch.randn(1, 6, p * p * C)
    out = unpatchify(y, grid, p, C)
    assert out.shape == (1, 3, 1, 4, 6)
    r, c, pi, qi, ch = 1, 2, 1, 0, 2
    assert out[0, ch, 0, r * p + pi, c * p + qi] == y[0, r * 3 + c, (pi * p + qi) * C + ch]
