"""`ptdit.models.probes`: the attention and branch probes observe without changing the output, and report what
a constructed network must give."""

from __future__ import annotations

import pytest
import torch

from ptdit.config import DiTConfig, PixArtConfig
from ptdit.models.probes import record_attention, record_branches
from ptdit.models.registry import build_model
from tests.helpers.models import randomize_, text_inputs, tiny_config


def _pixart():
    return randomize_(build_model(PixArtConfig(dim=32, depth=2, num_heads=2, context_dim=24))).eval()


def _dit():
    return randomize_(build_model(DiTConfig(dim=32, depth=2, num_heads=2, num_classes=3, input_size=16))).eval()


@torch.no_grad()
def test_attention_probe_keeps_outputs_and_records_probabilities():
    x, t, ctx, mask = text_inputs()
    model = _pixart()
    plain = model(x, t, ctx, mask)
    with record_attention(model) as calls:
        probed = model(x, t, ctx, mask)
        model(x, t, ctx, mask)
    torch.testing.assert_close(probed, plain, rtol=0, atol=0)
    assert len(calls) == 2 and len(calls[0]) == 2  # two calls, two blocks
    probs = calls[0][0]
    assert probs.shape == (2, 2, 64, 64)  # (B, heads, L, L): 16 / patch 2 = 8 x 8 tokens
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 64))
    model(x, t, ctx, mask)
    assert len(calls) == 2  # nothing is recorded after the block


@torch.no_grad()
def test_attention_probe_reads_the_modules_own_weights():
    """Zero query weights and biases make every row uniform; the probe must see that."""
    model = _dit()
    for block in model.block_list():
        block.attn.qkv.weight[:32].zero_()
        block.attn.qkv.bias[:32].zero_()
    x = torch.randn(2, 4, 1, 16, 16)
    with record_attention(model) as calls:
        model(x, torch.tensor([10.0, 900.0]), class_labels=torch.tensor([0, 2]))
    torch.testing.assert_close(calls[0][1], torch.full((2, 2, 64, 64), 1 / 64))


def test_attention_probe_refuses_pt_dit():
    with pytest.raises(ValueError, match="DiT or PixArt-alpha"), record_attention(build_model(tiny_config())):
        pass


@torch.no_grad()
def test_branch_probe_keeps_outputs_and_sees_every_branch():
    x, t, ctx, mask = text_inputs()
    model = randomize_(build_model(tiny_config())).eval()
    plain = model(x, t, ctx, mask)
    with record_branches(model) as norms:
        probed = model(x, t, ctx, mask)
        model(x, t, ctx, mask)
    torch.testing.assert_close(probed, plain, rtol=0, atol=0)
    assert len(norms.calls) == 2 and len(norms.calls[0]) == 2
    relative = norms.relative()[0]
    assert set(relative[0]) == {"giim", "window", "shifted_window", "text", "ffn"}
    assert all(v > 0 for block in relative for v in block.values())
    assert all(block.branch_recorder is None for block in model.block_list())


@torch.no_grad()
def test_branch_probe_on_a_fresh_model_and_an_ablation():
    """At initialisation the zero-init linears after GIIM and the shifted windows add exactly nothing; a model
    without GIIM has no GIIM branch."""
    x, t, ctx, mask = text_inputs()
    fresh = build_model(tiny_config()).eval()
    with record_branches(fresh) as norms:
        fresh(x, t, ctx, mask)
    first = norms.relative()[0][0]
    assert first["giim"] == 0.0 and first["shifted_window"] == 0.0 and first["window"] > 0
    ablated = build_model(tiny_config(use_global_interaction=False)).eval()
    with record_branches(ablated) as norms:
        ablated(x, t, ctx, mask)
    assert "giim" not in norms.relative()[0][0]
    with pytest.raises(ValueError, match="PT-DiT"), record_branches(_pixart()):
        pass
