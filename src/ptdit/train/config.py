"""Training configuration: typed sections loaded from a YAML (or JSON) file plus dotted `--set` overrides.

A config file has the sections `model` (a preset name and/or model fields), `pipeline` (task, objective,
encoders, sampling defaults; see `ptdit.config.PipelineConfig`), `data`, `optim` and `train`, and optionally a
`stages` list of per-stage overrides (`ptdit.train.stages`, docs/training.md#stages). Unknown keys raise a
ValueError naming the valid ones.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptdit.config import ModelConfig, PipelineConfig, _coerce, check_fields, check_range, config_from_dict
from ptdit.precision import PRECISIONS
from ptdit.presets.models import get_preset


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """The training data (docs/data.md): a built-in procedural dataset (`shapes`, `moving-shapes`, `turntable`) or
    stored samples (`webdataset`, `parquet`, `image-folder`, `video-folder`) at `path`, and its arguments."""

    dataset: str = "shapes"
    path: str | list[str] | None = None  # stored datasets: a folder, a glob pattern or a list of files
    size: int = 32
    seed: int = 0
    num_workers: int = 0  # DataLoader worker processes (0: load in the training process)
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific, e.g. max_objects, frames, views
    flip: bool = False  # horizontal flips, p = 0.5 per sample and step (docs/decisions.md#flip-with-caches)
    buckets: str = "none"  # none: data.size squares | pixart: aspect-ratio (and frame-count) buckets at data.size
    max_skip_fraction: float = 0.01  # bad stored samples tolerated (docs/data.md#bad-data)

    def __post_init__(self) -> None:
        check_fields(self, "data.")
        check_range("data.", self, ("size",), minimum=1)
        check_range("data.", self, ("num_workers",))
        if self.buckets not in ("none", "pixart"):
            raise ValueError(f"data.buckets must be 'none' or 'pixart', got {self.buckets!r}")
        if not 0 <= self.max_skip_fraction <= 1:
            raise ValueError(f"data.max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}")
        if self.path is not None and not isinstance(self.path, (str, list)):
            raise ValueError(f"data.path must be a path, a glob pattern or a list of paths, got {self.path!r}")


@dataclass(frozen=True, kw_only=True)
class OptimConfig:
    """AdamW with warmup then constant or cosine learning rate
    (defaults: docs/decisions.md#optimiser-and-ema-defaults)."""

    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0  # never applied to norms, biases, embeddings or modulation tables
    warmup_steps: int = 0
    schedule: str = "constant"  # constant | cosine
    min_lr_ratio: float = 0.0  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    grad_accum: int = 1  # micro-batches per optimizer step
    fused: bool = False  # AdamW's fused kernel: faster on CPU, equal to the default to rounding, not bitwise

    def __post_init__(self) -> None:
        check_fields(self, "optim.")
        check_range("optim.", self, ("lr", "eps"), above=True)
        check_range("optim.", self, ("weight_decay", "grad_clip", "warmup_steps"))
        check_range("optim.", self, ("grad_accum",), minimum=1)
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"optim.betas must both be in [0, 1), got {list(self.betas)}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"optim.schedule must be 'constant' or 'cosine', got {self.schedule!r}")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Loop, precision, parallelism, logging and checkpoint settings (the `train` section)."""

    batch_size: int = 32  # global batch: per step, over all processes and accumulation micro-batches
    max_steps: int = 1000
    max_minutes: float | None = None  # stop early when this wall-clock budget is spent
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 (autocast); auto: ptdit.precision.auto_precision
    grad_checkpointing: bool = False
    compile: bool = False
    parallel: str = "ddp"  # ddp | fsdp (used only when launched with several processes)
    ema_decay: float = 0.9999
    ema_warmup: bool = True  # decay_t = min(decay, (1 + step) / (10 + step)) for short runs
    caption_dropout: float = 0.1  # probability of the null caption / label (classifier-free guidance)
    log_every: int = 10
    checkpoint_every: int = 500
    keep_last: int = 3
    sample_every: int = 0  # 0: only at the end
    num_sample_prompts: int = 8
    sample_steps: int | None = None
    # Periodic evaluation of the EMA weights (`ptdit train`; docs/oracle-benchmark.md): the oracle benchmark on
    # the task's suite and shapes-FD, logged to metrics.jsonl. Needs a built-in dataset.
    eval_every: int = 0  # 0: never
    eval_prompts: int = 0  # benchmark prompts, stratified over its categories (0: the whole suite)
    eval_fd_samples: int = 500  # samples for shapes-FD (0: skip it)
    device: str = "cpu"
    num_threads: int | None = None  # torch CPU threads per process (None: torch's default)
    init_from: str | None = None  # a checkpoint folder whose EMA weights start the network (docs/training.md#stages)

    def __post_init__(self) -> None:
        check_fields(self, "train.")
        positive = ("batch_size", "log_every", "keep_last", "checkpoint_every", "num_sample_prompts", "sample_steps")
        check_range("train.", self, (*positive, "num_threads"), minimum=1)
        check_range("train.", self, ("max_steps", "sample_every"))
        check_range("train.", self, ("max_minutes",), above=True)
        check_range("train.", self, ("caption_dropout", "ema_decay"), below=1)
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"train.device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if self.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"train.parallel must be 'ddp' or 'fsdp', got {self.parallel!r}")
        if not 0 <= self.caption_dropout < 1 or not 0 <= self.ema_decay < 1:
            raise ValueError("train.caption_dropout and train.ema_decay must be in [0, 1)")
        if min(self.eval_every, self.eval_prompts, self.eval_fd_samples) < 0 or self.eval_fd_samples == 1:
            raise ValueError(
                f"train.eval_every, eval_prompts must be >= 0 and eval_fd_samples 0 or >= 2, got {self.eval_every}, "
                f"{self.eval_prompts}, {self.eval_fd_samples}"
            )


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    model: dict[str, Any]  # {"preset": NAME, **field overrides} or a full model config dict with "arch"
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)
    # Multi-stage runs (docs/training.md#stages): each stage overrides a few keys for its `steps`; `stage` is the
    # index of the stage a resolved config runs (None: the whole plan, or a run without stages).
    stages: tuple[dict[str, Any], ...] = ()
    stage: int | None = None

    def model_config(self) -> ModelConfig:
        spec = dict(self.model)
        preset = spec.pop("preset", None)
        if preset is not None:
            return get_preset(preset, **spec)
        return config_from_dict(spec)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_SECTIONS: dict[str, type] = {"pipeline": PipelineConfig, "data": DataConfig, "optim": OptimConfig, "train": RunConfig}


