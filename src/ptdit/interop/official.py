"""Conversion of the authors' reference weights (Ascend MindSpeed-MM `PTDiTDiffuser`) to a ptdit checkpoint.

Our module names equal the reference's (docs/checkpoints.md#official-key-names), so conversion is: read the state dict
safely, unwrap checkpoint nesting and wrapper prefixes, drop the positional-embedding buffer, map the reference
constructor config to `PTDiTConfig`, check every key and shape, and write `config.json` + `model.safetensors`
atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ptdit.config import PipelineConfig, PTDiTConfig
from ptdit.io import load_state_dict_file, read_json
from ptdit.models.registry import build_model, check_state_dict, save_model

# Reference constructor arguments that only matter to the reference's own code or are fixed by the
# architecture; their values are checked where a wrong value would change the network.
_FIXED = {
    "attention_bias": True,
    "activation_fn": "gelu-approximate",
    "norm_type": "ada_norm_single",
    "norm_elementwise_affine": False,
}
_IGNORED = {
    "sample_size",
    "frame",
    "num_embeds_ada_norm",
    "norm_num_groups",
    "upcast_attention",
    "attention_type",
    "dropout",
    "dtype",
    "model_id",
    "from_pretrained",
    "use_additional_conditions",
    "only_cross_attention",
    "double_self_attention",
    "use_linear_projection",
    "interpolation_scale",
    "max_seq_length",
}
_NESTING_KEYS = ("state_dict", "model", "module", "ema", "model_ema", "predictor", "params")
_BUFFERS = ("pos_embed.pos_embed",)

# How the reference samples the released T2I weights (docs/inference.md#reference-inference-settings): rectified-flow
# Euler, 30 steps, CFG 4.0, 200 T5 tokens, timestep shift, 1024 px, decoded by the Open-Sora-Plan v1.2 CausalVAE.
# Converting the network alone records these; the whole inference config gives a self-contained folder instead
# (`ptdit.interop.official_pipeline`). T5 and the VAE must then be available locally (`--text-encoder`, `--vae`).
RELEASED_PIPELINE = PipelineConfig(
    task="t2i",
    objective="flow",
    timestep_shift=True,
    text_encoder="t5-xxl",
    text_max_length=200,
    vae="opensora-plan-v1.2",
    sampler="flow-euler",
    steps=30,
    cfg_scale=4.0,
    height=1024,
    width=1024,
)


def _parse_value(value: Any) -> Any:
    """Values may be JSON strings (as in the parity fixture's metadata) or plain JSON values."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def reference_config_to_ptdit(
    reference: dict[str, Any], *, window_size: tuple[int, int, int] | None = None
) -> PTDiTConfig:
    """Maps the reference constructor config (e.g. `inference_model_image.json`'s predictor) to PTDiTConfig."""
    ref = {k: _parse_value(v) for k, v in reference.items()}
    if isinstance(ref.get("predictor"), dict):  # a full reference inference config
        ref = {k: _parse_value(v) for k, v in ref["predictor"].items()}
    required = ("num_attention_heads", "attention_head_dim", "in_channels", "num_layers", "caption_channels")
    absent = [k for k in required if k not in ref]
    if absent:
        raise ValueError(f"reference config lacks {absent}; pass the reference model's constructor arguments")
    for key, value in _FIXED.items():
        if key in ref and ref[key] != value:
            raise ValueError(f"reference config has {key}={ref[key]!r}; PT-DiT weights need {key}={value!r}")
    known = (
        set(required)
        | set(_FIXED)
        | _IGNORED
        | {
            "out_channels",
            "cross_attention_dim",
            "patch_size",
            "norm_eps",
            "shift_window",
            "compress_ratios",
            "proxy_compress_ratios",
        }
    )
    unknown = sorted(set(ref) - known)
    if unknown:
        warnings.warn(f"ignoring unknown reference config keys {unknown}", stacklevel=2)
    dim = int(ref["num_attention_heads"]) * int(ref["attention_head_dim"])
    if int(ref.get("cross_attention_dim", dim)) != dim:
        raise ValueError(
            f"cross_attention_dim={ref['cross_attention_dim']} must equal the width {dim} "
            "(docs/architecture.md#attention-modules)"
        )
    window = tuple(window_size or ref.get("compress_ratios", (1, 8, 8)))
    proxy = tuple(ref.get("proxy_compress_ratios", window))
    return PTDiTConfig(
        in_channels=int(ref["in_channels"]),
        out_channels=int(ref.get("out_channels", 8)),
        patch_size=int(ref.get("patch_size", 2)),
        dim=dim,
        depth=int(ref["num_layers"]),
        num_heads=int(ref["num_attention_heads"]),
        context_dim=int(ref["caption_channels"]),
        norm_eps=float(ref.get("norm_eps", 1e-6)),
        use_shifted_window=bool(ref.get("shift_window", True)),
        window_size=window,
        proxy_window=None if proxy == window else proxy,
    )


