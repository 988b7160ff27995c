"""Conversion of the authors' whole inference config (`inference_model_image.json`) into one pipeline folder.

The reference configures its pipeline in one JSON file with sections `predictor` (the PT-DiT constructor),
`diffusion` (the rflow sampler), `ae` (the Open-Sora-Plan v1.2 CausalVAE), `text_encoder` and `tokenizer`
(T5 and its tokenizer), `pipeline_config` (`input_size` = [frames, height, width]) and top-level settings such
as `model_max_length` and `fps` (docs/inference.md#the-released-pipeline). `convert_official_pipeline` reads all
of it and writes a folder that `ptdit sample --checkpoint DIR` and `GenerationPipeline.from_checkpoint(DIR)` use
with no other setting:

    DIR/config.json          model config (reference_compat on) + pipeline settings (sampler, steps, CFG, size)
    DIR/model.safetensors    the PT-DiT weights
    DIR/vae/                 the CausalVAE (config.json + model.safetensors), loadable by `ptdit.encoders.load_vae`
    DIR/text_encoder/        the T5 encoder and tokenizer (hard links where possible, else copies)

Relative paths in the config resolve against the config file's folder. A converted pipeline reproduces the
reference's behaviour, its positional embedding on non-square grids included (docs/decisions.md).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from ptdit.config import PipelineConfig
from ptdit.interop.official import check_finite, load_reference_predictor
from ptdit.io import CONFIG_NAME, WEIGHTS_NAME, atomic_directory, read_json, write_json
from ptdit.models.registry import checkpoint_config

REQUIRED_SECTIONS = ("predictor", "diffusion", "ae", "text_encoder", "tokenizer")
VAE_FOLDER, TEXT_ENCODER_FOLDER = "vae", "text_encoder"
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class ReferenceInferenceConfig:
    """The sections of a reference inference config, with its folder for resolving relative paths."""

    data: dict[str, Any]
    folder: Path

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> ReferenceInferenceConfig:
        path = Path(path)
        data = read_json(path, what="reference inference config")
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a JSON object; expected the reference's inference_model_image.json")
        missing = [s for s in REQUIRED_SECTIONS if not isinstance(data.get(s), dict)]
        if missing:
            raise ValueError(
                f"{path} lacks the section(s) {missing}; pass the reference's whole inference config "
                f"(inference_model_image.json with {', '.join(REQUIRED_SECTIONS)})"
            )
        return cls(data, path.resolve().parent)

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.data.get(name) or {})

    def resolve(self, value: str | None) -> Path | None:
        """A path from the config, relative to the config's folder; None when unset."""
        if not value:
            return None
        path = Path(os.path.expanduser(value))
        return path if path.is_absolute() else self.folder / path


def pipeline_settings(ref: ReferenceInferenceConfig, window: tuple[int, int, int]) -> PipelineConfig:
    """The reference's sampling settings as ptdit pipeline settings."""
    diffusion = ref.section("diffusion")
    if diffusion.get("model_id", "rflow") != "rflow":
        raise ValueError(f"diffusion.model_id={diffusion['model_id']!r} is not supported; the release uses 'rflow'")
    size = ref.section("pipeline_config").get("input_size") or [1, 1024, 1024]
    if len(size) != 3:
        raise ValueError(f"pipeline_config.input_size must be [frames, height, width], got {size}")
    return PipelineConfig(
        task="t2i",  # the released pipeline: text to image (more input frames sample a clip, as the reference would)
        objective="flow",
        timestep_shift=bool(diffusion.get("use_timestep_transform", True)),
        text_encoder=TEXT_ENCODER_FOLDER,
        text_max_length=int(ref.data.get("model_max_length", 200)),
        vae=VAE_FOLDER,
        sampler="flow-euler",
        steps=int(diffusion.get("num_inference_steps", 30)),
        cfg_scale=float(diffusion.get("cfg_scale", 4.0)),
        negative_prompt="",
        frames=int(size[0]),
        height=int(size[1]),
        width=int(size[2]),
        fps=int(ref.data.get("fps", 8)),
        # The reference applies its compression ratios at every size (sides must be multiples of 128 px for the
        # released (1, 8, 8)), rather than the paper's 8 x 8 window grid; other sizes are padded here
        # (docs/architecture.md#padding-and-masking), which the reference cannot run.
        window_size=window,
    )


def _vae_weights(ref: ReferenceInferenceConfig, vae_weights: str | os.PathLike[str] | None) -> Path:
    """The VAE weights: --vae-weights, else the `ae` section's `from_pretrained` (a file or a folder)."""
    from ptdit.encoders.causalvae.loading import find_weights_file

    given = Path(vae_weights) if vae_weights else ref.resolve(ref.section("ae").get("from_pretrained"))
    if given is None:
        raise FileNotFoundError(
            "the config's ae.from_pretrained is empty: pass the CausalVAE weights with --vae-weights"
        )
    if not given.exists():
        raise FileNotFoundError(f"CausalVAE weights {given} not found: pass the VAE checkpoint with --vae-weights")
    return find_weights_file(given) if given.is_dir() else given


