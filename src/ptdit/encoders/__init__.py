"""Thin adapters for pretrained text encoders and VAEs (Hugging Face transformers / diffusers).

Importing this package is cheap: the submodules are loaded on first attribute access, and transformers /
diffusers only inside the loaders (they come with the `[hub]` extra). `models/` never imports this package.

Main entry points:

* `load_text_encoder(name_or_path, ...) -> TextEncoder`, with `TextEncoder.encode(prompts) -> (emb, mask)`;
  `load_released_text_encoder(folder)` for the released pipeline's T5 (200 tokens, fp32, caption cleaning).
* `clean_caption(text)` / `normalize_negative_prompt(text)`: the reference's text preprocessing.
* `load_vae(name_or_path, ...) -> VAE`, with `VAE.encode(pixels)` / `VAE.decode(latents)` on `B C F H W`.
* `CausalVAE` / `load_causalvae`: the native Open-Sora-Plan v1.2 CausalVAE (`encoders/causalvae/`).
* `MissingWeightsError`: raised fast, with a one-line fix, when weights are not available offline.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ptdit.encoders.hub import MissingWeightsError

if TYPE_CHECKING:
    from ptdit.encoders.causalvae import CausalVAE, load_causalvae
    from ptdit.encoders.text import (
        TextEncoder,
        clean_caption,
        load_released_text_encoder,
        load_text_encoder,
        normalize_negative_prompt,
    )
    from ptdit.encoders.vae import VAE, IdentityVAE, ImageVAE, PackVAE, VideoVAE, load_vae
    from ptdit.encoders.words import WordTextEncoder, load_word_encoder

__all__ = [
    "VAE",
    "CausalVAE",
    "IdentityVAE",
    "ImageVAE",
    "MissingWeightsError",
    "PackVAE",
    "TextEncoder",
    "VideoVAE",
    "WordTextEncoder",
    "clean_caption",
    "load_causalvae",
    "load_released_text_encoder",
    "load_text_encoder",
    "load_vae",
    "load_word_encoder",
    "normalize_negative_prompt",
]

_LAZY = {
    "CausalVAE": "causalvae",
    "load_causalvae": "causalvae",
    "TextEncoder": "text",
    "clean_caption": "text",
    "load_text_encoder": "text",
    "load_released_text_encoder": "text",
    "normalize_negative_prompt": "text",
    "VAE": "vae",
    "IdentityVAE": "vae",
    "ImageVAE": "vae",
    "PackVAE": "vae",
    "VideoVAE": "vae",
    "load_vae": "vae",
    "WordTextEncoder": "words",
    "load_word_encoder": "words",
}


def __getattr__(name: str) -> Any:
    """Import `text` / `vae` on first use (PEP 562) so that `import ptdit.encoders` stays cheap."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
