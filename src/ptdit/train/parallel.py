"""Wrappers applied to a single-device model from outside: activation checkpointing (DDP / FSDP / compile
belong here too). None of them changes state-dict keys, so checkpoints stay wrapper-free."""

from __future__ import annotations

import functools

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