def _common_module_prefix(keys: list[str]) -> str:
    """Longest run of leading dotted components shared by every key ("module.", "model.predictor.", ...)."""
    parts = [k.split(".")[:-1] for k in keys]
    common: list[str] = []
    for components in zip(*parts, strict=False):
        if len(set(components)) != 1:
            break
        common.append(components[0])
    return "".join(f"{c}." for c in common)


def _tensors_only(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap_state_dict(obj: Any, expected: set[str]) -> dict[str, torch.Tensor]:
    """Finds the state dict inside a checkpoint: one level of dict nesting and/or a common key prefix."""
    if not _tensors_only(obj):
        inner = [obj[k] for k in _NESTING_KEYS if isinstance(obj, dict) and _tensors_only(obj.get(k))]
        if not inner:
            found = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
            raise ValueError(f"no state dict of tensors found in the weights file (top level: {found})")
        obj = inner[0]
    state = {k: v for k, v in obj.items() if k not in _BUFFERS}
    if set(state) & expected:
        return state
    prefix = _common_module_prefix(list(state))
    stripped = {k[len(prefix) :]: v for k, v in state.items()}
    return {k: v for k, v in stripped.items() if k not in _BUFFERS}


def convert_official(
    weights: str | os.PathLike[str],
    config: str | os.PathLike[str] | dict[str, Any] | None,
    out_dir: str | os.PathLike[str],
    *,
    dtype: torch.dtype | None = None,
    **pipeline_kwargs: Any,
) -> Path:
    """Converts reference weights + reference constructor config into a ptdit checkpoint folder.

    Given the reference's whole inference config (with an `ae` section), converts the whole pipeline instead:
    see `ptdit.interop.official_pipeline.convert_official_pipeline`, which takes `pipeline_kwargs`
    (`vae_weights`, `text_encoder`, `vae_weights_key`).

    Args:
        weights: `.safetensors`, or `.pt`/`.pth` (read with weights_only=True).
        config: reference constructor config (JSON file or dict). None: read it from the safetensors metadata.
        out_dir: written atomically; nothing is written if any key or shape is wrong.
        dtype: cast floating tensors (default: keep the file's dtypes, e.g. bf16 for the released weights).

    Returns:
        The checkpoint folder.
    """
    if not Path(weights).is_file():
        raise FileNotFoundError(f"weights file {weights} not found")
    if config is None:
        config = _metadata_config(weights)
    reference = read_json(config, what="reference config") if not isinstance(config, dict) else config
    from ptdit.interop.official_pipeline import convert_official_pipeline, is_full_inference_config

    if not isinstance(config, dict) and is_full_inference_config(config):
        # A whole inference config: convert the whole pipeline (network, CausalVAE, T5).
        return convert_official_pipeline(config, weights, out_dir, dtype=dtype, **pipeline_kwargs)
    model = load_reference_predictor(reference, weights, dtype=dtype)
    return save_model(model, out_dir, pipeline=RELEASED_PIPELINE.to_dict())


def load_reference_predictor(
    reference: dict[str, Any], weights: str | os.PathLike[str], *, dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """The PT-DiT for a reference constructor config with the reference weights, every key, shape and value
    checked. The released weights were trained with the reference's positional embedding, whose non-square grids
    differ from the correct one (docs/decisions.md#positional-embedding-on-non-square-grids): keep it for them."""
    ptdit_config = dataclasses.replace(reference_config_to_ptdit(reference), reference_compat=True)
    model = build_model(ptdit_config, device="meta")
    expected = {k: v.shape for k, v in model.state_dict().items()}
    state = unwrap_state_dict(load_state_dict_file(weights), set(expected))
    check_state_dict(expected, state, str(weights))
    check_finite(state, str(weights))
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Raises ValueError naming the tensors that hold NaN or infinite values (a damaged or diverged file)."""
    bad = sorted(k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"weights file {source} holds NaN or infinite values in {len(bad)} tensor(s) ({shown}); NaN or Inf "
            "weights come from a damaged file or a diverged run: re-download it or use another checkpoint"
        )


def _metadata_config(weights: str | os.PathLike[str]) -> dict[str, Any]:
    from safetensors import safe_open

    if Path(weights).suffix != ".safetensors":
        raise ValueError("pass --config: only .safetensors files can carry the reference config as metadata")
    try:
        with safe_open(str(weights), "pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for every kind of damage
        raise ValueError(f"weights file {weights} is corrupt or truncated ({err}); re-download it") from None
    if "num_attention_heads" not in metadata:
        raise ValueError(f"{weights} carries no reference config in its metadata; pass --config FILE")
    return metadata
