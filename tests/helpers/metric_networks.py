"""Tiny, randomly initialised metric networks (FID Inception-v3, I3D, CLIP, DINOv2) for offline tests.

The Inception-v3 and I3D are the real architectures at a small width (`width=1/32`), saved as plain state
dicts the way the released weight files are. A randomly initialised deep network with BatchNorm in eval mode
(running mean 0, variance 1) shrinks its activations layer after layer until the features are all ~0, so
`calibrate_batchnorm` first sets every running statistic from a forward pass on random inputs: the features
then vary with the input as a trained network's do. CLIP and DINOv2 are transformers models built from tiny
configs and saved with their image processor (and, for CLIP, the tiny byte-level tokenizer).
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_WIDTH = 1 / 32
TINY_CLIP_IMAGE_SIZE = 32


def calibrate_batchnorm(model: torch.nn.Module, inputs: torch.Tensor) -> torch.nn.Module:
    """Sets every BatchNorm's running statistics to those of `inputs` (one forward pass in train mode)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one pass gives the batch's statistics
    model.train()
    with torch.no_grad():
        model(inputs)
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    return model.eval()


def make_tiny_inception(path: str | Path, *, seed: int = 0, width: float = TINY_WIDTH) -> Path:
    """A calibrated tiny FID Inception-v3 saved with `torch.save(state_dict)` (like the .pth release)."""
    from ptdit.eval.inception import InceptionV3, preprocess

    torch.manual_seed(seed)
    model = InceptionV3(width=width)
    images = torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8)
    calibrate_batchnorm(model, preprocess(images))
    torch.save(model.state_dict(), path)
    return Path(path)


def make_tiny_i3d(path: str | Path, *, seed: int = 0, width: float = TINY_WIDTH, num_classes: int = 16) -> Path:
    """A calibrated tiny I3D saved with `torch.save(state_dict)` (like rgb_imagenet.pt); 16 logits instead of 400
    keep the FVD features small (the matrix square root of a 400 x 400 covariance alone takes over a second)."""
    from ptdit.eval.i3d import InceptionI3d, preprocess

    torch.manual_seed(seed)
    model = InceptionI3d(width=width, num_classes=num_classes)
    videos = torch.randint(0, 256, (2, 16, 16, 16, 3), dtype=torch.uint8)
    calibrate_batchnorm(model, preprocess(videos))
    torch.save(model.state_dict(), path)
    return Path(path)


def make_tiny_clip_model(directory: str | Path, *, seed: int = 0) -> Path:
    """A tiny `CLIPModel` (text and vision towers, 32 px images) with tokenizer and image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from tests.helpers.tiny_encoders import TINY_CLIP_MAX_LENGTH, _tiny_clip_tokenizer

    directory = Path(directory)
    tokenizer = _tiny_clip_tokenizer()
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    text = {
        **tower,
        "vocab_size": len(tokenizer),
        "max_position_embeddings": TINY_CLIP_MAX_LENGTH,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {**tower, "image_size": TINY_CLIP_IMAGE_SIZE, "patch_size": 8}
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    size = TINY_CLIP_IMAGE_SIZE
    CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(
        directory
    )
    return directory


def make_tiny_dinov2(directory: str | Path, *, seed: int = 0) -> Path:
    """A tiny `Dinov2Model` (hidden 32, 32 px images) with its image processor (BitImageProcessor)."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    directory = Path(directory)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32, patch_size=8
    )
    torch.manual_seed(seed)
    Dinov2Model(config).eval().save_pretrained(directory)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    return directory


__all__ = [
    "TINY_CLIP_IMAGE_SIZE",
    "TINY_WIDTH",
    "calibrate_batchnorm",
    "make_tiny_clip_model",
    "make_tiny_dinov2",
    "make_tiny_i3d",
    "make_tiny_inception",
]
