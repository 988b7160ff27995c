"""Fingerprints of encoders: a hash of their weights and settings, recorded by feature caches and checked when a
run trains from one (docs/data.md#feature-caches)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch


def _hash_tensors(digest: Any, tensors: dict[str, torch.Tensor]) -> None:
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def encoder_fingerprint(encoder: Any) -> str:
    """sha256 (hex) of an encoder's class, settings and weights: a `VAE` module, a `TextEncoder` (transformers
    model, tokenizer size, max length, caption cleaning) or a `WordTextEncoder` (vocabulary, embeddings)."""
    digest = hashlib.sha256(type(encoder).__name__.encode())
    settings: dict[str, Any] = {"max_length": getattr(encoder, "max_length", None)}
    if hasattr(encoder, "vocab") and hasattr(encoder, "embeddings"):  # the built-in word encoder
        settings["vocab"] = list(encoder.vocab)
        tensors = {"embeddings": encoder.embeddings}
        if getattr(encoder, "context", 0):
            tensors["context_embeddings"] = encoder.context_embeddings
        _hash_tensors(digest, tensors)
    elif hasattr(encoder, "tokenizer"):  # a transformers text encoder
        settings.update(kind=encoder.kind, clean=encoder.clean_captions, vocab_size=len(encoder.tokenizer))
        _hash_tensors(digest, encoder.model.state_dict())
    elif isinstance(encoder, torch.nn.Module):
        settings.update(channels=encoder.latent_channels, factors=[encoder.spatial_factor, encoder.temporal_factor])
        tensors = dict(encoder.state_dict())
        for name in ("shift", "scale"):  # latent normalisation buffers (not in the state dict)
            if isinstance(getattr(encoder, name, None), torch.Tensor):
                tensors[f"normalization.{name}"] = getattr(encoder, name)
        _hash_tensors(digest, tensors)
    else:
        raise TypeError(f"cannot fingerprint a {type(encoder).__name__}")
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()


__all__ = ["encoder_fingerprint"]
