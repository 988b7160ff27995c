"""Build, count, save and load networks from configs; checkpoints are `config.json` + `model.safetensors`."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptdit.config import ModelConfig, config_from_dict, replace
from ptdit.io import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    atomic_directory,
    check_output_dir,
    load_safetensors,
    read_json,
    write_json,
)
from ptdit.models.dit import DiT
from ptdit.models.pixart import PixArtAlpha
from ptdit.models.ptdit import PTDiT
from ptdit.presets.models import get_preset

MODEL_CLASSES: dict[str, type[nn.Module]] = {"ptdit": PTDiT, "dit": DiT, "pixart": PixArtAlpha}
CHECKPOINT_FORMAT = {"format": "ptdit", "version": 1}


def build_model(
    config: ModelConfig | str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **overrides: Any,
) -> nn.Module:
    """Builds a network from a config or a preset name (with field overrides). device="meta" allocates nothing."""
    if isinstance(config, str):
        config = get_preset(config, **overrides)
    elif overrides:
        config = replace(config, **overrides)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = MODEL_CLASSES[config.arch](config)
    return model.to(dtype) if dtype is not None else model


def count_parameters(model: nn.Module) -> dict[str, int]:
    """{'total': every parameter (fixed tables too), 'trainable': those with requires_grad}."""
    params = list(model.parameters())
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }


def _unwrap(model: nn.Module) -> nn.Module:
    """Strips DDP / compile wrappers so checkpoint keys never carry wrapper prefixes."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        else:
            return model


def checkpoint_config(config: ModelConfig, pipeline: dict[str, Any] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {**CHECKPOINT_FORMAT, "model": config.to_dict()}
    if pipeline is not None:
        data["pipeline"] = pipeline
    return data


def save_model(model: nn.Module, out_dir: str | os.PathLike[str], *, pipeline: dict[str, Any] | None = None) -> Path:
    """Writes `config.json` + `model.safetensors` atomically (a crash never leaves a half-written folder).

    `out_dir` may be new, empty, or an existing ptdit checkpoint (its two files are replaced, anything else in it
    is kept). A file, or a folder holding other things, is refused with FileExistsError: nothing unrelated is
    ever overwritten or deleted.
    """
    from safetensors.torch import save_file

    check_output_dir(out_dir, flag="checkpoint folder", overwrite=True)
    model = _unwrap(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_directory(out_dir) as tmp:
        save_file(state, str(tmp / WEIGHTS_NAME))
        write_json(tmp / CONFIG_NAME, checkpoint_config(model.config, pipeline))
    return Path(out_dir)


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder that `path` names.

    Accepts a checkpoint folder; a training run folder or its `checkpoints/` folder (then the checkpoint that
    `checkpoints/latest` names); or the `latest` pointer file itself.
    """
    given = Path(path)
    if given.is_file() and given.name == "latest":
        return given.parent / given.read_text().strip()
    if not (given / CONFIG_NAME).is_file():
        for pointer in (given / "checkpoints" / "latest", given / "latest"):
            if pointer.is_file():
                return pointer.parent / pointer.read_text().strip()
    return given


def read_checkpoint_config(checkpoint_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed `config.json` of a checkpoint folder (its `model` section validated)."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} not found (expected config.json + model.safetensors)")
    if not (folder / CONFIG_NAME).is_file():
        raise FileNotFoundError(
            f"{folder} holds no config.json, so it is not a ptdit checkpoint (not found: a checkpoint folder, or a "
            "training run folder with checkpoints/latest)"
        )
    data = read_json(folder / CONFIG_NAME, what="checkpoint config")
    if not isinstance(data, dict) or "model" not in data:
        raise ValueError(f"{folder / CONFIG_NAME} has no 'model' section; is it a ptdit checkpoint?")
    config_from_dict(data["model"])  # validates
    return data


def check_model_weights(checkpoint_dir: str | os.PathLike[str], weights: str = WEIGHTS_NAME) -> None:
    """Checks, without reading any tensor data, that `weights` is a readable safetensors file whose keys and
    shapes fit the checkpoint's network. Lets callers that load the network late fail before any other work."""
    from safetensors import safe_open

    folder = Path(checkpoint_dir)
    config = config_from_dict(read_checkpoint_config(folder)["model"])
    path = folder / weights
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {k: torch.empty(handle.get_slice(k).get_shape(), device="meta") for k in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types for every kind of damage
        raise ValueError(f"weights file {path} is corrupt or truncated ({err}); re-download or re-create it") from None
    with torch.device("meta"):
        model = MODEL_CLASSES[config.arch](config)
    check_state_dict({k: v.shape for k, v in model.state_dict().items()}, shapes, str(path))


def check_state_dict(expected: dict[str, torch.Size], given: dict[str, torch.Tensor], source: str) -> None:
    """One ValueError listing every missing, unexpected and mis-shaped key (nothing is loaded on error)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(
        f"{k}: expected {tuple(expected[k])}, got {tuple(given[k].shape)}"
        for k in set(expected) & set(given)
        if tuple(given[k].shape) != tuple(expected[k])
    )
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            shown = ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")
            problems.append(f"{len(items)} {label} [{shown}]")
    if problems:
        raise ValueError(f"state dict from {source} does not fit the model: " + "; ".join(problems))


def load_model(
    checkpoint_dir: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    weights: str = WEIGHTS_NAME,
) -> nn.Module:
    """Rebuilds the network from `config.json` and loads `weights` (default `model.safetensors`), in eval mode."""
    folder = Path(checkpoint_dir)
    config = config_from_dict(read_checkpoint_config(folder)["model"])
    state = load_safetensors(folder / weights, device=device, dtype=dtype)  # read straight into `dtype`
    with torch.device("meta"):
        model = MODEL_CLASSES[config.arch](config)
    check_state_dict({k: v.shape for k, v in model.state_dict().items()}, state, str(folder / weights))
    model.load_state_dict(state, strict=True, assign=True)
    model = model.to(device)
    return (model.to(dtype) if dtype is not None else model).eval()
