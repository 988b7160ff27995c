"""Typed, self-validating model configurations and their JSON form (no presets here: see `ptdit.presets`).

A checkpoint folder holds `config.json`:
    {"format": "ptdit", "version": 1, "model": {"arch": "ptdit", ...}, "pipeline": {...} or absent}
next to `model.safetensors`. The model section alone rebuilds the network.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

from ptdit.recipe.objective import OBJECTIVES
from ptdit.recipe.tasks import TASKS

Size3 = tuple[int, int, int]

CONDITIONINGS = ("text", "class", "none")
PROXY_MODES = ("mean", "first", "random")
INJECTIONS = ("cross_attention", "interpolate", "linear")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {choices}")


def _check_size3(name: str, value: Any) -> None:
    if not (isinstance(value, tuple) and len(value) == 3 and all(isinstance(v, int) and v >= 1 for v in value)):
        raise ValueError(f"{name} must be three positive integers (frames, rows, cols), got {value!r}")


# ------------------------------------------------------------------------------------------------------------------
# Field checks shared by every config dataclass: values are checked where they enter (Python, YAML, JSON, --set)
# ------------------------------------------------------------------------------------------------------------------


@functools.cache
def _field_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _union_args(hint: Any) -> tuple[Any, ...] | None:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else None


def _fits(value: Any, hint: Any) -> bool:
    """Whether `value` has the type `hint` names (ints are not bools, numbers are finite)."""
    if hint is Any:
        return True
    if (options := _union_args(hint)) is not None:
        return any(_fits(value, option) for option in options)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(v, args[0]) for v in value)
        return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args, strict=True))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def _expected(hint: Any) -> str:
    if (options := _union_args(hint)) is not None:
        return " or ".join(_expected(option) for option in options)
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a finite number", str: "text"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_expected(args[0])} values"
        return f"a list of {len(args)} values ({', '.join(_expected(a) for a in args)})"
    if typing.get_origin(hint) is dict or hint is dict:
        return "a mapping"
    return str(hint)


def check_fields(config: Any, prefix: str = "") -> None:
    """Raises ValueError naming the first field of a config dataclass whose value does not have its declared type:
    integers are integers (not true/false or 2.5), numbers are finite (no NaN or infinity), flags are true/false,
    text is text, and fixed-length lists have the right length."""
    hints = _field_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if not _fits(value, hints[field.name]):
            raise ValueError(f"{prefix}{field.name} must be {_expected(hints[field.name])}, got {value!r}")


def check_range(
    prefix: str, config: Any, names: tuple[str, ...], *, minimum: float = 0, above: bool = False, below: float = 0
) -> None:
    """Raises ValueError for the first of `names` (None values are skipped) that is < `minimum` (<= with
    `above`), or >= `below` when `below` is given."""
    for name in names:
        value = getattr(config, name)
        if value is None:
            continue
        if value < minimum or (above and value == minimum):
            bound = f"> {minimum}" if above else f">= {minimum}"
            raise ValueError(f"{prefix}{name} must be {bound}, got {value}")
        if below and value >= below:
            raise ValueError(f"{prefix}{name} must be in [{minimum}, {below}), got {value}")


@dataclass(frozen=True, kw_only=True)
class _ModelConfig:
    """Fields and checks shared by every architecture."""

    arch: ClassVar[str]

    in_channels: int = 4
    out_channels: int = 8  # the released layout: only the first in_channels are the prediction
    patch_size: int = 2
    dim: int = 1152
    depth: int = 28
    num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("in_channels", "out_channels", "patch_size", "dim", "depth", "num_heads"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.out_channels < self.in_channels:
            raise ValueError(f"out_channels={self.out_channels} must be >= in_channels={self.in_channels}")
        check_range("", self, ("mlp_ratio", "norm_eps"), above=True)

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def mlp_dim(self) -> int:
        return int(self.dim * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, **dataclasses.asdict(self)}


@dataclass(frozen=True, kw_only=True)
class PTDiTConfig(_ModelConfig):
    """PT-DiT (docs/architecture.md). Defaults are the released XL text-to-image configuration.

    Table 2 ablation switches: `proxy_mode`, `injection`, `use_global_interaction`, `use_window_attention`,
    `use_shifted_window`, `window_size` (compression ratio) and `proxy_window` (several proxies per window).
    """

    arch: ClassVar[str] = "ptdit"

    conditioning: str = "text"  # "text" (T5 captions), "class" (S-Class ablation model) or "none"
    context_dim: int = 4096  # caption channels (T5-XXL)
    num_classes: int = 1000  # class conditioning only; index num_classes is the null class
    class_dropout_prob: float = 0.1
    window_size: Size3 = (1, 8, 8)  # (p_f, p_h, p_w); default for calls that pass no window_size
    proxy_window: Size3 | None = None  # None = one proxy per window
    proxy_mode: str = "mean"  # "mean" | "first" | "random"
    injection: str = "cross_attention"  # "cross_attention" | "interpolate" | "linear"
    injection_grid: Size3 | None = None  # token grid the "linear" injection is built for
    use_global_interaction: bool = True  # GIIM
    use_window_attention: bool = True  # TCM window attention
    use_shifted_window: bool = True  # TCM shifted-window attention
    pe_interpolation_scale: float = 1.0
    reference_compat: bool = False  # reproduce reference quirks 3 and 4 (non-square PE, strided proxies)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dim % 16:
            raise ValueError(f"dim={self.dim} must be divisible by 16 for the 3D sin-cos positional embedding")
        _check_choice("conditioning", self.conditioning, CONDITIONINGS)
        _check_choice("proxy_mode", self.proxy_mode, PROXY_MODES)
        _check_choice("injection", self.injection, INJECTIONS)
        _check_size3("window_size", self.window_size)
        if self.proxy_window is not None:
            _check_size3("proxy_window", self.proxy_window)
            if any(w % q for w, q in zip(self.window_size, self.proxy_window, strict=True)):
                raise ValueError(f"proxy_window {self.proxy_window} must divide window_size {self.window_size}")
        if self.injection == "linear":
            if self.injection_grid is None:
                raise ValueError("injection='linear' maps M proxies to N tokens and needs injection_grid (F, Y, X)")
            _check_size3("injection_grid", self.injection_grid)
            if any(g % w for g, w in zip(self.injection_grid, self.window_size, strict=True)):
                raise ValueError(f"injection_grid {self.injection_grid} is not tiled by window_size {self.window_size}")
        if (
            self.reference_compat
            and self.injection == "interpolate"
            and self.proxy_window not in (None, self.window_size)
        ):
            raise ValueError("reference_compat strided proxies have no grid order; use injection='cross_attention'")
        if self.conditioning == "class" and self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 for class conditioning, got {self.num_classes}")
        if not 0.0 <= self.class_dropout_prob < 1.0:
            raise ValueError(f"class_dropout_prob must be in [0, 1), got {self.class_dropout_prob}")
        check_range("", self, ("pe_interpolation_scale",), above=True)


@dataclass(frozen=True, kw_only=True)
class DiTConfig(_ModelConfig):
    """DiT baseline (Peebles & Xie 2023): global self-attention, adaLN-Zero, class labels, learned sigma."""

    arch: ClassVar[str] = "dit"

    in_channels: int = 4
    out_channels: int = 8  # learn_sigma=True doubles the channels
    num_classes: int = 1000
    class_dropout_prob: float = 0.1
    input_size: int = 32  # latent side of the stored fixed positional table (DiT checkpoints carry it)

    @property
    def conditioning(self) -> str:
        return "class"


@dataclass(frozen=True, kw_only=True)
class PixArtConfig(_ModelConfig):
    """PixArt-alpha-style baseline: global self-attention, text cross-attention, adaLN-single."""

    arch: ClassVar[str] = "pixart"

    context_dim: int = 4096

    @property
    def conditioning(self) -> str:
        return "text"


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    """What a checkpoint needs to generate: task, objective, encoders and sampling defaults.

    Stored as the `pipeline` section of a checkpoint's config.json, so `ptdit sample` needs no other flags.
    `text_encoder` and `vae` are local folders, hub ids or aliases (see `ptdit.encoders`); "identity" is the
    weight-free pixel-space autoencoder.
    """

    task: str = "t2i"  # t2i | t2v | t2mv (views as frames) | class | uncond
    objective: str = "flow"  # rectified flow (reference) | flow-x0 (x0-prediction) | vp-v | vp-eps
    beta_schedule: str = "linear"  # VP objectives only: linear | cosine
    timestep_shift: bool = True  # the reference's resolution/frame-dependent shift, in training and sampling
    shift_scale: float = 1.0
    text_encoder: str | None = "t5"
    text_max_length: int = 120  # 120 for training (paper); 200 for the released weights
    text_context: int = 0  # built-in word encoder only: neighbours on either side each token carries
    vae: str = "identity"
    sampler: str = "flow-euler"
    steps: int = 30
    cfg_scale: float = 4.0
    negative_prompt: str = ""
    height: int = 1024  # default pixel size
    width: int = 1024
    frames: int = 1  # pixel frames (views for t2mv)
    fps: int = 8
    window_size: Size3 | None = None  # None: the paper's rule (64 windows for images, p_f = 4 for video)
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_fields(self, "pipeline.")
        check_range("pipeline.", self, ("shift_scale",), above=True)
        _check_choice("task", self.task, tuple(TASKS))
        _check_choice("objective", self.objective, OBJECTIVES)
        _check_choice("beta_schedule", self.beta_schedule, ("linear", "cosine"))
        for name in ("text_max_length", "steps", "height", "width", "frames", "fps"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"pipeline.{name} must be a positive integer, got {value!r}")
        if self.window_size is not None:
            _check_size3("window_size", self.window_size)
        if self.text_context < 0:
            raise ValueError(f"pipeline.text_context must be >= 0, got {self.text_context!r}")
        if TASKS[self.task].conditioning == "text" and not self.text_encoder:
            raise ValueError(f"task {self.task!r} needs a text_encoder (a local folder, hub id or alias)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown pipeline config keys {unknown}; valid keys: {sorted(names)}")
        return cls(**{k: _coerce(v, hints[k], k) for k, v in data.items()})


ModelConfig = PTDiTConfig | DiTConfig | PixArtConfig
CONFIG_CLASSES: dict[str, type[_ModelConfig]] = {c.arch: c for c in (PTDiTConfig, DiTConfig, PixArtConfig)}


def _coerce(value: Any, hint: Any, name: str = "value") -> Any:
    """JSON / YAML value -> field type: lists become tuples for tuple fields, numbers written as strings (YAML
    reads `2e-3` as a string) become numbers. A value that does not fit raises ValueError naming the field."""
    if isinstance(value, list) and _is_tuple_hint(hint):
        return tuple(value)
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    if value is None or isinstance(value, bool):
        return value
    if float in args and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if int in args and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
    return value


def _is_tuple_hint(hint: Any) -> bool:
    if typing.get_origin(hint) is tuple:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_tuple_hint(a) for a in typing.get_args(hint))
    return False


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Builds a model config from its dict form; unknown keys or architectures raise ValueError naming them."""
    data = dict(data)
    arch = data.pop("arch", None)
    if arch not in CONFIG_CLASSES:
        raise ValueError(f"model config has arch={arch!r}; expected one of {sorted(CONFIG_CLASSES)}")
    cls = CONFIG_CLASSES[arch]
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {arch} config keys {unknown}; valid keys: {sorted(names)}")
    return cls(**{k: _coerce(v, hints[k], k) for k, v in data.items()})  # type: ignore[return-value]


def replace(config: ModelConfig, **overrides: Any) -> ModelConfig:
    """`dataclasses.replace` that also accepts lists for tuple fields and names unknown keys."""
    merged = {**config.to_dict(), **overrides}
    return config_from_dict(merged)


__all__ = [
    "CONFIG_CLASSES",
    "DiTConfig",
    "ModelConfig",
    "PTDiTConfig",
    "PipelineConfig",
    "PixArtConfig",
    "config_from_dict",
    "replace",
]
