"""Caching of constant tensors (masks, positional embeddings) built per grid."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable[..., object])


def cached_tensor_builder(fn: F) -> F:
    """lru_cache for functions that build constant tensors. They are built outside inference mode: a tensor
    first made under `torch.inference_mode()` could never be saved for backward by a later training step."""

    @functools.lru_cache(maxsize=64)
    @functools.wraps(fn)
    def build(*args, **kwargs):
        with torch.inference_mode(False):
            return fn(*args, **kwargs)

    return build  # type: ignore[return-value]
