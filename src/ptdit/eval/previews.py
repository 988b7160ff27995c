"""Preview samples during training: EMA sample grids of fixed prompts (rank 0 only; no effect on training).

The training loop does not import sampling code (docs/decisions.md#one-place-per-decision): `ptdit train` and
`ptdit demo` hand `write_sample_grid` to `ptdit.train.loop.train` as its `preview` callback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ptdit.models.registry import build_model
from ptdit.train.config import TrainConfig
from ptdit.train.step import TrainState


@torch.no_grad()
def write_sample_grid(state: TrainState, pipeline: dict[str, Any], path: Path, prompts: list[str] | None = None):
    """Samples fixed prompts with the EMA weights and writes one row per prompt (frames side by side)."""
    from ptdit.sampling.media import sample_strips, save_png

    pixels, prompts = sample_with_ema(state, pipeline, prompts)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(path, sample_strips(pixels), {"prompts": prompts, "step": state.step})
    return path


def sample_prompts(cfg: TrainConfig, n: int, seed: int) -> list[str]:
    """Prompts from the training caption distribution (procedural datasets) or training captions (folders)."""
    from ptdit.data import DATASETS, random_captions
    from ptdit.train.setup import build_dataset

    if cfg.data.dataset in DATASETS:
        return random_captions(cfg.data.dataset, n, seed=seed, **cfg.data.options)
    dataset = build_dataset(cfg)
    return [dataset[i % len(dataset)]["caption"] for i in range(n)]


def ema_pipeline(state: TrainState, pipeline: dict[str, Any]) -> Any:
    """A `GenerationPipeline` around a plain copy of the model holding the EMA weights."""
    from ptdit.config import PipelineConfig
    from ptdit.sampling.pipeline import GenerationPipeline

    ema_model = build_model(state.module.config).to(state.info.device).eval()
    ema_model.load_state_dict(state.ema.state_dict(state.module))
    pipe_cfg = PipelineConfig.from_dict({**pipeline, "text_encoder": state.cfg.pipeline.text_encoder})
    return GenerationPipeline(ema_model, pipe_cfg, state.vae, state.text_encoder)


@torch.no_grad()
def sample_with_ema(
    state: TrainState, pipeline: dict[str, Any], prompts: list[str] | None = None, steps: int | None = None
) -> tuple[torch.Tensor, list[str]]:
    """(pixels (B, 3, F, H, W), prompts) sampled from a plain copy of the model holding the EMA weights."""
    cfg = state.cfg
    pipe = ema_pipeline(state, pipeline)
    ema_model = pipe.model
    steps = steps or cfg.train.sample_steps
    if state.conditioner.kind == "class":
        labels = list(range(min(cfg.train.num_sample_prompts, ema_model.config.num_classes)))
        return pipe(class_labels=labels, steps=steps, seed=0), [f"class {c}" for c in labels]
    prompts = prompts or sample_prompts(cfg, cfg.train.num_sample_prompts, seed=1234)
    return pipe(prompts, steps=steps, seed=0), prompts


__all__ = ["ema_pipeline", "sample_prompts", "sample_with_ema", "write_sample_grid"]
