"""Small generic layers: the linear layer with its CPU bf16 fast path, adaLN modulation, the GELU feed-forward
network, parameter-free LayerNorm."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


@functools.cache
def _onednn_linear_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


class Linear(nn.Linear):
    """`nn.Linear` (same parameters, keys and initialisation), optionally followed by GELU(tanh), with a fast path
    for bf16 inference on CPU (docs/decisions.md#fused-cpu-linear).

    Reference path: `F.linear`, then `F.gelu`. Fast path: oneDNN's linear with the bias, and the GELU, in the GEMM's
    epilogue. On CPU in bf16, ATen's `addmm` first copies the bias into the whole output and GELU is one more pass
    over a 4x-wide tensor; the fast path takes 10-12% off a bf16 forward of PT-DiT/XL or DiT-XL/2 at 1024 px
    (BENCHMARKS.md "bf16 on CPU").
    The fast path is taken only where it is exact or within one bf16 rounding of the reference: CPU, bf16 input and
    weight, contiguous input, no gradient needed (its kernel has no backward), and not inside `torch.compile`
    (Inductor fuses the reference path itself).

    Attributes:
        activation: None, or "gelu_tanh" for GELU(tanh) after the linear map.
        fused_cpu: class-wide switch of the fast path (False: always the reference path).
    """

    fused_cpu: bool = True

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, activation: str | None = None):
        super().__init__(in_features, out_features, bias=bias)
        if activation not in (None, "gelu_tanh"):
            raise ValueError(f"activation must be None or 'gelu_tanh', got {activation!r}")
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._use_fused(x):
            attr, algorithm = ("gelu", "tanh") if self.activation else ("none", "")
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, attr, [], algorithm)
        y = F.linear(x, self.weight, self.bias)
        return F.gelu(y, approximate="tanh") if self.activation else y

    def _use_fused(self, x: torch.Tensor) -> bool:
        # Cheapest tests first: every fp32 or CUDA call (all of training) stops at the first or second.
        if not (self.fused_cpu and x.dtype == self.weight.dtype == torch.bfloat16 and x.device.type == "cpu"):
            return False
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            return False  # the oneDNN kernel has no backward
        return x.is_contiguous() and not torch.compiler.is_compiling() and _onednn_linear_available()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation `x * (1 + scale) + shift`; shift/scale broadcast against x."""
    return x * (1 + scale) + shift


def layer_norm(dim: int, eps: float) -> nn.LayerNorm:
    """LayerNorm without affine parameters, as in every PT-DiT / PixArt / DiT block."""
    return nn.LayerNorm(dim, elementwise_affine=False, eps=eps)


class _GeluProj(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = Linear(dim_in, dim_out, activation="gelu_tanh")  # GELU inside: one fused kernel on CPU bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class FeedForward(nn.Module):
    """Linear(D, 4D) -> GELU(tanh) -> Linear(4D, D), with diffusers' key names `net.0.proj`, `net.2`."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        # Index 1 is diffusers' dropout slot (rate 0); keeping it keeps the checkpoint key `net.2`.
        self.net = nn.ModuleList([_GeluProj(dim, hidden_dim), nn.Identity(), Linear(hidden_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x
