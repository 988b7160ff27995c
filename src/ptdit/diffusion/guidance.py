"""Classifier-free guidance, implemented once for pipelines and evaluation
(docs/inference.md#the-reference-sampler, step 3).

The reference runs the conditional and the unconditional branch in one network call on the batch
`[x; x]` with times `[t; t]` and context `[cond; uncond]` (conditional first), then combines
`out = out_u + s (out_c - out_u)`. `ClassifierFreeGuidance` wraps a model callable so it does exactly
that and still looks like a model (`guided(x, t, **cond) -> out`); wrap it in a `Denoiser` for sampling.
Guiding the raw output equals guiding x0, since every prediction-to-x0 conversion is affine in the
prediction with coefficients shared by both branches.

Shapes: B batch; x (B, C, F, H, W); the doubled batch is 2B with the conditional half first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["ClassifierFreeGuidance", "batch_cond_uncond", "cfg_combine"]


def cfg_combine(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance: `uncond + scale * (cond - uncond)`; scale 1 gives `cond`, 0 gives `uncond`."""
    return uncond + scale * (cond - uncond)


def _batch_pair(name: str, cond: Tensor, uncond: Tensor, batch_size: int) -> Tensor:
    """cat([cond, uncond]) along the batch; an uncond with batch 1 (e.g. a null embedding) is expanded."""
    if uncond.shape[0] == 1 and batch_size != 1:
        uncond = uncond.expand(batch_size, *uncond.shape[1:])
    if cond.shape[0] != batch_size or uncond.shape != cond.shape:
        raise ValueError(
            f"{name}: cond {tuple(cond.shape)} and uncond {tuple(uncond.shape)} must match with batch {batch_size}"
        )
    return torch.cat([cond, uncond.to(cond.device)])


def batch_cond_uncond(cond: Mapping[str, Any], uncond: Mapping[str, Any], batch_size: int) -> dict[str, Any]:
    """Model keyword arguments for the doubled batch `[cond; uncond]`.

    Tensor arguments are concatenated conditional first; an unconditional tensor with batch 1 is expanded
    to `batch_size`. Every tensor argument of `cond` needs its unconditional counterpart in `uncond` (a
    forgotten `context_mask` must not silently reuse the conditional mask). Non-tensor arguments (None,
    flags) are passed through and must agree when both sides give them.

    Args:
        cond: conditional keyword arguments, tensors with batch `batch_size`.
        uncond: unconditional keyword arguments (e.g. the empty-prompt context and mask, the null class).
        batch_size: B.

    Returns:
        Keyword arguments for one call on 2B samples.
    """
    if extra := sorted(set(uncond) - set(cond)):
        raise ValueError(f"uncond has arguments the conditional call lacks: {extra}")
    batched: dict[str, Any] = {}
    for name, value in cond.items():
        if name not in uncond:
            if isinstance(value, Tensor):
                raise ValueError(f"uncond lacks the tensor argument {name!r} of the conditional call")
            batched[name] = value
            continue
        other = uncond[name]
        if isinstance(value, Tensor) and isinstance(other, Tensor):
            batched[name] = _batch_pair(name, value, other, batch_size)
        elif isinstance(value, Tensor) or isinstance(other, Tensor):
            raise ValueError(f"{name}: both cond and uncond must give a tensor, got {type(value)} and {type(other)}")
        elif other != value:
            raise ValueError(f"{name}: non-tensor arguments must agree, got {value!r} and {other!r}")
        else:
            batched[name] = value
    return batched


class ClassifierFreeGuidance:
    """A model callable that runs cond and uncond in one batched call and combines them.

    `guided(x, t, **cond)` calls `model([x; x], [t; t], **batch_cond_uncond(cond, uncond))`, splits the
    output into (conditional, unconditional) halves and returns `cfg_combine(out_c, out_u, scale)` over all
    output channels (extra channels are dropped later by the `Denoiser`). With scale 1 it skips the
    unconditional half and returns the conditional output.

    Args:
        model: the network, `model(x, t, **kwargs) -> (B, C_out, ...)`.
        scale: guidance scale s (4.0 for the released weights, 6.0 in the paper).
        uncond: unconditional keyword arguments, e.g. `{"context": null_ctx, "context_mask": null_mask}` or
            `{"class_labels": null_labels}`; tensors with batch B or 1.
    """

    def __init__(self, model: Callable[..., Tensor], *, scale: float, uncond: Mapping[str, Any]) -> None:
        self.model = model
        self.scale = scale
        self.uncond = dict(uncond)

    def __call__(self, x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        """Guided output.

        Args:
            x: (B, C, ...) noisy latents.
            t: (B,) or scalar network times.
            **cond: conditional keyword arguments.

        Returns:
            (B, C_out, ...) guided network output.
        """
        if self.scale == 1.0:
            return self.model(x, t, **cond)
        batch_size = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        t_B = t.expand(batch_size) if t.ndim == 0 else t
        kwargs = batch_cond_uncond(cond, self.uncond, batch_size)
        out = self.model(torch.cat([x, x]), torch.cat([t_B, t_B]), **kwargs)
        out_cond, out_uncond = out.chunk(2)
        return cfg_combine(out_cond, out_uncond, self.scale)
