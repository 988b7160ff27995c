"""Tiny PT-DiT configs, randomised weights and matching inputs, shared by the model-level tests."""

from __future__ import annotations

import torch

from ptdit.config import PTDiTConfig


def tiny_config(**overrides) -> PTDiTConfig:
    """dim 32, 2 heads, depth 2; window (1, 4, 4) on 16 x 16 latents gives 2 x 2 windows of 16 tokens."""
    base = dict(dim=32, depth=2, num_heads=2, context_dim=24, window_size=(1, 4, 4))
    base.update(overrides)
    return PTDiTConfig(**base)


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrites every parameter with noise (as the parity fixture does) so zero-init branches contribute."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            std = 0.5 / p.shape[-1] ** 0.5 if p.dim() >= 2 else 0.1
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


def text_inputs(batch: int = 2, frames: int = 1, size: int = 16, tokens: int = 7, context_dim: int = 24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, frames, size, size, generator=gen)
    t = torch.rand(batch, generator=gen) * 1000
    ctx = torch.randn(batch, tokens, context_dim, generator=gen)
    mask = torch.ones(batch, tokens)
    mask[0, tokens - 2 :] = 0
    return x, t, ctx, mask
