"""Training setup: model, data, encoders, loss and the state a step works on.

Each builder is a small function of the config, so `train/loop.py` reads as phases.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ptdit.models.registry import build_model
from ptdit.recipe import build_objective, conditioning_for
from ptdit.train.config import TrainConfig
from ptdit.train.distributed import DistInfo
from ptdit.train.ema import EMA
from ptdit.train.optim import build_optimizer
from ptdit.train.step import TrainState


def check_batch(cfg: TrainConfig, info: DistInfo) -> None:
    """The global batch must split evenly over processes and accumulation steps."""
    divisor = info.world_size * cfg.optim.grad_accum
    if cfg.train.batch_size % divisor:
        raise ValueError(
            f"train.batch_size={cfg.train.batch_size} must be divisible by processes x grad_accum = {divisor}"
        )


def build_network(cfg: TrainConfig, info: DistInfo) -> torch.nn.Module:
    """The bare network (same seed on every process, so replicas start equal), checkpointed / compiled."""
    from ptdit.train.parallel import apply_activation_checkpointing, apply_compile

    torch.manual_seed(cfg.train.seed)
    module = build_model(cfg.model_config()).to(info.device)
    if cfg.train.grad_checkpointing:
        apply_activation_checkpointing(module)
    if cfg.train.compile:
        apply_compile(module)
    return module


def build_text_encoder(cfg: TrainConfig, model_config: Any, out_dir: Path, is_main: bool, *, cache: Any = None):
    """(encoder, folder to store with checkpoints or None, pipeline dict for config.json). Training from a feature
    `cache`, a pretrained encoder is loaded only when a prompt needs it (`DeferredTextEncoder`)."""
    from ptdit.encoders import load_text_encoder

    pipeline = cfg.pipeline.to_dict()
    if model_config.conditioning != "text":
        return None, None, pipeline
    if cfg.pipeline.text_encoder == "words":
        from ptdit.data import VOCABULARY
        from ptdit.encoders.words import WordTextEncoder

        # The built-in word encoder is built from the procedural datasets' vocabulary, and a copy travels inside
        # every checkpoint folder (named relative to it), so checkpoints sample without the dataset.
        encoder = WordTextEncoder(
            VOCABULARY,
            dim=model_config.context_dim,
            max_length=cfg.pipeline.text_max_length,
            context=cfg.pipeline.text_context,
        )
        folder = out_dir / "text_encoder"
        if is_main:
            encoder.save(folder)
        pipeline["text_encoder"] = "text_encoder"
        return encoder, folder, pipeline
    if cfg.pipeline.text_context:
        raise ValueError(
            "pipeline.text_context applies to the built-in word encoder only; "
            "set pipeline.text_encoder=words or pipeline.text_context=0"
        )
    if cache is not None and cache.manifest.get("text_encoder") is not None:
        from ptdit.train.features import DeferredTextEncoder

        def load() -> Any:
            return load_text_encoder(cfg.pipeline.text_encoder, max_length=cfg.pipeline.text_max_length)

        encoder = DeferredTextEncoder(load, cache)
    else:
        encoder = load_text_encoder(cfg.pipeline.text_encoder, max_length=cfg.pipeline.text_max_length)
    if encoder.dim != model_config.context_dim:
        raise ValueError(
            f"text encoder width {encoder.dim} != model context_dim {model_config.context_dim}; "
            f"set model.context_dim={encoder.dim}"
        )
    return encoder, None, pipeline


def build_dataset(cfg: TrainConfig):
    """The training dataset named by `data.dataset` (a registry: `ptdit.data.registry`), with `data.path` and
    `data.options` (unknown options are named)."""
    from ptdit.data.registry import build_named_dataset

    if cfg.data.dataset == "cache":  # encoded features, checked against the config (docs/data.md#feature-caches)
        from ptdit.train.features import open_cache

        return open_cache(cfg)
    return build_named_dataset(
        cfg.data.dataset, path=cfg.data.path, size=cfg.data.size, seed=cfg.data.seed, options=cfg.data.options
    )


class StepBatches(torch.utils.data.Sampler):
    """Index lists per step for this process: step s reads positions [s B, (s + 1) B), each position mapped to a
    sample by `order` (default: position mod length; stored datasets pass a per-epoch shuffle)."""

    def __init__(
        self,
        start_step: int,
        stop_step: int,
        global_batch: int,
        info: DistInfo,
        length: int,
        order: Callable[[int], int] | None = None,
    ) -> None:
        self.start, self.stop, self.global_batch = start_step, stop_step, global_batch
        self.info, self.length = info, length
        self.order = order or (lambda position: position % length)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self):
        local = self.global_batch // self.info.world_size
        for step in range(self.start, self.stop):
            first = step * self.global_batch + self.info.rank * local
            yield [self.order(first + i) for i in range(local)]


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacks pixels; keeps captions as a list, labels and sample indices as tensors; sums the bad samples
    skipped."""
    batch: dict[str, Any] = {
        "pixels": torch.stack([it["pixels"] for it in items]),
        "caption": [it.get("caption", "") for it in items],
    }
    if "label" in items[0]:
        batch["label"] = torch.tensor([it["label"] for it in items])
    if "index" in items[0]:
        batch["index"] = torch.tensor([int(it["index"]) for it in items])  # the sample numbers the sampler asked for
    if "skipped" in items[0]:
        batch["skipped"] = sum(int(it["skipped"]) for it in items)
    return batch


