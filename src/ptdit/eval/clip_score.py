"""CLIPScore for text-to-image and CLIPSIM for text-to-video, with a transformers CLIP.

* CLIPScore of an image and its prompt: 100 x max(cos(image embedding, text embedding), 0), with the projected
  embeddings of `CLIPModel.get_image_features` / `get_text_features` (the convention of torchmetrics; Hessel
  et al. 2021 scale by 2.5 instead). The set's score is the mean over images.
* CLIPSIM of a video (Wu et al. 2021, the MSR-VTT protocol of the paper's Table 1b): the mean over its frames
  of max(cos, 0), reported on the 0-1 scale of that table (= CLIPScore / 100); the set's score is the mean
  over videos.

Long prompts (docs/evaluation.md#long-prompts): CLIP reads at most `max_position_embeddings` (77) tokens,
start and end tokens included. With `long_prompts="truncate"` (the default) a longer prompt keeps its first 75
tokens plus the end token, a warning says how many prompts were cut, and the count is recorded with the
score; `long_prompts="error"` refuses them instead. Nothing is cut silently.

Shape legend: B batch, T frames, H / W rows / columns, E embedding size.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ptdit.encoders.hub import missing_weights_error, resolve_model
from ptdit.eval.hf_features import describe_processor, load_image_processor, load_pretrained, processor_batch
from ptdit.optional import require

LONG_PROMPT_POLICIES = ("truncate", "error")
WHAT = "CLIP model"


def _embedding(output: Any) -> torch.Tensor:
    # transformers 5 returns a ModelOutput whose pooler_output holds the projected embedding; 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@dataclass
class ClipScorer:
    """A CLIP model with its tokenizer and image processor.

    Attributes:
        model: a transformers `CLIPModel`.
        tokenizer: its tokenizer.
        processor: its image processor.
        info: network, weights hash, preprocessing and dtype, recorded with every score.
        long_prompts: "truncate" or "error" (module docstring).
    """

    model: Any
    tokenizer: Any
    processor: Any
    info: dict[str, Any]
    long_prompts: str = "truncate"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def max_tokens(self) -> int:
        return int(self.model.config.text_config.max_position_embeddings)

    def count_long(self, prompts: list[str]) -> int:
        """How many prompts exceed `max_tokens`; raises under the "error" policy."""
        lengths = [len(ids) for ids in self.tokenizer(prompts, truncation=False, verbose=False)["input_ids"]]
        long = [i for i, n in enumerate(lengths) if n > self.max_tokens]
        if long and self.long_prompts == "error":
            i = long[0]
            raise ValueError(
                f"{len(long)} prompts are longer than CLIP's {self.max_tokens} tokens, e.g. prompt {i} "
                f"({lengths[i]} tokens: {prompts[i][:60]!r}...); shorten them or use --long-prompts truncate"
            )
        return len(long)

    @torch.no_grad()
    def cosine(self, images: np.ndarray, prompts: list[str]) -> np.ndarray:
        """Cosine similarity of each image with its prompt.

        Args:
            images: (B, H, W, 3) uint8 RGB.
            prompts: B prompts (cut to `max_tokens` tokens; see `count_long`).

        Returns:
            (B,) float64 cosines.
        """
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        tokens = self.tokenizer(
            prompts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(self.device)
        text_BE = _embedding(self.model.get_text_features(**tokens))
        image_BE = _embedding(
            self.model.get_image_features(pixel_values=processor_batch(self.processor, images, self.device))
        )
        cos_B = torch.nn.functional.cosine_similarity(image_BE.float(), text_BE.float(), dim=-1)
        return cos_B.double().cpu().numpy()

    def frame_cosine(self, videos: np.ndarray, prompts: list[str]) -> np.ndarray:
        """(B, T, H, W, 3) uint8 videos and B prompts -> (B, T) cosines of every frame with its prompt."""
        B, T = videos.shape[:2]
        frames = videos.reshape(B * T, *videos.shape[2:])
        return self.cosine(frames, [p for p in prompts for _ in range(T)]).reshape(B, T)


def load_clip(name: str, *, device: str | torch.device = "cpu", long_prompts: str = "truncate") -> ClipScorer:
    """A `ClipScorer` from a local CLIP folder or a hub id in the local cache (model, tokenizer, processor).

    Raises:
        MissingWeightsError: the model, tokenizer or image processor is not on this machine.
        ValueError: not a CLIP model, or an unknown long-prompt policy.
    """
    from ptdit.eval.weights import state_dict_hash

    if long_prompts not in LONG_PROMPT_POLICIES:
        raise ValueError(f"long_prompts must be one of {LONG_PROMPT_POLICIES}, got {long_prompts!r}")
    resolved = resolve_model(name, what=WHAT)
    if resolved.config.get("model_type") != "clip":
        raise ValueError(f"{name!r} is a {resolved.config.get('model_type')!r} model, not a CLIP model (CLIPModel)")
    device = torch.device(device)
    model = load_pretrained(resolved, "CLIPModel", what=WHAT).to(device)
    processor = load_image_processor(resolved, what=WHAT)
    transformers = require("transformers", "hub", purpose="CLIPScore")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(resolved.source, **resolved.from_pretrained_kwargs())
    except OSError as exc:
        raise missing_weights_error(resolved, f"{WHAT} tokenizer", exc) from exc
    info = {
        "network": "hf:clip",
        "layer": "projected embeddings",
        "weights_hash": state_dict_hash(model),
        "preprocess": describe_processor(processor),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "model": name,
    }
    return ClipScorer(model, tokenizer, processor, info, long_prompts, device)


def warn_truncated(count: int, total: int, max_tokens: int) -> None:
    """The one warning of the "truncate" policy."""
    if count:
        warnings.warn(
            f"{count} of {total} prompts are longer than CLIP's {max_tokens} tokens and were cut to their first "
            f"{max_tokens - 2} tokens (recorded as truncated_prompts)",
            stacklevel=2,
        )


__all__ = ["LONG_PROMPT_POLICIES", "ClipScorer", "load_clip", "warn_truncated"]
