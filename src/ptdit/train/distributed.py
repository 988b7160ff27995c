"""Process-group setup and the DDP / FSDP2 wrappers, applied from outside the single-device model.

Launch several processes with `torchrun --nproc_per_node=N -m ptdit train ...`; a single process needs no
launcher. CPU runs use gloo, CUDA runs nccl. Only rank 0 logs and writes files.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def check_device(device: str) -> None:
    """Raises ValueError unless `device` ('cpu' or 'cuda') is usable on this machine."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"train.device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "train.device is 'cuda' but no CUDA device is available (a CPU-only torch build, or no visible GPU); "
            "use --set train.device=cpu"
        )


def setup_distributed(device: str = "cpu") -> DistInfo:
    """Initialises the process group when launched by torchrun (WORLD_SIZE > 1); a no-op otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    check_device(device)
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        if dev.type == "cpu":  # share the cores between the processes instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def teardown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def apply_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)


def apply_fsdp(model: nn.Module, info: DistInfo) -> nn.Module:
    """FSDP2: shard every block, then the root (parameters become DTensor shards; names are unchanged)."""
    from torch.distributed.fsdp import fully_shard

    for block in model.block_list():
        fully_shard(block)
    fully_shard(model)
    return model


def wrap_model(model: nn.Module, info: DistInfo, strategy: str) -> nn.Module:
    """The model to call in the training step: DDP wrapper, FSDP2-sharded model, or the model itself."""
    if not info.enabled:
        return model
    return apply_ddp(model, info) if strategy == "ddp" else apply_fsdp(model, info)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skips the gradient all-reduce on accumulation micro-batches (DDP no_sync / FSDP2 sync flag)."""
    if enabled:
        yield
    elif hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def all_reduce_sum(value: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
    return value
