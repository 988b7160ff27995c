"""Small generic layers: adaLN modulation, the GELU feed-forward network, parameter-free LayerNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation `x * (1 + scale) + shift`; shift/scale broadcast against x."""
    return x * (1 + scale) + shift


def layer_norm(dim: int, eps: float) -> nn.LayerNorm:
    """LayerNorm without affine parameters, as in every PT-DiT / PixArt / DiT block."""
    return nn.LayerNorm(dim, elementwise_affine=False, eps=eps)


class _GeluProj(nn.Module):
    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """Linear(D, 4D) -> GELU(tanh) -> Linear(4D, D), with diffusers' key names `net.0.proj`, `net.2`."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        # Index 1 is diffusers' dropout slot (rate 0); keeping it keeps the checkpoint key `net.2`.
        self.net = nn.ModuleList([_GeluProj(dim, hidden_dim), nn.Identity(), nn.Linear(hidden_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x
