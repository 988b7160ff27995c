"""Input checks and conditioning helpers shared by PT-DiT and the baselines.

Shape legend: B batch, C channels, F frames, H/W latent height/width, S text tokens, E caption channels.
"""

from __future__ import annotations

import torch


def check_latents(x: torch.Tensor, in_channels: int, dtype: torch.dtype | None = None) -> None:
    """Raises ValueError unless `x` is (B, in_channels, F, H, W), and TypeError unless it is a floating tensor of
    float32 or the weights' `dtype` (other dtypes are a mistake, not something to cast silently)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"latents must be a torch.Tensor (B, C, F, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"latents must be floating point, got {x.dtype}; pass x.float()")
    if dtype is not None and x.dtype not in (dtype, torch.float32):
        raise TypeError(
            f"latents are {x.dtype} but the model's weights are {dtype}; pass float32 latents (x.float()) or "
            f"convert the model first (model.to({dtype}))"
        )
    if x.dim() != 5:
        hint = " (for images add a frame axis: x[:, :, None])" if x.dim() == 4 else ""
        raise ValueError(f"latents must be (B, C, F, H, W), got shape {tuple(x.shape)}{hint}")
    if x.shape[1] != in_channels:
        raise ValueError(f"latents have {x.shape[1]} channels, the model expects in_channels={in_channels}")


def expand_timesteps(t: torch.Tensor | float, batch_size: int, device: torch.device) -> torch.Tensor:
    """Scalar, (1,) or (B,) network times -> (B,) float32 on `device`; each sample may have its own time."""
    given = torch.as_tensor(t, dtype=torch.float32, device=device)
    t_B = given.flatten()
    if t_B.numel() == 1:
        return t_B.expand(batch_size)
    if given.dim() != 1 or t_B.numel() != batch_size:
        raise ValueError(
            f"timestep must be a scalar or have one entry per sample, shape ({batch_size},); "
            f"got shape {tuple(given.shape)}"
        )
    return t_B


def check_context(context: torch.Tensor | None, context_dim: int, batch_size: int) -> torch.Tensor:
    """Raises ValueError unless `context` is (B, S, context_dim)."""
    if context is None:
        raise ValueError("this model is text-conditional: pass context (B, S, C_text) and context_mask (B, S)")
    if not isinstance(context, torch.Tensor) or not context.is_floating_point():
        got = context.dtype if isinstance(context, torch.Tensor) else type(context).__name__
        raise TypeError(f"context must be a floating-point torch.Tensor (B, S, C_text), got {got}")
    if context.dim() != 3 or context.shape[0] != batch_size or context.shape[2] != context_dim:
        raise ValueError(f"context must be (B={batch_size}, S, {context_dim}), got shape {tuple(context.shape)}")
    return context


def key_padding_mask(context_mask: torch.Tensor | None, batch_size: int, num_tokens: int) -> torch.Tensor | None:
    """(B, S) mask, 1 = real token -> boolean (B, 1, S) key mask for attention, or None if nothing is masked.

    A caption with no valid token attends to all tokens as if unmasked, which is what the reference's finite
    -10000 bias does, instead of producing NaN.
    """
    if context_mask is None:
        return None
    if tuple(context_mask.shape) != (batch_size, num_tokens):
        raise ValueError(f"context_mask must be (B={batch_size}, S={num_tokens}), got {tuple(context_mask.shape)}")
    valid_BS = context_mask > 0.5 if context_mask.is_floating_point() else context_mask.bool()
    valid_BS = valid_BS | ~valid_BS.any(dim=1, keepdim=True)
    return None if bool(valid_BS.all()) else valid_BS[:, None, :]


def check_class_labels(class_labels: torch.Tensor | None, batch_size: int) -> torch.Tensor:
    if class_labels is None:
        raise ValueError("this model is class-conditional: pass class_labels (B,) integer labels")
    class_labels = torch.as_tensor(class_labels).flatten()
    if class_labels.numel() != batch_size:
        raise ValueError(f"class_labels must have one label per sample ({batch_size}), got {class_labels.numel()}")
    return class_labels
