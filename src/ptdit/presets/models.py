"""Model presets: short functions returning configs
(docs/architecture.md#model-configurations, Table 4 of the paper; DiT; PixArt-alpha).

PT-DiT text presets use the released block (4 -> 8 channels, patch 2, T5-XXL captions, windows (1, 8, 8),
the 1024 px setting); pass `window_size=` to a forward call for other resolutions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ptdit.config import DiTConfig, ModelConfig, PixArtConfig, PTDiTConfig, replace


def ptdit_xl() -> PTDiTConfig:
    """The released Qihoo-T2I configuration: 1,131,629,216 parameters."""
    return PTDiTConfig(depth=28, dim=1152, num_heads=16)


def ptdit_s_class() -> PTDiTConfig:
    """The ImageNet-256 ablation model: class labels instead of text, windows (1, 2, 2) at 256 px."""
    return PTDiTConfig(depth=10, dim=288, num_heads=6, conditioning="class", window_size=(1, 2, 2))


def ptdit_b() -> PTDiTConfig:
    return PTDiTConfig(depth=12, dim=640, num_heads=10)


def ptdit_l() -> PTDiTConfig:
    return PTDiTConfig(depth=28, dim=864, num_heads=12)


def ptdit_h() -> PTDiTConfig:
    return PTDiTConfig(depth=30, dim=1440, num_heads=20)


def ptdit_tiny() -> PTDiTConfig:
    """Not in the paper: a CPU-sized text model for demos and tests (64-d captions)."""
    return PTDiTConfig(depth=2, dim=64, num_heads=4, context_dim=64, window_size=(1, 4, 4))


def dit(depth: int, dim: int, num_heads: int) -> DiTConfig:
    return DiTConfig(depth=depth, dim=dim, num_heads=num_heads)


def pixart_alpha_xl() -> PixArtConfig:
    """PixArt-alpha XL/2 (0.6B), the model PT-DiT's block derives from."""
    return PixArtConfig(depth=28, dim=1152, num_heads=16)


MODEL_PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "PT-DiT/S-Class": ptdit_s_class,
    "PT-DiT/B": ptdit_b,
    "PT-DiT/L": ptdit_l,
    "PT-DiT/XL": ptdit_xl,
    "PT-DiT/H": ptdit_h,
    "PT-DiT/Tiny": ptdit_tiny,
    "DiT-S/2": lambda: dit(12, 384, 6),
    "DiT-B/2": lambda: dit(12, 768, 12),
    "DiT-L/2": lambda: dit(24, 1024, 16),
    "DiT-XL/2": lambda: dit(28, 1152, 16),
    "PixArt-alpha-XL/2": pixart_alpha_xl,
}

# Parameter counts printed in Table 4 of the paper (PT-DiT presets only).
PAPER_PARAMETERS: dict[str, int] = {
    "PT-DiT/S-Class": 32_000_000,
    "PT-DiT/B": 144_000_000,
    "PT-DiT/L": 605_000_000,
    "PT-DiT/XL": 1_142_000_000,
    "PT-DiT/H": 1_795_000_000,
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """Config of preset `name`, with field overrides (e.g. depth=2); unknown names list the valid ones."""
    if name not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {name!r}; available: {', '.join(MODEL_PRESETS)}")
    config = MODEL_PRESETS[name]()
    return replace(config, **overrides) if overrides else config
