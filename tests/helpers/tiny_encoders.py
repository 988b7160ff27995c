"""Tiny, randomly initialised text encoders and VAEs built from configs, for offline tests.

Nothing here downloads anything: every model is built from a config with a fixed seed and saved with
`save_pretrained` into a folder the caller chooses (normally a pytest `tmp_path`), so the folders look
exactly like local copies of hub models and load through `ptdit.encoders.load_text_encoder` /
`load_vae`. Sizes follow the project's ENVIRONMENT.md notes ("build tiny models from configs").

Every builder returns the folder it wrote. diffusers / transformers are imported inside the functions so
that importing this module stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = [
    "TINY_CLIP_DIM",
    "TINY_CLIP_MAX_LENGTH",
    "TINY_T5_DIM",
    "TINY_VAE_LATENT_CHANNELS",
    "TINY_VIDEO_VAE_LATENT_CHANNELS",
    "make_tiny_clip",
    "make_tiny_t5",
    "make_tiny_vae",
    "make_tiny_video_vae",
]

TINY_T5_DIM = 64
TINY_CLIP_DIM = 32
TINY_CLIP_MAX_LENGTH = 77
TINY_VAE_LATENT_CHANNELS = 4
TINY_VIDEO_VAE_LATENT_CHANNELS = 4

# A few BPE merges so that common test words become multi-character tokens (byte-level otherwise).
_CLIP_MERGES = ["t h", "th e</w>", "c a", "ca t</w>", "d o", "do g</w>", "o n</w>", "i n</w>"]


def make_tiny_t5(directory: str | Path, *, seed: int = 0) -> Path:
    """Build a tiny T5 encoder (107 k params) with a `ByT5Tokenizer` and save both.

    Args:
        directory: folder to write `config.json`, the weights and the tokenizer files into.
        seed: seed of the random initialisation.

    Returns:
        The folder, loadable with `T5EncoderModel.from_pretrained` and `AutoTokenizer.from_pretrained`.
    """
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    directory = Path(directory)
    tokenizer = ByT5Tokenizer()  # byte-level, vocab 384, needs no vocabulary file
    config = T5Config(
        vocab_size=384,
        d_model=TINY_T5_DIM,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = T5EncoderModel(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _tiny_clip_tokenizer():  # -> transformers.CLIPTokenizer
    """A byte-level CLIP BPE tokenizer with every single byte in the vocabulary plus a few merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_chars = list(bytes_to_unicode().values())
    pieces = byte_chars + [c + "</w>" for c in byte_chars]
    for merge in _CLIP_MERGES:
        pieces.append(merge.replace(" ", ""))
    pieces += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    merges = [tuple(merge.split(" ")) for merge in _CLIP_MERGES]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TINY_CLIP_MAX_LENGTH)


def make_tiny_clip(directory: str | Path, *, seed: int = 0) -> Path:
    """Build a tiny CLIP text model (hidden 32, 2 layers) with a tiny byte-level BPE tokenizer and save both.

    Args:
        directory: folder to write the model and tokenizer files into.
        seed: seed of the random initialisation.

    Returns:
        The folder, loadable with `CLIPTextModel.from_pretrained` and `CLIPTokenizer.from_pretrained`.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    directory = Path(directory)
    tokenizer = _tiny_clip_tokenizer()
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=TINY_CLIP_DIM,
        intermediate_size=64,
        projection_dim=TINY_CLIP_DIM,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=TINY_CLIP_MAX_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = CLIPTextModel(config).eval()
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def make_tiny_vae(
    directory: str | Path,
    *,
    seed: int = 0,
    scaling_factor: float = 0.18215,
    shift_factor: float | None = None,
) -> Path:
    """Build a tiny image `AutoencoderKL` (658 k params, 2x spatial, 4 latent channels) and save it.

    `1 x 3 x 32 x 32` pixels map to `1 x 4 x 16 x 16` latents.

    Args:
        directory: folder to write `config.json` and `diffusion_pytorch_model.safetensors` into.
        seed: seed of the random initialisation.
        scaling_factor: stored in the config, applied by the ptdit adapter.
        shift_factor: stored in the config (None as in SD-VAE), applied by the ptdit adapter.

    Returns:
        The folder.
    """
    from diffusers import AutoencoderKL

    directory = Path(directory)
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=TINY_VAE_LATENT_CHANNELS,
        norm_num_groups=32,
        sample_size=32,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    ).eval()
    vae.save_pretrained(directory)
    return directory


def make_tiny_video_vae(
    directory: str | Path,
    *,
    seed: int = 0,
    latents_mean: list[float] | None = None,
    latents_std: list[float] | None = None,
) -> Path:
    """Build a tiny `AutoencoderKLWan` (237 k params; 8x spatial, 4x temporal, 4 latent channels) and save it.

    `(1, 3, 9, 32, 32)` pixels map to `(1, 4, 3, 4, 4)` latents and back.

    Args:
        directory: folder to write `config.json` and `diffusion_pytorch_model.safetensors` into.
        seed: seed of the random initialisation.
        latents_mean: per-channel latent mean (4 values); default a fixed non-trivial vector so that the
            normalisation is exercised (the diffusers default has 16 values, for z_dim 16).
        latents_std: per-channel latent std (4 values); default a fixed non-trivial vector.

    Returns:
        The folder.
    """
    from diffusers import AutoencoderKLWan

    directory = Path(directory)
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=16,
        z_dim=TINY_VIDEO_VAE_LATENT_CHANNELS,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
        latents_mean=latents_mean if latents_mean is not None else [0.1, -0.2, 0.3, 0.0],
        latents_std=latents_std if latents_std is not None else [2.0, 0.5, 1.0, 1.5],
    ).eval()
    vae.save_pretrained(directory)
    return directory
