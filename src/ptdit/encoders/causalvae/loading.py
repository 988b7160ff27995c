"""Reading CausalVAE weights safely: checkpoint files, their nesting, key checks, loading straight into a dtype.

Released weights come as a training checkpoint (`checkpoint.ckpt`, a torch pickle whose state dict sits under
a key) and ours as `model.safetensors`. Pickles are read with `torch.load(weights_only=True)` only, so a file
that holds arbitrary Python objects is refused rather than executed. The model is built on the meta device and
the tensors are assigned already converted, so a bf16 load never materialises a float32 copy of the model.
"""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ptdit.encoders.causalvae.config import CausalVAEConfig
from ptdit.encoders.causalvae.model import CausalVAEModel
from ptdit.encoders.hub import MissingWeightsError

__all__ = ["WEIGHT_FILE_NAMES", "find_weights_file", "load_causalvae_model", "save_causalvae_model"]

# Looked for in this order; any other single file with a weight suffix is accepted too.
WEIGHT_FILE_NAMES = ("model.safetensors", "diffusion_pytorch_model.safetensors", "checkpoint.ckpt")
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth")
# Default nesting order, that of MindSpeed-MM's `load_checkpoint` (the Qihoo-T2X reference pipeline), then EMA.
NESTING_KEYS = ("model", "state_dict", "ema_state_dict")
_MAX_LISTED = 8


def find_weights_file(folder: str | os.PathLike[str]) -> Path:
    """The weights file of a model folder: a known name, else the only file with a weight suffix.

    Raises:
        MissingWeightsError: if the folder has no weights file.
        ValueError: if several candidates exist and none has a known name.
    """
    folder = Path(folder)
    for name in WEIGHT_FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    candidates = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not candidates:
        suffixes = ", ".join(f"*{s}" for s in WEIGHT_SUFFIXES)
        raise MissingWeightsError(f"{str(folder)!r} holds no CausalVAE weights (looked for {suffixes})")
    if len(candidates) > 1:
        names = [p.name for p in candidates]
        raise ValueError(f"{str(folder)!r} holds several weight files {names}; pass the path of the one to load")
    return candidates[0]


def load_causalvae_model(
    config: CausalVAEConfig,
    weights: str | os.PathLike[str],
    *,
    weights_key: str | None = "auto",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> CausalVAEModel:
    """Builds the network for `config` and loads `weights` into it, in `dtype` on `device`, in eval mode.

    Args:
        config: the architecture.
        weights: a `.safetensors` file (flat), or a `.ckpt` / `.pt` / `.pth` torch pickle.
        weights_key: where a pickle keeps the state dict. "auto" (default) takes the first of `model`,
            `state_dict`, `ema_state_dict` present, else the top level. The order is MindSpeed-MM's loader,
            i.e. what the Qihoo-T2X reference pipeline ran; Open-Sora-Plan's own loader would take a non-empty
            `ema_state_dict` first: pass "ema_state_dict" to get its choice. None means the top level.
            A nested `gen_model` dict (Open-Sora-Plan trainer layout) is unwrapped in every case.
        dtype: floating-point dtype of the weights (the file's tensors are converted one by one).
        device: where the weights go.

    Returns:
        The model, with gradients disabled.

    Raises:
        ValueError: for a pickle with arbitrary Python objects, a missing `weights_key`, or weights whose
            names or shapes do not match the config (one line listing missing, unexpected and mis-shaped keys).
    """
    path = Path(weights)
    with torch.device("meta"):
        model = CausalVAEModel(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        if weights_key not in ("auto", None):
            raise ValueError(f"weights_key={weights_key!r} given, but safetensors files are flat: {str(path)!r}")
        with safe_open(str(path), framework="pt") as handle:
            names = _model_names(list(handle.keys()), set(expected))
            shapes = {name: tuple(handle.get_slice(key).get_shape()) for key, name in names.items()}
            _check_weights(path, shapes, expected)
            state = {name: _convert(handle.get_tensor(key), dtype, device) for key, name in names.items()}
    else:
        stored = _select_state_dict(_load_pickle(path), weights_key, path)
        names = _model_names(list(stored), set(expected))
        _check_weights(path, {name: _shape(stored[key]) for key, name in names.items()}, expected)
        state = {name: _convert(stored[key], dtype, device) for key, name in names.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def save_causalvae_model(model: CausalVAEModel, folder: str | os.PathLike[str]) -> Path:
    """Writes `config.json` + `model.safetensors` (the folder `load_vae` reads) and returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n", encoding="utf-8")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


# ------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------


def _load_pickle(path: Path) -> Any:
    """torch.load restricted to tensors and plain containers, memory-mapped when the format allows."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # files in the legacy (pre-zip) format cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{str(path)!r} holds Python objects besides tensors, and ptdit does not unpickle arbitrary objects "
            f"(torch.load weights_only=True said: {first_line}). If you trust the file, re-save only its state "
            "dict (e.g. with safetensors.torch.save_file) and load that"
        ) from exc


def _select_state_dict(obj: Any, weights_key: str | None, path: Path) -> Mapping[str, Any]:
    """Unwraps the state dict from a loaded checkpoint (see `load_causalvae_model` for the rule)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{str(path)!r} holds a {type(obj).__name__}, not a dict of tensors")
    if weights_key == "auto":
        nested = [k for k in NESTING_KEYS if isinstance(obj.get(k), Mapping) and len(obj[k]) > 0]
        state = obj[nested[0]] if nested else obj
    elif weights_key is None:
        state = obj
    elif isinstance(obj.get(weights_key), Mapping):
        state = obj[weights_key]
    else:
        raise ValueError(f"{str(path)!r} has no {weights_key!r} dict; its top-level keys are {_listed(list(obj))}")
    return state["gen_model"] if isinstance(state.get("gen_model"), Mapping) else state


def _model_names(keys: list[str], expected: set[str] | None = None) -> dict[str, str]:
    """Checkpoint key -> model key: a prefix shared by every key (a DDP `module.`, or a wrapper's `param.` or
    `model.`) removed when the keys do not already match, training-loss modules dropped."""
    prefix = ""
    if keys and not (expected and set(keys) & expected):
        first = keys[0].split(".")[0] + "."
        if all(k.startswith(first) for k in keys):
            prefix = first
    # Open-Sora-Plan checkpoints may carry the LPIPS / discriminator of the training loss under `loss.`; its
    # own loader tolerates exactly those extra keys, and so do we.
    return {k: k[len(prefix) :] for k in keys if not k[len(prefix) :].startswith("loss.")}


def _shape(value: Any) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__


def _check_weights(path: Path, found: dict[str, tuple[int, ...] | str], expected: dict[str, tuple[int, ...]]) -> None:
    """Raises one ValueError line naming every missing, unexpected and mis-shaped key (the first few of each)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [f"{k} {found[k]} vs {expected[k]}" for k in expected if k in found and found[k] != expected[k]]
    if missing or unexpected or misshaped:
        raise ValueError(
            f"{str(path)!r} does not match the CausalVAE config: {len(missing)} missing {_listed(missing)}, "
            f"{len(unexpected)} unexpected {_listed(unexpected)}, {len(misshaped)} mis-shaped (file vs model) "
            f"{_listed(misshaped)}; check the config, or the nesting (weights_key)"
        )


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f", ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def _convert(tensor: Tensor, dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """One stored tensor in the target dtype (floating point only) and device."""
    return tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else tensor.dtype)