def _section(cls: type, data: dict[str, Any], name: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"config section {name!r} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown keys in config section {name!r}: {unknown}; valid keys: {sorted(names)}")
    return cls(**{k: _coerce(v, hints[k], f"{name}.{k}") for k, v in data.items()})


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Validates a config mapping (as loaded from YAML / JSON)."""
    from ptdit.train.stages import check_stages

    unknown = sorted(set(data) - {"model", "stages", "stage", *_SECTIONS})
    if unknown:
        raise ValueError(
            f"unknown config sections {unknown}; valid: ['model', {', '.join(map(repr, _SECTIONS))}, 'stages']"
        )
    if not isinstance(data.get("model"), dict):
        raise ValueError("the config needs a 'model' section mapping (e.g. model: {preset: PT-DiT/Tiny})")
    stages, data = check_stages(data)
    sections = {k: _section(c, data.get(k, {}), k) for k, c in _SECTIONS.items()}
    cfg = TrainConfig(model=dict(data["model"]), **sections, stages=stages, stage=data.get("stage"))
    cfg.model_config()  # validates the model section now, not at the first step
    if cfg.stages and cfg.stage is None:
        from ptdit.train.stages import resolve_stages

        resolve_stages(cfg)  # validates every stage's overrides now, naming the stage
    return cfg


def _parse_value(key: str, text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise ValueError(
            f"--set {key}={text}: the value is not valid YAML (quote text, write lists as [1, 2])"
        ) from None


def _set_stage(stages: list[Any], key: str, name: str, field: str, value: Any) -> None:
    """`--set stages.NAME.KEY=VALUE`: sets KEY (a stage key, e.g. data.path) of the stage named NAME
    (docs/training.md#stages); the stage keys are checked with the stages."""
    names = [str(s.get("name", f"stage-{i + 1}")) if isinstance(s, dict) else "" for i, s in enumerate(stages)]
    if name not in names or not field:
        raise ValueError(
            f"--set {key}: use stages.NAME.KEY=VALUE with NAME one of {names}, e.g. stages.{names[-1]}.data.path=DIR"
        )
    stages[names.index(name)][field] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies `section.key=value` overrides (values parsed as YAML scalars / lists) to a copy of a config mapping."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"--set expects key=value (e.g. optim.lr=1e-4), got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if len(parts) < 2 or not all(parts):
            raise ValueError(f"--set key must be section.key (e.g. train.max_steps), got {key!r}")
        if parts[0] == "stages" and isinstance(data.get("stages"), list):
            _set_stage(data["stages"], key, parts[1], ".".join(parts[2:]), _parse_value(key, value))
            continue
        node = data
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                where = ".".join(parts[: depth + 1])
                raise ValueError(f"--set {key}: {where} is a value, not a section; use --set {where}=VALUE")
        node[parts[-1]] = _parse_value(key, value)
    return data


def _read_yaml(path: Path) -> Any:
    """The parsed file; errors name the file and, for YAML syntax errors, the line and column."""
    import yaml

    if path.is_dir():
        raise ValueError(f"config {path} is a folder; give a config file, e.g. configs/demo-t2i.yaml")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found (see the configs/ folder)")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"config file {path} is not UTF-8 text; give a YAML or JSON config file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"config file {path} is not valid YAML{where}: {problem} (fix that line)") from None


def load_train_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> TrainConfig:
    """Reads a YAML or JSON config file and applies `--set` overrides."""
    path = Path(path)
    data = _read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of sections (model, pipeline, data, optim, train)")
    return train_config_from_dict(apply_overrides(data, overrides or []))
