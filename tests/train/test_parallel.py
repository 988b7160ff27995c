"""Activation checkpointing and per-block torch.compile (ptdit.train.parallel) against the eager model."""

from __future__ import annotations

import pytest
import torch

from ptdit.models.ptdit import PTDiT
from ptdit.models.registry import build_model
from ptdit.train.parallel import apply_activation_checkpointing, apply_compile
from tests.helpers.models import randomize_, text_inputs, tiny_config


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    return randomize_(PTDiT(tiny_config(**overrides)), seed).eval()


def test_grad_checkpointing_equivalence():
    model = _model().train()
    x, t, ctx, mask = text_inputs()
    out = model(x, t, ctx, mask)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    keys = list(model.state_dict())
    apply_activation_checkpointing(model)
    assert list(model.state_dict()) == keys, "checkpointing must not rename parameters"
    out_ckpt = model(x, t, ctx, mask)
    grads_ckpt = torch.autograd.grad(out_ckpt.square().sum(), list(model.parameters()))
    torch.testing.assert_close(out_ckpt, out, atol=0, rtol=0)
    for a, b in zip(grads_ckpt, grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_apply_compile_keeps_state_dict_keys():
    model = build_model(tiny_config())
    keys = list(model.state_dict())
    assert apply_compile(model) is model
    assert list(model.state_dict()) == keys
    apply_compile(model)  # idempotent
    assert all(getattr(b, "_ptdit_compiled", False) for b in model.block_list())


@pytest.mark.slow
def test_compile_matches_eager():
    """Per-block torch.compile gives the eager outputs and gradients (CPU inductor: ~1 min of compilation)."""
    eager = randomize_(build_model(tiny_config()))
    compiled = randomize_(build_model(tiny_config()))
    apply_compile(compiled)
    x, t, ctx, mask = text_inputs()
    outs, grads = [], []
    for model in (eager, compiled):
        out = model(x, t, ctx, mask)
        out.square().mean().backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in model.named_parameters()})
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-4, rtol=1e-4, msg=name)
