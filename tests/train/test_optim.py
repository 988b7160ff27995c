"""Optimizer parameter groups and the learning-rate schedule (ptdit.train.optim)."""

from __future__ import annotations

import pytest
import torch

import ptdit
from ptdit.train.optim import lr_factor, param_groups
from tests.helpers.train import tiny_train_config


def test_param_groups_skip_decay_on_norms_biases_embeddings_tables():
    model = ptdit.build_model("PT-DiT/Tiny", conditioning="class", num_classes=3)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert "label_embedder.embedding_table.weight" in no_decay_names
    assert "transformer_blocks.0.scale_shift_table" in no_decay_names and "proj_out.bias" in no_decay_names
    assert all(names[id(p)].endswith("weight") for p in decay["params"]) and decay["weight_decay"] == 0.05


def test_lr_schedule_warmup_then_cosine():
    cfg = tiny_train_config("optim.schedule=cosine", "optim.warmup_steps=10", "optim.min_lr_ratio=0.1").optim
    assert lr_factor(0, cfg, 110) == pytest.approx(0.1) and lr_factor(9, cfg, 110) == pytest.approx(1.0)
    assert lr_factor(60, cfg, 110) == pytest.approx(0.55) and lr_factor(110, cfg, 110) == pytest.approx(0.1)


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))


def test_fused_adamw_matches_the_reference_loop_to_rounding():
    from ptdit.train.config import OptimConfig
    from ptdit.train.optim import build_optimizer

    models = [_tiny_model(), _tiny_model()]
    opts = [
        build_optimizer(m, OptimConfig(lr=1e-2, weight_decay=0.1, fused=f))
        for m, f in zip(models, (False, True), strict=True)
    ]
    assert opts[1].defaults["fused"] and not opts[0].defaults.get("fused")
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        grads = [torch.randn(p.shape, generator=gen) for p in models[0].parameters()]
        for model, opt in zip(models, opts, strict=True):
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
            opt.step()
    moved = any(not torch.equal(p, q) for p, q in zip(models[0].parameters(), _tiny_model().parameters(), strict=True))
    assert moved
    for p, q in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)


def test_ema_update_is_bit_identical_to_a_per_parameter_lerp():
    from ptdit.train.ema import EMA

    model = _tiny_model()
    ema = EMA(model, 0.99)
    reference = {n: p.detach().clone() for n, p in model.named_parameters()}
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model, step)
        decay = ema.decay_at(step)
        for n, p in model.named_parameters():
            reference[n].lerp_(p.detach().float(), 1 - decay)
    for n, value in reference.items():
        assert torch.equal(ema.shadow[n], value), n
