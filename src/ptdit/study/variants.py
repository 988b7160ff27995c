"""Table 2 of the paper as study variants, and the settings (profiles) the studies train with (docs/study.md).

Every variant is the full model with one change; the paper's FID-50K of each (PT-DiT/S-Class, ImageNet 256,
400k iterations, lower is better) is copied from Table 2 of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The four groups of Table 2, in the paper's order.
GROUPS = ("component", "proxy", "injection", "compression")

# Token grid of the paper's 256 px ablations (256 px / VAE 8 / patch 2 = 16): 32 px pixels / patch 2 here.
ABLATION_GRID = (1, 16, 16)


@dataclass(frozen=True)
class Variant:
    """One row of Table 2: its name, group(s), model-field changes against the full model, and the paper's FID."""

    name: str
    label: str
    groups: tuple[str, ...]
    changes: dict[str, Any] = field(default_factory=dict)
    paper_fid: float = 0.0


# Table 2 of the paper. The full model (Average, Cross-Attention, (1,2,2), GIIM + WSA + SWSA) is the reference
# row of every group.
VARIANTS: tuple[Variant, ...] = (
    Variant("full", "Full model", GROUPS, {}, 19.30),
    Variant("no-giim", "w/o GIIM", ("component",), {"use_global_interaction": False}, 23.71),
    Variant("no-swa", "w/o SWA", ("component",), {"use_shifted_window": False}, 23.59),
    Variant("no-tcm", "w/o TCM", ("component",), {"use_window_attention": False, "use_shifted_window": False}, 69.07),
    Variant("proxy-top-left", "Top-Left proxy", ("proxy",), {"proxy_mode": "first"}, 20.84),
    Variant("proxy-random", "Random proxy", ("proxy",), {"proxy_mode": "random"}, 21.00),
    Variant("inject-interpolate", "Interpolate injection", ("injection",), {"injection": "interpolate"}, 21.82),
    Variant(
        "inject-linear",
        "Linear injection",
        ("injection",),
        {"injection": "linear", "injection_grid": ABLATION_GRID},
        20.24,
    ),
    Variant("window-1-4-4", "Compression (1,4,4)", ("compression",), {"window_size": (1, 4, 4)}, 21.24),
    Variant("window-1-8-8", "Compression (1,8,8)", ("compression",), {"window_size": (1, 8, 8)}, 20.43),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)

# Conclusions the paper draws from Table 2 (Section 4.2), as (statement, better variant, worse variant):
# each holds in miniature when our mean metric orders the pair the same way.
PAPER_CLAIMS: tuple[tuple[str, str, str], ...] = (
    ("GIIM helps (full model beats w/o GIIM)", "full", "no-giim"),
    ("shifted windows help (full model beats w/o SWA)", "full", "no-swa"),
    ("the texture complement is essential (full model beats w/o TCM)", "full", "no-tcm"),
    ("w/o TCM is the worst of the components (w/o GIIM beats w/o TCM)", "no-giim", "no-tcm"),
    ("averaged proxies beat top-left proxies", "full", "proxy-top-left"),
    ("averaged proxies beat random proxies", "full", "proxy-random"),
    ("cross-attention injection beats interpolation", "full", "inject-interpolate"),
    ("cross-attention injection beats a linear map", "full", "inject-linear"),
    ("window (1,2,2) beats (1,4,4)", "full", "window-1-4-4"),
    ("window (1,2,2) beats (1,8,8)", "full", "window-1-8-8"),
)


def get_variants(names: list[str] | None = None) -> list[Variant]:
    """The named variants in Table 2 order (all when `names` is empty); ValueError naming an unknown one."""
    if not names:
        return list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANT_NAMES))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {list(VARIANT_NAMES)}")
    return [v for v in VARIANTS if v.name in names]


def group_members(group: str, variants: list[Variant]) -> list[Variant]:
    return [v for v in variants if group in v.groups]


@dataclass(frozen=True)
class Profile:
    """What one study run trains and evaluates: model size, steps, batch, seeds and evaluation sizes.

    Results are defined by these numbers (and the seeds), never by wall-clock.
    """

    dim: int
    depth: int
    num_heads: int
    steps: int
    batch_size: int
    seeds: tuple[int, ...]
    eval_prompts: int  # oracle-benchmark prompts, stratified over its categories (0: the whole suite)
    fd_samples: int  # samples for shapes-FD
    fd_real: int  # real reference samples for shapes-FD
    sampling_steps: int
    lr: float = 2e-3
    warmup_steps: int = 200
    eval_every: int = 0  # efficiency curves: evaluate every this many steps (0: only at the end)
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


# `ptdit study ablations`: 10 variants x 2 seeds = 20 runs. Full: 700 steps of batch 32 per run, about 1.9 hours
# on an idle 2-core CPU (estimate and how it was made: docs/study.md#time).
ABLATION_PROFILES = {
    "quick": Profile(
        dim=32,
        depth=2,
        num_heads=2,
        steps=4,
        batch_size=8,
        seeds=(0, 1),
        eval_prompts=7,
        fd_samples=16,
        fd_real=64,
        sampling_steps=4,
        warmup_steps=2,
    ),
    "full": Profile(
        dim=64,
        depth=4,
        num_heads=4,
        steps=700,
        batch_size=32,
        seeds=(0, 1),
        eval_prompts=48,
        fd_samples=200,
        fd_real=2000,
        sampling_steps=20,
        warmup_steps=100,
    ),
}