def build_sampler(
    cfg: TrainConfig, dataset: Any, info: DistInfo, start_step: int, stop_step: int, *, vae: Any = None
) -> torch.utils.data.Sampler:
    """Step s's index lists: `StepBatches` (stored datasets shuffled per epoch) or, with `data.buckets=pixart`,
    one-bucket batches (`ptdit.data.sampling.BucketBatches`). Either way a pure function of (data.seed, s)."""
    from ptdit.data.registry import get_entry
    from ptdit.data.sampling import BucketBatches, EpochShuffle

    # A feature cache keeps the sample order of its source: shuffled per epoch when that was stored data.
    source = dataset.manifest["dataset"]["name"] if cfg.data.dataset == "cache" else cfg.data.dataset
    stored = get_entry(source).files
    if cfg.data.buckets == "none":
        order = EpochShuffle(len(dataset), cfg.data.seed) if stored else None
        return StepBatches(start_step, stop_step, cfg.train.batch_size, info, len(dataset), order=order)
    if cfg.data.dataset == "cache":  # the raw run's buckets, as recorded (docs/data.md#caches-of-bucketed-data)
        from ptdit.train.buckets import cached_buckets

        shapes, assignment = cached_buckets(cfg, dataset, vae)
    elif not stored or not hasattr(dataset, "media_shape"):
        raise ValueError(
            f"data.buckets={cfg.data.buckets} needs stored data (webdataset, parquet, folders); "
            f"{cfg.data.dataset!r} has one size, use data.buckets=none"
        )
    else:
        from ptdit.train.buckets import bucket_assignment

        shapes, assignment = bucket_assignment(cfg, dataset, vae, show_progress=info.is_main)
    return BucketBatches(
        assignment, shapes, start_step=start_step, stop_step=stop_step, global_batch=cfg.train.batch_size,
        rank=info.rank, world_size=info.world_size, seed=cfg.data.seed,
    )  # fmt: skip


def build_loader(cfg: TrainConfig, dataset: Any, info: DistInfo, start_step: int, stop_step: int, *, vae: Any = None):
    """Step s reads the samples its sampler names, so the loader's position is the step itself."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=build_sampler(cfg, dataset, info, start_step, stop_step, vae=vae),
        num_workers=cfg.data.num_workers,
        collate_fn=getattr(dataset, "collate", collate),
    )


def sample_frames(dataset: Any) -> int:
    """Pixel frames per sample (a feature cache records them in its manifest)."""
    manifest = getattr(dataset, "manifest", None)
    return int(manifest["frames"]) if manifest else int(dataset[0]["pixels"].shape[1])


def build_state(cfg: TrainConfig, info: DistInfo, module: torch.nn.Module, vae: Any, encoder: Any) -> TrainState:
    """Parallel wrapper, optimizer and EMA on the (possibly sharded) parameters, loss and conditioning."""
    from ptdit.precision import resolve_precision
    from ptdit.train.distributed import wrap_model

    model = wrap_model(module, info, cfg.train.parallel)
    optimizer = build_optimizer(module, cfg.optim)
    ema = EMA(module, cfg.train.ema_decay, warmup=cfg.train.ema_warmup)
    objective = build_objective(cfg.pipeline, spatial_factor=vae.spatial_factor, temporal_factor=vae.temporal_factor)
    conditioner = conditioning_for(
        module.conditioning, text_encoder=encoder, num_classes=getattr(module.config, "num_classes", None)
    )
    use_bf16 = resolve_precision(cfg.train.precision, module.config.dim, info.device, "training") == "bf16"
    return TrainState(
        cfg=cfg,
        info=info,
        model=model,
        module=module,
        ema=ema,
        optimizer=optimizer,
        loss_fn=objective.loss(),
        vae=vae,
        text_encoder=encoder,
        conditioner=conditioner,
        null_condition=conditioner.null(info.device),
        autocast=lambda: torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=use_bf16),
    )


__all__ = [
    "StepBatches",
    "build_dataset",
    "build_loader",
    "build_network",
    "build_sampler",
    "build_state",
    "build_text_encoder",
    "check_batch",
    "collate",
    "sample_frames",
]
