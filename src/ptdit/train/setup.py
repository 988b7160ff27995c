"""Training setup: model, data, encoders, loss and the state a step works on.

Each builder is a small function of the config, so `train/loop.py` reads as phases.
"""

from __future__ import annotations

import inspect
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


def build_text_encoder(cfg: TrainConfig, model_config: Any, out_dir: Path, is_main: bool):
    """(encoder, folder to store with checkpoints or None, pipeline dict for config.json)."""
    from ptdit.encoders import load_text_encoder

    pipeline = cfg.pipeline.to_dict()
    if model_config.conditioning != "text":
        return None, None, pipeline
    if cfg.pipeline.text_encoder == "words":
        from ptdit.data import VOCABULARY
        from ptdit.encoders.words import WordTextEncoder

        # The built-in word encoder is built from the procedural datasets' vocabulary, and a copy travels inside
        # every checkpoint folder (named relative to it), so checkpoints sample without the dataset.
        encoder = WordTextEncoder(VOCABULARY, dim=model_config.context_dim, max_length=cfg.pipeline.text_max_length)
        folder = out_dir / "text_encoder"
        if is_main:
            encoder.save(folder)
        pipeline["text_encoder"] = "text_encoder"
        return encoder, folder, pipeline
    encoder = load_text_encoder(cfg.pipeline.text_encoder, max_length=cfg.pipeline.text_max_length)
    if encoder.dim != model_config.context_dim:
        raise ValueError(
            f"text encoder width {encoder.dim} != model context_dim {model_config.context_dim}; "
            f"set model.context_dim={encoder.dim}"
        )
    return encoder, None, pipeline


def build_dataset(cfg: TrainConfig):
    """The training dataset named by `data.dataset`, with `data.options` (unknown options are named)."""
    from ptdit.data import build_dataset as build_procedural
    from ptdit.data.folders import ImageFolderDataset, VideoFolderDataset
    from ptdit.data.procedural import DATASETS

    if cfg.data.dataset == "cache":  # encoded features (docs/data.md#feature-caches)
        from ptdit.train.features import open_cache

        return open_cache(cfg)
    folders = {"image-folder": ImageFolderDataset, "video-folder": VideoFolderDataset}
    builder = folders.get(cfg.data.dataset) or DATASETS.get(cfg.data.dataset)
    if builder is None:
        raise ValueError(f"unknown data.dataset {cfg.data.dataset!r}; valid names: {[*DATASETS, *folders, 'cache']}")
    valid = sorted(set(inspect.signature(builder).parameters) - {"self", "size", "seed", "args", "kwargs"})
    unknown = sorted(set(cfg.data.options) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown data.options {unknown} for dataset {cfg.data.dataset!r}; valid options: {valid or 'none'}"
        )
    if cfg.data.dataset in folders:
        return builder(size=cfg.data.size, seed=cfg.data.seed, **cfg.data.options)
    return build_procedural(cfg.data.dataset, size=cfg.data.size, seed=cfg.data.seed, **cfg.data.options)


class StepBatches(torch.utils.data.Sampler):
    """Index lists per step for this process: step s uses dataset indices [s B, (s + 1) B) (mod length)."""

    def __init__(self, start_step: int, stop_step: int, global_batch: int, info: DistInfo, length: int) -> None:
        self.start, self.stop, self.global_batch = start_step, stop_step, global_batch
        self.info, self.length = info, length

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self):
        local = self.global_batch // self.info.world_size
        for step in range(self.start, self.stop):
            first = step * self.global_batch + self.info.rank * local
            yield [(first + i) % self.length for i in range(local)]


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stacks pixels; keeps captions as a list and labels as a tensor."""
    batch: dict[str, Any] = {
        "pixels": torch.stack([it["pixels"] for it in items]),
        "caption": [it.get("caption", "") for it in items],
    }
    if "label" in items[0]:
        batch["label"] = torch.tensor([it["label"] for it in items])
    return batch


def build_loader(cfg: TrainConfig, dataset: Any, info: DistInfo, start_step: int, stop_step: int):
    """Step s reads samples [s B, (s + 1) B), so the loader's position is the step itself."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=StepBatches(start_step, stop_step, cfg.train.batch_size, info, len(dataset)),
        num_workers=cfg.data.num_workers,
        collate_fn=getattr(dataset, "collate", collate),
    )


def sample_frames(dataset: Any) -> int:
    """Pixel frames per sample (a feature cache records them in its manifest)."""
    manifest = getattr(dataset, "manifest", None)
    return int(manifest["frames"]) if manifest else int(dataset[0]["pixels"].shape[1])


def build_state(cfg: TrainConfig, info: DistInfo, module: torch.nn.Module, vae: Any, encoder: Any) -> TrainState:
    """Parallel wrapper, optimizer and EMA on the (possibly sharded) parameters, loss and conditioning."""
    from ptdit.train.distributed import wrap_model

    model = wrap_model(module, info, cfg.train.parallel)
    optimizer = build_optimizer(module, cfg.optim)
    ema = EMA(module, cfg.train.ema_decay, warmup=cfg.train.ema_warmup)
    objective = build_objective(cfg.pipeline, spatial_factor=vae.spatial_factor, temporal_factor=vae.temporal_factor)
    conditioner = conditioning_for(
        module.conditioning, text_encoder=encoder, num_classes=getattr(module.config, "num_classes", None)
    )
    use_bf16 = cfg.train.precision == "bf16"
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
    "build_state",
    "build_text_encoder",
    "check_batch",
    "collate",
    "sample_frames",
]
