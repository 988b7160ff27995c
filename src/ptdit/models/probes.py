"""Read-only probes into a network's blocks, for analyses (docs/study.md#hooks).

Code outside `models/` must not reach into a model's sub-modules (tests/test_package_layout.py), so the two
things `ptdit study attention` needs are context managers here:

* `record_attention(model)`: the self-attention probabilities of every block of a global-attention baseline
  (DiT, PixArt-alpha), one (B, N, L, L) tensor per block and forward call, tokens in raster order (f, y, x).
* `record_branches(model)`: for PT-DiT, each branch's update and the residual stream it is added to, reduced to
  Frobenius norms per (block, branch) and forward call.

Both only observe: the probabilities are recomputed from the attention module's own inputs and weights with the
plain softmax(Q K^T / sqrt(K)) of the reference path, and the outputs of the model are unchanged (tested).
Shape legend: B batch, N heads, L tokens, K head dim, D width.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from einops import rearrange
from torch import nn

from ptdit.models.dit import DiT
from ptdit.models.pixart import PixArtAlpha
from ptdit.models.ptdit import PTDiT


def _probabilities(q_BNLK: torch.Tensor, k_BNLK: torch.Tensor) -> torch.Tensor:
    scale = 1.0 / math.sqrt(q_BNLK.shape[-1])
    return (torch.einsum("bnlk,bnsk->bnls", q_BNLK.float(), k_BNLK.float()) * scale).softmax(dim=-1)


def _dit_qk(attn: nn.Module, x_BLD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    q_BNLK, k_BNLK, _ = rearrange(attn.qkv(x_BLD), "b l (three n k) -> three b n l k", three=3, n=attn.num_heads)
    return q_BNLK, k_BNLK


def _pixart_qk(attn: nn.Module, x_BLD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    split = "b l (n k) -> b n l k"
    return rearrange(attn.to_q(x_BLD), split, n=attn.num_heads), rearrange(attn.to_k(x_BLD), split, n=attn.num_heads)


@contextmanager
def record_attention(model: nn.Module) -> Iterator[list[list[torch.Tensor]]]:
    """Records the self-attention probabilities of a DiT or PixArt-alpha network while the block is open.

    Yields a list that, after each forward call, holds one more entry: a list over blocks of (B, N, L, L) float32
    probabilities (rows: queries, columns: keys, both in raster token order). PT-DiT has no global
    self-attention over tokens and is refused (use `record_branches`).
    """
    if isinstance(model, DiT):
        pairs = [(block.attn, _dit_qk) for block in model.blocks]
    elif isinstance(model, PixArtAlpha):
        pairs = [(block.attn1, _pixart_qk) for block in model.transformer_blocks]
    else:
        raise ValueError(f"record_attention needs a DiT or PixArt-alpha network, got {type(model).__name__}")
    calls: list[list[torch.Tensor]] = []
    handles = []

    def hook_for(index: int, qk):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            if index == 0:
                calls.append([])
            with torch.no_grad():
                calls[-1].append(_probabilities(*qk(module, args[0])).detach())

        return hook

    for index, (module, qk) in enumerate(pairs):
        handles.append(module.register_forward_hook(hook_for(index, qk)))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class BranchNorms:
    """Norms recorded by `record_branches`: `calls[c][block][branch] = (update norm, residual-stream norm)`, both
    Frobenius norms over the whole batch."""

    calls: list[list[dict[str, tuple[float, float]]]] = field(default_factory=list)

    def relative(self) -> list[list[dict[str, float]]]:
        """||update|| / ||stream before it|| per call, block and branch."""
        return [[{name: u / max(x, 1e-12) for name, (u, x) in block.items()} for block in call] for call in self.calls]


@contextmanager
def record_branches(model: nn.Module) -> Iterator[BranchNorms]:
    """Records, for a PT-DiT network, the norm of each branch's update (GIIM, window, shifted window, text, FFN)
    and of the residual stream it is added to, per block and forward call, while the block is open."""
    if not isinstance(model, PTDiT):
        raise ValueError(f"record_branches needs a PT-DiT network, got {type(model).__name__}")
    norms = BranchNorms()
    blocks = list(model.transformer_blocks)

    def recorder_for(index: int):
        def record(name: str, x_BMWD: torch.Tensor, update_BMWD: torch.Tensor) -> None:
            if index == 0 and (not norms.calls or name in norms.calls[-1][0]):
                norms.calls.append([{} for _ in blocks])
            with torch.no_grad():
                norms.calls[-1][index][name] = (float(update_BMWD.float().norm()), float(x_BMWD.float().norm()))

        return record

    for index, block in enumerate(blocks):
        block.branch_recorder = recorder_for(index)
    try:
        yield norms
    finally:
        for block in blocks:
            block.branch_recorder = None
