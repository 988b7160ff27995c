"""Caching of constant tensors (masks, positional embeddings) built per grid."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable[..., object])


def fake_mode_active() -> bool:
    """Whether a `FakeTensorMode` is active (`ptdit bench memory` runs the networks on fake tensors)."""
    return torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE) is not None


def cached_tensor_builder(fn: F) -> F:
    """lru_cache for functions that build constant tensors. They are built outside inference mode: a tensor
    first made under `torch.inference_mode()` could never be saved for backward by a later training step.

    Under a `FakeTensorMode` the cache is bypassed: a fake tensor must never be handed to real code later (nor a
    real one to fake code), so fake runs build their constants afresh.
    """

    def make(*args, **kwargs):
        with torch.inference_mode(False):
            return fn(*args, **kwargs)

    cached = functools.lru_cache(maxsize=64)(make)

    @functools.wraps(fn)
    def build(*args, **kwargs):
        return make(*args, **kwargs) if fake_mode_active() else cached(*args, **kwargs)

    build.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    build.cache_info = cached.cache_info  # type: ignore[attr-defined]
    return build  # type: ignore[return-value]
