"""Frechet distances in the feature space of any transformers image encoder (CLIP vision, DINOv2, ...).

Inception-FID is known to be biased towards ImageNet classes (Kynkaanniemi et al. 2023; Stein et al. 2023 use
DINOv2 instead), so `--features hf:NAME_OR_DIR` computes the same Frechet distance on the pooled output of a
transformers vision model: CLIP checkpoints load their vision tower (`CLIPVisionModel`; the features are the
post-layernorm class token, before the projection), anything else loads with `AutoModel` and must return a
`pooler_output` (DINOv2: the layernormed class token). Images are prepared by the model's own
`AutoImageProcessor`, whose settings become part of the protocol. Models come from a local folder or the
Hugging Face cache (`ptdit.encoders.hub.resolve_model`); nothing is downloaded offline.

Shape legend: B batch, H / W rows / columns, D feature size.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ptdit.encoders.hub import ResolvedModel, missing_weights_error, resolve_model
from ptdit.eval.features import FeatureExtractor
from ptdit.optional import require

CLIP_MODEL_TYPES = ("clip", "clip_vision_model")
PROCESSOR_KEYS = (
    "size",
    "crop_size",
    "resample",
    "do_center_crop",
    "do_rescale",
    "do_normalize",
    "image_mean",
    "image_std",
)


@contextlib.contextmanager
def _quiet_loading(transformers: Any) -> Iterator[None]:
    """Silences transformers' loading report and progress bar (callers check missing keys themselves)."""
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()


def load_pretrained(resolved: ResolvedModel, class_name: str, *, what: str) -> Any:
    """`transformers.<class_name>.from_pretrained` on a resolved model, in eval mode.

    Raises:
        MissingWeightsError: files missing or unreadable.
        ValueError: the checkpoint lacks weights the class needs (they would be random).
    """
    transformers = require("transformers", "hub", purpose=f"loading the {what}")
    try:
        with _quiet_loading(transformers):
            model, loading = getattr(transformers, class_name).from_pretrained(
                resolved.source, output_loading_info=True, **resolved.from_pretrained_kwargs()
            )
    except OSError as exc:  # transformers reports missing or unreadable files as OSError
        raise missing_weights_error(resolved, what, exc) from exc
    missing = loading.get("missing_keys") or []
    if missing:
        raise ValueError(f"{what} {resolved.source!r} lacks {len(missing)} weights of {class_name}, e.g. {missing[0]}")
    return model.eval()


def load_image_processor(resolved: ResolvedModel, *, what: str) -> Any:
    """The model's `AutoImageProcessor` (its `preprocessor_config.json`)."""
    transformers = require("transformers", "hub", purpose=f"loading the {what}")
    try:
        return transformers.AutoImageProcessor.from_pretrained(resolved.source, **resolved.from_pretrained_kwargs())
    except OSError as exc:
        raise missing_weights_error(resolved, f"{what} image processor", exc) from exc


def describe_processor(processor: Any) -> str:
    """The processor's class and the settings that change pixels, as one canonical string."""
    settings = {k: v for k, v in processor.to_dict().items() if k in PROCESSOR_KEYS}
    return f"{type(processor).__name__} {json.dumps(settings, sort_keys=True, default=str)}"


def processor_batch(processor: Any, images: np.ndarray, device: torch.device) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> the processor's (B, 3, H', W') pixel values on `device`."""
    return processor(images=list(images), return_tensors="pt")["pixel_values"].to(device)


def load_hf_features(name: str, *, device: str | torch.device = "cpu") -> FeatureExtractor:
    """Pooled-output features of a transformers image encoder.

    Args:
        name: a local model folder or a hub id in the local cache.
        device: where the model runs.

    Raises:
        MissingWeightsError: the model or its image processor is not on this machine.
        ValueError: the model has no pooled output.
    """
    from ptdit.eval.weights import state_dict_hash

    device = torch.device(device)
    what = "image encoder"
    resolved = resolve_model(name, what=what)
    model_type = resolved.config.get("model_type", "unknown")
    class_name = "CLIPVisionModel" if model_type in CLIP_MODEL_TYPES else "AutoModel"
    model = load_pretrained(resolved, class_name, what=what).to(device)
    processor = load_image_processor(resolved, what=what)

    def network(pixels: torch.Tensor) -> torch.Tensor:
        pooled = model(pixel_values=pixels).pooler_output
        if pooled is None:
            raise ValueError(f"{name!r} ({type(model).__name__}) has no pooled output to use as features")
        return pooled

    info = {
        "network": f"hf:{model_type}",
        "layer": "pooler_output",
        "weights_hash": state_dict_hash(model),
        "feature_dim": int(model.config.hidden_size),
        "preprocess": describe_processor(processor),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }
    details = {"model": name, "class": type(model).__name__}
    return FeatureExtractor(
        "image", network, lambda batch: processor_batch(processor, batch, device), info, details, device
    )


__all__ = ["describe_processor", "load_hf_features", "load_image_processor", "load_pretrained", "processor_batch"]
