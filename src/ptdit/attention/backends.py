"""Attention backend selection: an enum, a context manager and cheap capability checks.

Every attention call in ptdit goes through `ptdit.attention.functional.attention`, which asks this module
which backend to run. Precedence: an explicit `backend=` argument (e.g. a module's override attribute),
then the innermost `use_attention_backend(...)` context, then the default (SDPA).
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
from collections.abc import Iterator

import torch


class AttentionBackend(str, enum.Enum):
    """Names of the attention implementations behind the one seam."""

    MATH = "math"  # reference: explicit QK^T, float32 softmax, AV. Slow, exact, always available.
    SDPA = "sdpa"  # torch.nn.functional.scaled_dot_product_attention (flash / memory-efficient / math kernels).
    # torch.nn.attention.flex_attention: boolean masks become block masks, so fully masked tiles are skipped.
    # Compiled on CUDA (the intended use); on CPU it runs torch's unfused eager path, forward only.
    FLEX = "flex"


_current: contextvars.ContextVar[AttentionBackend | None] = contextvars.ContextVar(
    "ptdit_attention_backend", default=None
)
DEFAULT_BACKEND = AttentionBackend.SDPA


def resolve_backend(backend: AttentionBackend | str | None = None) -> AttentionBackend:
    """Returns the backend to use: the argument if given, else the active context's, else the default."""
    if backend is None:
        backend = _current.get() or DEFAULT_BACKEND
    try:
        return AttentionBackend(backend)
    except ValueError:
        names = ", ".join(b.value for b in AttentionBackend)
        raise ValueError(f"unknown attention backend {backend!r}; choose one of: {names}") from None


@contextlib.contextmanager
def use_attention_backend(backend: AttentionBackend | str) -> Iterator[AttentionBackend]:
    """Runs every attention call inside the `with` block on `backend` (unless a module overrides it)."""
    resolved = resolve_backend(backend)
    token = _current.set(resolved)
    try:
        yield resolved
    finally:
        _current.reset(token)


def check_backend_inputs(backend: AttentionBackend, q: torch.Tensor, mask: torch.Tensor | None) -> None:
    """Raises ValueError when `backend` cannot honour the inputs (instead of silently falling back)."""
    if mask is not None and mask.dtype != torch.bool:
        raise ValueError(f"attention masks must be boolean (True = may attend), got dtype {mask.dtype}")
    if q.dim() != 4:
        raise ValueError(f"attention expects q, k, v of shape (B, heads, L, head_dim), got q of shape {tuple(q.shape)}")


def check_flex_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Raises ValueError naming the requirement when FlexAttention cannot run these inputs."""
    try:
        from torch.nn.attention import flex_attention  # noqa: F401  (availability check only)
    except ImportError as err:
        raise ValueError(
            f"attention backend 'flex' needs torch >= 2.5 (torch.nn.attention.flex_attention), got {torch.__version__}"
        ) from err
    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise ValueError(
            "attention backend 'flex' has no backward on CPU in torch; use it on CUDA for training, or run on CPU "
            "without gradients (torch.no_grad / inference_mode)"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"attention backend 'flex' needs one dtype for q, k, v, got {q.dtype}, {k.dtype}, {v.dtype}")
