"""The default floating-point precision: the one place that decides when bf16 runs without being asked
(docs/decisions.md#default-precision).

bf16 is faster only where the hardware has bf16 matrix units. On a CPU with AMX / AVX512-BF16, inference with
bf16 weights was measured faster than fp32 at every width (0.42-0.60x the time, widths 128-1152), but a training
step under bf16 autocast only from width 256 up: at 128 (the CPU demos) its casts and small kernels make it
1.2-1.3x *slower* (BENCHMARKS.md "Default precision"). So "auto" means bf16 on CUDA GPUs that support it, bf16
on such CPUs from `BF16_CPU_MIN_WIDTH[use]` up, and fp32 everywhere else. Since the attention backward runs in
fp32 on CPU (docs/decisions.md#attention-backward-in-fp32-on-cpu), one measurement (2026-12-04) found autocast
faster from width 128 too (0.82x); the threshold stays until more days agree (BENCHMARKS.md "Attention in bf16
on CPU").

Reproducible measurements (the demos, the studies, `ptdit eval`) keep fp32 unless told, so that their scores do
not depend on which CPU they run on.
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # the resolved precisions and their torch dtypes
USES = ("inference", "training")
# Narrowest network width at which bf16 is measured faster than fp32 on a CPU with bf16 matrix units
# (BENCHMARKS.md "Default precision": forward and autocast training step of PT-DiT at widths 128-1152).
BF16_CPU_MIN_WIDTH = {"inference": 0, "training": 256}


def has_fast_bf16(device: torch.device | str) -> bool:
    """Whether `device` has bf16 matrix units: a CUDA GPU with bf16 support, or a CPU with AMX or AVX512-BF16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private, so looked up defensively
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def auto_precision(width: int, device: torch.device | str, use: str) -> str:
    """What "auto" means for `use` ("inference" or "training") of a network of this width on this device: "bf16"
    where it is measured faster, else "fp32"."""
    if use not in USES:
        raise ValueError(f"use must be one of {', '.join(USES)}, got {use!r}")
    if not has_fast_bf16(device):
        return "fp32"
    wide = width >= BF16_CPU_MIN_WIDTH[use]
    return "bf16" if torch.device(device).type == "cuda" or wide else "fp32"


def resolve_precision(precision: str, width: int, device: torch.device | str, use: str) -> str:
    """`precision` itself ("fp32" / "bf16"), or what "auto" means for this use, width and device."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return auto_precision(width, device, use) if precision == "auto" else precision


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a resolved precision name."""
    return DTYPES[precision]
