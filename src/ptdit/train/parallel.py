"""Wrappers applied to a single-device model from outside: activation checkpointing and per-block
`torch.compile` (DDP / FSDP belong here too). None of them changes state-dict keys, so checkpoints stay wrapper-free."""

from __future__ import annotations

import functools
from typing import Any

from torch import nn
from torch.utils.checkpoint import checkpoint


def _checkpointed_forward(forward, *args, **kwargs):
    # Non-reentrant checkpointing supports keyword arguments and inputs that do not require grad; the RNG
    # state is restored on recompute, so random proxies draw the same tokens twice.
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def apply_activation_checkpointing(model: nn.Module) -> nn.Module:
    """Recomputes each block's activations in the backward pass instead of storing them (per block).

    Works on any ptdit network (its `block_list()`); parameter names and outputs are unchanged.
    """
    for block in model.block_list():
        if getattr(block, "_ptdit_checkpointed", False):
            continue
        block.forward = functools.partial(_checkpointed_forward, block.forward)
        block._ptdit_checkpointed = True
    return model


def apply_compile(model: nn.Module, **compile_kwargs: Any) -> nn.Module:
    """Compiles each block of `model.block_list()` in place with `torch.compile` (torchtitan's per-block recipe).

    `nn.Module.compile` keeps the module and its parameters where they are, so state-dict keys carry no
    `_orig_mod.` prefix and checkpoints stay wrapper-free. Per-block compilation compiles one block shape once and
    reuses it for every block, which keeps compile time far below whole-model compilation. Apply activation
    checkpointing first if both are wanted.

    Args:
        model: any ptdit network (PT-DiT, DiT, PixArt-alpha).
        **compile_kwargs: passed to `torch.compile` (e.g. mode="max-autotune", dynamic=False).

    Returns:
        `model`, with its blocks compiled.
    """
    for block in model.block_list():
        if getattr(block, "_ptdit_compiled", False):
            continue
        block.compile(**compile_kwargs)
        block._ptdit_compiled = True
    return model
