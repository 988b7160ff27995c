"""DiT baseline: shapes, adaLN-Zero init, the stored positional table."""

from __future__ import annotations

import torch

from ptdit.config import DiTConfig
from ptdit.models.dit import DiT
from tests.helpers.models import randomize_


def test_dit_forward_and_adaln_zero_init():
    model = DiT(DiTConfig(dim=32, depth=2, num_heads=2, num_classes=10, input_size=16)).eval()
    x = torch.randn(2, 4, 1, 16, 16)
    out = model(x, torch.tensor([5.0, 900.0]), class_labels=torch.tensor([0, 3]))
    assert out.shape == (2, 8, 1, 16, 16)
    assert out.abs().max() == 0  # adaLN-Zero: zero output at initialisation
    randomize_(model)
    assert model(torch.randn(1, 4, 2, 8, 8), 1.0, class_labels=torch.tensor([1])).shape == (1, 8, 2, 8, 8)


def test_dit_stored_pos_embed_equals_computed():
    from ptdit.nn.embeddings import sincos_pos_embed_2d

    model = DiT(DiTConfig(dim=32, depth=1, num_heads=2, num_classes=10, input_size=16))
    assert not model.pos_embed.requires_grad
    torch.testing.assert_close(model.pos_embed[0], sincos_pos_embed_2d((1, 8, 8), 32))
    randomize_(model)
    x = torch.randn(1, 4, 1, 16, 16)
    stored = model(x, 3.0, class_labels=torch.tensor([1]))
    model.pos_embed.data.add_(1.0)  # the stored table is what the base grid uses
    assert not torch.allclose(model(x, 3.0, class_labels=torch.tensor([1])), stored)
