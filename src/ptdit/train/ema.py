"""Exponential moving average of the weights, kept in float32 whatever the training dtype."""

from __future__ import annotations

import torch
from torch import nn


def _full(t: torch.Tensor) -> torch.Tensor:
    """A plain tensor: gathers FSDP2 DTensor shards."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


class EMA:
    """EMA of a model's trainable parameters (same names as the model's state dict).

    Args:
        model: the (possibly FSDP-sharded) model; the EMA mirrors its parameters' sharding.
        decay: the target decay.
        warmup: use decay_t = min(decay, (1 + step) / (10 + step)), which suits short runs.
    """

    def __init__(self, model: nn.Module, decay: float, *, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self.shadow = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = self.decay_at(step)
        pairs = [(self.shadow[n], p.detach().float()) for n, p in model.named_parameters() if n in self.shadow]
        if any(hasattr(shadow, "device_mesh") for shadow, _ in pairs):  # FSDP2 shards: one lerp per DTensor
            for shadow, param in pairs:
                shadow.lerp_(param, 1 - decay)
            return
        # One multi-tensor kernel instead of one small op per parameter (3.6 against 4.2 ms a step idle for the
        # 2-core demo's 215 tensors, 5 against 19 ms on a busy machine); the same per-element lerp, so
        # bit-identical to the loop above (tests/train/test_optim.py).
        shadows, params = zip(*pairs, strict=True) if pairs else ((), ())
        torch._foreach_lerp_(list(shadows), list(params), 1 - decay)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Full (gathered) EMA weights under the model's state-dict keys, non-trainable entries from the model."""
        state = {}
        for name, value in model.state_dict().items():
            source = self.shadow.get(name, value)
            state[name] = _full(source).detach().to(value.dtype).cpu().contiguous()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = sorted(set(self.shadow) - set(state))
        if missing:
            raise ValueError(f"EMA weights lack {len(missing)} parameters, e.g. {missing[:3]}")
        for name, shadow in self.shadow.items():
            value = state[name].float()
            if hasattr(shadow, "device_mesh"):  # DTensor shard: take this rank's slice of the full tensor
                from torch.distributed.tensor import distribute_tensor

                value = distribute_tensor(value, shadow.device_mesh, shadow.placements)
            shadow.copy_(value)
