"""Conditioning strategies: how a condition is encoded, what its null condition is, and how it is dropped.

One strategy per kind (text, class label, none), chosen by `conditioning_for`. Training drops a fraction of
the conditions for classifier-free guidance (caption dropout, 0.1 by default: docs/decisions.md#null-condition)
and sampling pairs every condition with the null one; both go through the same three methods, so they agree:

- `encode(inputs, device)`: model keyword arguments for a list of prompts or labels;
- `null(device, negative_prompt)`: keyword arguments of the unconditional (CFG) branch, batch 1;
- `drop(cond, drop_B, null)`: `cond` with the rows where `drop_B` is True replaced by the null condition.

Text: the null condition is the encoder's embedding of the empty (or negative) prompt with its mask
(docs/decisions.md#null-condition). Class: the null condition is the extra class `num_classes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from ptdit.recipe.tasks import get_task

Cond = dict[str, torch.Tensor]


class Conditioning(Protocol):
    """What the trainer and the pipeline need of a conditioning kind."""

    kind: str

    def encode(self, inputs: Sequence[Any], device: torch.device | str) -> Cond: ...

    def null(self, device: torch.device | str, negative_prompt: str = "") -> Cond: ...

    def drop(self, cond: Cond, drop_B: torch.Tensor, null: Cond) -> Cond: ...


class TextConditioning:
    """Text prompts through a `ptdit.encoders` text encoder: `context` (B, S, E) and `context_mask` (B, S)."""

    kind = "text"

    def __init__(self, text_encoder: Any) -> None:
        if text_encoder is None:
            raise ValueError("text conditioning needs a text encoder")
        self.text_encoder = text_encoder

    def encode(self, inputs: Sequence[str], device: torch.device | str) -> Cond:
        if not inputs:
            raise ValueError("this model is text-conditional: give at least one prompt")
        emb_BSE, mask_BS = self.text_encoder.encode(list(inputs))
        return {"context": emb_BSE.to(device), "context_mask": mask_BS.to(device)}

    def null(self, device: torch.device | str, negative_prompt: str = "") -> Cond:
        # The reference only lower-cases and strips the negative prompt; it is not caption-cleaned.
        emb_BSE, mask_BS = self.text_encoder.encode([negative_prompt], negative=True)
        return {"context": emb_BSE.to(device), "context_mask": mask_BS.to(device)}

    def drop(self, cond: Cond, drop_B: torch.Tensor, null: Cond) -> Cond:
        drop_B = drop_B.to(cond["context"].device)
        return {
            "context": torch.where(drop_B[:, None, None], null["context"], cond["context"]),
            "context_mask": torch.where(drop_B[:, None], null["context_mask"], cond["context_mask"]),
        }


class CachedTextConditioning(TextConditioning):
    """Text embeddings read from a feature cache (docs/data.md#feature-caches): `encode` takes the cached
    `{"context", "context_mask"}` as they are, and the null condition is the one stored with the cache, so caption
    dropout is the same as with the encoder. Prompts (previews, evaluation) still go through `text_encoder`."""

    def __init__(self, null: Cond, text_encoder: Any | None = None) -> None:
        self.text_encoder = text_encoder
        self.stored_null = null

    def encode(self, inputs: Any, device: torch.device | str) -> Cond:
        if isinstance(inputs, dict):
            return {"context": inputs["context"].to(device), "context_mask": inputs["context_mask"].to(device)}
        if self.text_encoder is None:
            raise ValueError("prompts need the text encoder; this conditioning only has cached embeddings")
        return super().encode(inputs, device)

    def null(self, device: torch.device | str, negative_prompt: str = "") -> Cond:
        if negative_prompt and self.text_encoder is not None:
            return super().null(device, negative_prompt)
        return {key: value.to(device) for key, value in self.stored_null.items()}


class ClassConditioning:
    """Class labels in [0, num_classes); the extra label `num_classes` is the null class."""

    kind = "class"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def check(self, labels: Sequence[int]) -> None:
        """Raises ValueError naming every label outside [0, num_classes)."""
        bad = [c for c in labels if not 0 <= int(c) < self.num_classes]
        if bad:
            raise ValueError(f"class labels {bad} are outside [0, {self.num_classes})")

    def encode(self, inputs: Sequence[int] | torch.Tensor, device: torch.device | str) -> Cond:
        if len(inputs) == 0:
            raise ValueError("this model is class-conditional: give at least one class label")
        labels = inputs if isinstance(inputs, torch.Tensor) else torch.tensor(list(inputs))
        self.check(labels.tolist())
        return {"class_labels": labels.to(device)}

    def null(self, device: torch.device | str, negative_prompt: str = "") -> Cond:
        del negative_prompt  # no negative classes
        return {"class_labels": torch.full((1,), self.num_classes, device=device)}

    def drop(self, cond: Cond, drop_B: torch.Tensor, null: Cond) -> Cond:
        labels = cond["class_labels"]
        drop_B = drop_B.to(labels.device)
        # The label embedder applies `force_drop_mask` itself (the same replacement); passing it also turns off
        # the embedder's own random dropout, so that every drop comes from the trainer's seeded draw.
        return {"class_labels": torch.where(drop_B, null["class_labels"], labels), "force_drop_mask": drop_B}


class NoConditioning:
    """Unconditional models: no keyword arguments, nothing to drop."""

    kind = "none"

    def encode(self, inputs: Sequence[Any], device: torch.device | str) -> Cond:
        return {}

    def null(self, device: torch.device | str, negative_prompt: str = "") -> Cond:
        return {}

    def drop(self, cond: Cond, drop_B: torch.Tensor, null: Cond) -> Cond:
        return cond


def conditioning_for(
    kind_or_task: str, *, text_encoder: Any | None = None, num_classes: int | None = None
) -> Conditioning:
    """The strategy for a conditioning kind ("text", "class", "none") or a task name ("t2i", "class", ...)."""
    kind = kind_or_task if kind_or_task in ("text", "class", "none") else get_task(kind_or_task).conditioning
    if kind == "text":
        return TextConditioning(text_encoder)
    if kind == "class":
        if num_classes is None:
            raise ValueError("class conditioning needs num_classes")
        return ClassConditioning(num_classes)
    return NoConditioning()


__all__ = [
    "CachedTextConditioning",
    "ClassConditioning",
    "Cond",
    "Conditioning",
    "NoConditioning",
    "TextConditioning",
    "conditioning_for",
]
