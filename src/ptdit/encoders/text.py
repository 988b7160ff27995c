"""Text encoders: token-level caption features and their mask for the text cross-attention.

PT-DiT conditions on T5 encoder features (docs/inference.md#text-encoding). The released pipeline cleans each prompt
with the PixArt/DeepFloyd caption cleaner (twice; `clean_caption`, see `ptdit.encoders.cleaning`), only
lower-cases and strips the negative prompt (`normalize_negative_prompt`), tokenizes with padding to
`max_length` (120 for training, 200 for the released weights) and truncation, and runs T5 in float32 with the
attention mask, which is also the cross-attention key mask. The negative prompt "" becomes the EOS token plus
padding. Its tokenizer and encoder are the `tokenizer/` and `text_encoder/` folders of
alibaba-pai/EasyAnimateV2-XL-2-512x512; `load_text_encoder` accepts such a pipeline folder directly, and
`load_released_text_encoder` applies the released settings. A CLIP text encoder (token-level
`last_hidden_state`, 77 tokens) is offered through the same interface for small experiments.

transformers (and ftfy / beautifulsoup4 for caption cleaning) come with the `[hub]` extra and are imported
lazily.

Shape legend: B batch (prompts), S text tokens (= max_length), C text-encoder width.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ptdit.encoders.cleaning import clean_caption, normalize_negative_prompt, require_cleaning_dependencies
from ptdit.encoders.hub import MissingWeightsError, missing_weights_error, resolve_model
from ptdit.optional import require

__all__ = [
    "RELEASED_TEXT_ENCODER_REPO",
    "RELEASED_TEXT_MAX_LENGTH",
    "TEXT_ENCODER_ALIASES",
    "TEXT_ENCODER_KINDS",
    "TextEncoder",
    "clean_caption",
    "load_released_text_encoder",
    "load_text_encoder",
    "normalize_negative_prompt",
]

# Hub ids behind short names. Only used when the name is not a local folder.
TEXT_ENCODER_ALIASES: dict[str, str] = {
    "t5": "google/t5-v1_1-xxl",
    "t5-xxl": "google/t5-v1_1-xxl",
    "clip": "openai/clip-vit-large-patch14",
    "clip-l": "openai/clip-vit-large-patch14",
}

# config.json `model_type` -> (kind, transformers encoder class). A full CLIP config ("clip") also loads as
# the text tower alone.
_MODEL_TYPES: dict[str, tuple[str, str]] = {
    "t5": ("t5", "T5EncoderModel"),
    "mt5": ("t5", "MT5EncoderModel"),
    "umt5": ("t5", "UMT5EncoderModel"),
    "clip_text_model": ("clip", "CLIPTextModel"),
    "clip": ("clip", "CLIPTextModel"),
}
TEXT_ENCODER_KINDS = ("t5", "clip")
_DEFAULT_MAX_LENGTH = {"t5": 120, "clip": 77}
_DEFAULT_ENCODER_CLASS = {"t5": "T5EncoderModel", "clip": "CLIPTextModel"}
RELEASED_TEXT_MAX_LENGTH = 200  # T5 tokens of the released Qihoo-T2X pipeline (`model_max_length`)
RELEASED_TEXT_ENCODER_REPO = "alibaba-pai/EasyAnimateV2-XL-2-512x512"  # its text_encoder/ and tokenizer/

# A diffusers-style pipeline folder (EasyAnimateV2-XL-2-512x512, the release's `pretrain_models/`) keeps the
# encoder and its tokenizer in these two subfolders.
_PIPELINE_ENCODER_SUBFOLDER = "text_encoder"
_PIPELINE_TOKENIZER_SUBFOLDER = "tokenizer"
# Files that carry a tokenizer's vocabulary; one of them must exist (transformers 5 otherwise builds an
# empty T5 tokenizer that maps every word to <unk>, silently).
_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "vocab.json", "vocab.txt", "tokenizer.model")
_VOCABULARY_FREE_TOKENIZERS = ("ByT5Tokenizer",)  # byte-level: tokenizer_config.json is enough

# ------------------------------------------------------------------------------------------------------
# Encoder
# ------------------------------------------------------------------------------------------------------


class TextEncoder:
    """A Hugging Face tokenizer + encoder pair returning token features and a padding mask.

    Attributes:
        kind: "t5" or "clip".
        max_length: number of tokens S every prompt is padded or truncated to.
        clean_captions: whether prompts get the reference's text preprocessing before tokenization
            (`clean_caption`; negative prompts only `normalize_negative_prompt`).
        tokenizer: the transformers tokenizer.
        model: the transformers encoder (eval mode, no gradients).
    """

    def __init__(
        self,
        tokenizer: Any,
        model: nn.Module,
        *,
        kind: str,
        max_length: int,
        clean_captions: bool,
    ) -> None:
        if kind not in TEXT_ENCODER_KINDS:
            raise ValueError(f"kind must be one of {TEXT_ENCODER_KINDS}, got {kind!r}")
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        self.kind = kind
        self.max_length = max_length
        self.clean_captions = clean_captions
        self.tokenizer = tokenizer
        self.model = model.eval().requires_grad_(False)

    @property
    def dim(self) -> int:
        """Width C of the returned features (T5 `d_model`, CLIP `hidden_size`)."""
        config = self.model.config
        return int(config.d_model if self.kind == "t5" else config.hidden_size)

    @property
    def device(self) -> torch.device:
        """Device of the encoder weights."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the encoder weights (the returned features are always float32)."""
        return next(self.model.parameters()).dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> TextEncoder:
        """Move the encoder in place; returns self."""
        self.model.to(device=device, dtype=dtype)
        return self

    def preprocess(self, prompts: Sequence[str], *, negative: bool = False) -> list[str]:
        """Validate prompts and, when enabled, apply the reference's preprocessing.

        Args:
            prompts: B captions.
            negative: the prompts are negative (unconditional) prompts: lower-cased and stripped instead of
                cleaned, as the reference pipeline treats them.

        Returns:
            The B strings fed to the tokenizer.
        """
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise TypeError(f"prompts must be a list of strings, got {type(prompts).__name__}: {prompts!r:.80}")
        bad = [p for p in prompts if not isinstance(p, str)]
        if bad:
            raise TypeError(f"every prompt must be a str, got {[type(p).__name__ for p in bad]}")
        if len(prompts) == 0:
            raise ValueError("prompts is empty; pass at least one prompt (use '' for the unconditional one)")
        if not self.clean_captions:
            return list(prompts)
        return [normalize_negative_prompt(p) if negative else clean_caption(p) for p in prompts]

    def tokenize(self, prompts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Tokenize with padding to `max_length` and truncation (warning once about dropped tokens).

        Args:
            prompts: B captions (already cleaned if cleaning is wanted; `encode` does it).

        Returns:
            `(input_ids, mask)`, both (B, S) long on the CPU; mask is 1 for real tokens (EOS included) and
            0 for padding.
        """
        prompts = list(prompts)
        # Untruncated lengths, only to report what truncation drops; verbose=False silences the
        # tokenizer's own "sequence longer than model_max_length" log line.
        full_lengths = [len(ids) for ids in self.tokenizer(prompts, truncation=False, verbose=False)["input_ids"]]
        dropped = [(i, n - self.max_length) for i, n in enumerate(full_lengths) if n > self.max_length]
        if dropped:
            detail = ", ".join(f"prompt {i}: {k}" for i, k in dropped[:8]) + (", ..." if len(dropped) > 8 else "")
            warnings.warn(
                f"{len(dropped)} of {len(prompts)} prompts exceed the {self.kind} max_length={self.max_length} "
                f"tokens and were truncated; tokens dropped ({detail})",
                UserWarning,
                stacklevel=3,  # point at the caller of encode()
            )
        batch = self.tokenizer(
            prompts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        )
        return batch["input_ids"].long(), batch["attention_mask"].long()

    def encode(self, prompts: Sequence[str], *, negative: bool = False) -> tuple[Tensor, Tensor]:
        """Encode captions into token features.

        Args:
            prompts: B captions; "" gives the unconditional (negative) embedding: EOS plus padding.
            negative: encode negative prompts (see `preprocess`); the empty prompt is the same either way.

        Returns:
            `(embeddings, mask)`: embeddings (B, S, C) float32 (padding positions hold the encoder's output
            for pad tokens; use the mask), mask (B, S) long, 1 = real token, 0 = padding. Both on the
            encoder's device.
        """
        input_ids, mask = self.tokenize(self.preprocess(prompts, negative=negative))
        device = self.device
        input_ids, mask = input_ids.to(device), mask.to(device)
        # no_grad, not inference_mode: the features may later be saved for backward by the trained model.
        with torch.no_grad():
            out = self.model(input_ids=input_ids, attention_mask=mask)
        return out.last_hidden_state.float(), mask  # (B, S, C), (B, S)

    __call__ = encode

    def __repr__(self) -> str:
        return (
            f"TextEncoder(kind={self.kind!r}, model={type(self.model).__name__}, dim={self.dim}, "
            f"max_length={self.max_length}, clean_captions={self.clean_captions})"
        )


# ------------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------------


def _detect(config: dict[str, Any], kind: str | None, name: str) -> tuple[str, str]:
    """Pick (kind, transformers class name) from config.json, honouring an explicit kind."""
    model_type = config.get("model_type")
    detected = _MODEL_TYPES.get(str(model_type))
    if kind is not None:
        if kind not in TEXT_ENCODER_KINDS:
            raise ValueError(f"kind must be one of {TEXT_ENCODER_KINDS} or None, got {kind!r}")
        if detected is not None and detected[0] != kind:
            raise ValueError(f"{name!r} has model_type {model_type!r} ({detected[0]}), but kind={kind!r} was given")
        return detected if detected is not None else (kind, _DEFAULT_ENCODER_CLASS[kind])
    if detected is None:
        raise ValueError(
            f"cannot tell the text-encoder kind of {name!r} from its config.json model_type {model_type!r}; "
            f"supported model types: {sorted(_MODEL_TYPES)} (or pass kind='t5' / 'clip')"
        )
    return detected


def _is_pipeline_folder(folder: Path) -> bool:
    """A pipeline folder (text_encoder/ + tokenizer/, as EasyAnimateV2 ships them) without a root config."""
    return not (folder / "config.json").is_file() and any(
        (folder / sub).is_dir() for sub in (_PIPELINE_ENCODER_SUBFOLDER, _PIPELINE_TOKENIZER_SUBFOLDER)
    )


def _has_tokenizer_files(folder: Path) -> bool:
    if any((folder / file).is_file() for file in _TOKENIZER_FILES):
        return True
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return False
    with config.open(encoding="utf-8") as handle:
        return json.load(handle).get("tokenizer_class") in _VOCABULARY_FREE_TOKENIZERS


def _local_folder_error(name: str, missing: list[str]) -> MissingWeightsError:
    """One line: what a local encoder folder lacks and how to supply it."""
    return MissingWeightsError(
        f"cannot load text encoder {name!r}: missing {'; '.join(missing)}. Pass a folder holding the encoder "
        "(config.json + weights) and its tokenizer files, or a pipeline folder with text_encoder/ and tokenizer/ "
        "(or set subfolder / tokenizer_subfolder); the release's is fetched on a machine with internet access by "
        f"`hf download {RELEASED_TEXT_ENCODER_REPO} --include 'text_encoder/*' --include 'tokenizer/*' "
        "--local-dir DIR`, then pass DIR"
    )


def _check_local_files(folder: Path, name: str, subfolder: str | None, tokenizer_subfolder: str | None) -> None:
    """Raise MissingWeightsError naming every missing piece (weights, tokenizer folder or files)."""
    model_dir = folder / subfolder if subfolder else folder
    tokenizer_dir = folder / tokenizer_subfolder if tokenizer_subfolder else model_dir
    missing = []
    if not any(next(model_dir.glob(pattern), None) for pattern in ("*.safetensors", "*.bin")):
        missing.append(f"model weights (model.safetensors or pytorch_model.bin) in {str(model_dir)!r}")
    if not tokenizer_dir.is_dir():
        missing.append(f"the tokenizer folder {str(tokenizer_dir)!r}")
    elif not _has_tokenizer_files(tokenizer_dir):
        missing.append(f"tokenizer files (one of {', '.join(_TOKENIZER_FILES)}) in {str(tokenizer_dir)!r}")
    if missing:
        raise _local_folder_error(name, missing)


def load_text_encoder(
    name_or_path: str | os.PathLike[str],
    *,
    kind: str | None = None,
    max_length: int | None = None,
    clean_captions: bool | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    subfolder: str | None = None,
    tokenizer_subfolder: str | None = None,
) -> TextEncoder:
    """Load a T5 or CLIP text encoder and its tokenizer from a local folder or a hub id.

    The kind is read from the `model_type` of the model's config.json unless given. Local folders are
    used first; hub ids are looked up in the local cache only when `HF_HUB_OFFLINE` is set. A local folder
    without a config.json of its own but with `text_encoder/` and `tokenizer/` subfolders (a pipeline
    folder such as EasyAnimateV2-XL-2-512x512, the release's text encoder) is read from those. A local
    folder is checked for its weights and tokenizer files before anything is loaded.

    Args:
        name_or_path: a local folder, a hub id, or an alias from `TEXT_ENCODER_ALIASES`.
        kind: "t5" or "clip"; None detects it.
        max_length: tokens per prompt; None gives 120 for T5 (paper; use 200 for the released weights)
            and the position limit (77) for CLIP.
        clean_captions: apply the reference's text preprocessing (`clean_caption`, which needs ftfy and
            beautifulsoup4); None means on for T5 (reference) and off for CLIP.
        device: device for the encoder.
        dtype: weight dtype (T5 is run in float32 by the reference; bf16 / fp16 T5 can overflow).
        subfolder: folder of the model inside `name_or_path` (e.g. "text_encoder" in a pipeline repo).
        tokenizer_subfolder: folder of the tokenizer (e.g. "tokenizer"); defaults to `subfolder`.

    Returns:
        The text encoder in eval mode.

    Raises:
        MissingWeightsError: if the weights or tokenizer cannot be found locally (or downloaded when online).
        ImportError: if transformers (or, with caption cleaning, ftfy / beautifulsoup4) is not installed.
    """
    name = os.fspath(name_or_path)
    from ptdit.encoders.words import is_word_encoder_folder, load_word_encoder

    folder = Path(name).expanduser()
    if is_word_encoder_folder(folder):  # the built-in word encoder (no transformers needed)
        return load_word_encoder(folder, max_length=max_length, device=device)
    if not folder.is_dir():
        name = TEXT_ENCODER_ALIASES.get(name, name)
    elif subfolder is None and tokenizer_subfolder is None and _is_pipeline_folder(folder):
        subfolder, tokenizer_subfolder = _PIPELINE_ENCODER_SUBFOLDER, _PIPELINE_TOKENIZER_SUBFOLDER
    if folder.is_dir() and subfolder and not (folder / subfolder).is_dir():
        raise _local_folder_error(name, [f"the encoder folder {str(folder / subfolder)!r}"])
    resolved = resolve_model(name, what="text encoder", subfolder=subfolder)
    kind, class_name = _detect(resolved.config, kind, name)
    if folder.is_dir():
        _check_local_files(folder, name, subfolder, tokenizer_subfolder)
    if clean_captions is None:
        clean_captions = kind == "t5"
    if clean_captions:
        require_cleaning_dependencies()  # fail before loading the weights, not at the first prompt
    return _load_with_transformers(
        resolved, kind, class_name, tokenizer_subfolder, max_length, clean_captions, device=device, dtype=dtype
    )


def _load_with_transformers(
    resolved: Any,
    kind: str,
    class_name: str,
    tokenizer_subfolder: str | None,
    max_length: int | None,
    clean_captions: bool,
    *,
    device: torch.device | str,
    dtype: torch.dtype,
) -> TextEncoder:
    """Tokenizer and encoder of a resolved source through transformers; see `load_text_encoder`."""
    transformers = require("transformers", "hub")
    kwargs = resolved.from_pretrained_kwargs()
    tok_kwargs = dict(kwargs)
    if tokenizer_subfolder is not None:
        tok_kwargs["subfolder"] = tokenizer_subfolder
    # transformers 5 renamed `torch_dtype` to `dtype` (the old name still works there, with a warning).
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(resolved.source, **tok_kwargs)
        model = getattr(transformers, class_name).from_pretrained(resolved.source, **kwargs, **{dtype_key: dtype})
    except OSError as exc:  # transformers reports missing or unreadable files as OSError
        raise missing_weights_error(resolved, "text encoder", exc) from exc
    model.to(device=device)

    if max_length is None:
        max_length = _DEFAULT_MAX_LENGTH[kind]
        if kind == "clip":
            max_length = int(getattr(model.config, "max_position_embeddings", max_length))
    if kind == "clip" and max_length > model.config.max_position_embeddings:
        raise ValueError(
            f"max_length={max_length} exceeds the CLIP position limit {model.config.max_position_embeddings}"
        )
    return TextEncoder(tokenizer, model, kind=kind, max_length=max_length, clean_captions=clean_captions)


def load_released_text_encoder(
    name_or_path: str | os.PathLike[str],
    *,
    max_length: int = RELEASED_TEXT_MAX_LENGTH,
    device: torch.device | str = "cpu",
) -> TextEncoder:
    """The text path of the released Qihoo-T2X pipeline: T5 in float32, 200 tokens, reference cleaning.

    Args:
        name_or_path: a local folder holding the release's T5 (`text_encoder/` + `tokenizer/` of
            alibaba-pai/EasyAnimateV2-XL-2-512x512, or one folder with both).
        max_length: tokens per prompt; the release uses 200.
        device: device for the encoder.

    Returns:
        The text encoder; `encode(prompts)` cleans, `encode([""], negative=True)` gives the negative prompt.
    """
    return load_text_encoder(
        name_or_path, kind="t5", max_length=max_length, clean_captions=True, device=device, dtype=torch.float32
    )