def _text_encoder_source(ref: ReferenceInferenceConfig, text_encoder: str | os.PathLike[str] | None) -> Path:
    """The local T5 folder: --text-encoder, else the `text_encoder` section's `from_pretrained`."""
    given = Path(text_encoder) if text_encoder else ref.resolve(ref.section("text_encoder").get("from_pretrained"))
    if given is None or not given.is_dir():
        where = (
            f"{given} is not a folder" if given is not None else "the config's text_encoder.from_pretrained is empty"
        )
        raise FileNotFoundError(
            f"T5 text encoder not found ({where}): download the release's text encoder and tokenizer "
            "(alibaba-pai/EasyAnimateV2-XL-2-512x512, text_encoder/ and tokenizer/) and pass the folder with "
            "--text-encoder DIR"
        )
    tokenizer = ref.resolve(ref.section("tokenizer").get("from_pretrained"))
    if not text_encoder and tokenizer is not None and tokenizer.resolve() != given.resolve():
        raise ValueError(
            f"the config's tokenizer ({tokenizer}) and text encoder ({given}) are different folders; pass one "
            "folder holding both (or text_encoder/ and tokenizer/ subfolders) with --text-encoder DIR"
        )
    return given


def _check_text_width(folder: Path, context_dim: int) -> None:
    """The T5's width (d_model in its config.json) must be the predictor's caption_channels."""
    for config in (folder / "config.json", folder / TEXT_ENCODER_FOLDER / "config.json"):
        if config.is_file():
            width = read_json(config, what="text encoder config").get("d_model")
            if width is not None and int(width) != context_dim:
                raise ValueError(
                    f"the text encoder in {folder} is {width} wide but the predictor's caption_channels is "
                    f"{context_dim}; pass the T5 the weights were trained with (--text-encoder DIR)"
                )
            return
    raise FileNotFoundError(
        f"{folder} holds no text encoder config.json (itself or in text_encoder/); pass a T5 folder with --text-encoder"
    )


def _link_tree(source: Path, target: Path) -> None:
    """Copies a folder, hard-linking files where the file system allows (a T5-XXL is tens of GB)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def convert_official_pipeline(
    config: str | os.PathLike[str],
    weights: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    vae_weights: str | os.PathLike[str] | None = None,
    text_encoder: str | os.PathLike[str] | None = None,
    dtype: torch.dtype | None = None,
    vae_weights_key: str | None = "auto",
) -> Path:
    """Converts the reference's inference config, predictor and VAE weights and T5 into one pipeline folder.

    Args:
        config: the reference inference config (`inference_model_image.json`).
        weights: the predictor weights (`.safetensors`, or `.pt` / `.ckpt` read with weights_only=True).
        out_dir: the pipeline folder, written atomically; nothing is written when anything is wrong.
        vae_weights: the CausalVAE weights (default: the `ae` section's `from_pretrained`).
        text_encoder: a folder with T5 and its tokenizer (default: the `text_encoder` section's `from_pretrained`).
        dtype: cast the network and VAE weights (default: the predictor file's dtype; VAE in float32).
        vae_weights_key: where a VAE pickle keeps its state dict (see `ptdit.encoders.causalvae.load_causalvae`).

    Returns:
        The pipeline folder.
    """
    from ptdit.encoders.causalvae.config import CausalVAEConfig
    from ptdit.encoders.causalvae.loading import load_causalvae_model, save_causalvae_model

    ref = ReferenceInferenceConfig.read(config)
    vae_config = CausalVAEConfig.from_dict(ref.section("ae"))
    vae_file, t5_folder = _vae_weights(ref, vae_weights), _text_encoder_source(ref, text_encoder)
    model = load_reference_predictor(ref.section("predictor"), weights, dtype=dtype)
    _check_text_width(t5_folder, model.config.context_dim)
    pipeline = pipeline_settings(ref, model.config.window_size)
    if vae_config.latent_channels != model.config.in_channels:
        raise ValueError(
            f"the VAE gives {vae_config.latent_channels} latent channels but the predictor takes "
            f"{model.config.in_channels}; the ae and predictor sections do not belong together"
        )
    vae = load_causalvae_model(vae_config, vae_file, weights_key=vae_weights_key, dtype=dtype or torch.float32)
    check_finite(vae.state_dict(), str(vae_file))
    from safetensors.torch import save_file

    with atomic_directory(out_dir) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / WEIGHTS_NAME))
        write_json(tmp / CONFIG_NAME, checkpoint_config(model.config, pipeline.to_dict()))
        save_causalvae_model(vae, tmp / VAE_FOLDER)
        _link_tree(t5_folder, tmp / TEXT_ENCODER_FOLDER)
    return Path(out_dir)


def is_full_inference_config(path: str | os.PathLike[str]) -> bool:
    """Whether a JSON file is (meant as) a whole reference inference config: it has any section beside
    `predictor`, rather than only the predictor's constructor arguments. A whole config that lacks a section is
    then refused by name."""
    data = read_json(path, what="reference config")
    sections = (*REQUIRED_SECTIONS[1:], "pipeline_config")
    return isinstance(data, dict) and any(isinstance(data.get(s), dict) for s in sections)


__all__ = [
    "ReferenceInferenceConfig",
    "convert_official_pipeline",
    "is_full_inference_config",
    "pipeline_settings",
]
