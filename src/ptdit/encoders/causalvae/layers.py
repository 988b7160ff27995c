"""Building blocks of the CausalVAE: causal convolutions, resamplers, residual blocks and per-frame attention.

Every module takes and returns 5-D feature maps `B C F H W`. "2D" layers run on each frame separately
(frames folded into the batch, so their GroupNorm statistics are per frame too); "3D" layers see the whole
clip. Causality in time comes from `CausalConv3d`, which pads by repeating the first frame instead of looking
at frames that follow; GroupNorm in the 3D blocks still pools over all frames, so the VAE as a whole is not
strictly frame-causal (docs/inference.md#the-released-pipeline).

Attribute names (`conv`, `norm1`, `nin_shortcut`, `q`, `proj_out`, ...) are the reference's, so that the
released state dict loads without renaming.

Shape legend: B batch, C channels, F frames, H / W rows / cols of the feature map, L = H * W positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ptdit.attention.functional import attention

__all__ = [
    "AttentionBlock",
    "CausalConv3d",
    "FrameConv2d",
    "ResnetBlock2D",
    "ResnetBlock3D",
    "make_attention",
    "make_conv",
    "make_downsample",
    "make_resnet",
    "make_time_upsample",
    "make_upsample",
]


def per_frame(fn: nn.Module, x_BCFHW: Tensor) -> Tensor:
    """Applies a 4-D module to every frame: (B, C, F, H, W) -> (B, C', F, H', W')."""
    frames = x_BCFHW.shape[2]
    y_NCHW = fn(rearrange(x_BCFHW, "b c f h w -> (b f) c h w"))
    return rearrange(y_NCHW, "(b f) c h w -> b c f h w", f=frames)


def group_norm(channels: int) -> nn.GroupNorm:
    """The one normalisation of the VAE: 32 groups, eps 1e-6, affine."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


# ------------------------------------------------------------------------------------------------------
# Convolutions
# ------------------------------------------------------------------------------------------------------


class FrameConv2d(nn.Conv2d):
    """A Conv2d applied to each frame of a (B, C, F, H, W) clip (reference name: Conv2d)."""

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C', F, H', W')."""
        return per_frame(super().forward, x)


class CausalConv3d(nn.Module):
    """Conv3d that is causal in time: the first frame is repeated (k_t - 1) times in front, rows and cols are
    zero-padded by `padding` (its temporal entry is ignored), so F frames give F output frames at stride 1.

    Args:
        in_channels, out_channels: channel counts.
        kernel_size: int or (k_t, k_h, k_w).
        stride: int or (s_t, s_h, s_w).
        padding: int or (p_t, p_h, p_w); spatial zero padding.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int, int],
        *,
        stride: int | tuple[int, int, int] = 1,
        padding: int | tuple[int, int, int] = 0,
    ) -> None:
        super().__init__()
        kernel = _triple(kernel_size)
        pad = _triple(padding)
        self.time_pad = kernel[0] - 1
        self.conv = nn.Conv3d(in_channels, out_channels, kernel, stride=_triple(stride), padding=(0, pad[1], pad[2]))

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C', F', H', W')."""
        if self.time_pad:
            first_BCFHW = x_BCFHW[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            x_BCFHW = torch.cat([first_BCFHW, x_BCFHW], dim=2)
        return self.conv(x_BCFHW)


def make_conv(
    kind: str, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0
) -> nn.Module:
    """A per-frame ("Conv2d") or causal 3D ("CausalConv3d") convolution with a cubic / square kernel."""
    if kind == "Conv2d":
        return FrameConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
    return CausalConv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)


def _triple(value: int | tuple[int, ...]) -> tuple[int, int, int]:
    return (value,) * 3 if isinstance(value, int) else (value[0], value[1], value[2])


# ------------------------------------------------------------------------------------------------------
# Residual blocks
# ------------------------------------------------------------------------------------------------------


class _ResnetBlock(nn.Module):
    """norm -> SiLU -> conv -> norm -> SiLU -> dropout -> conv, plus a (1x1 projected) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, conv: type[nn.Module]) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = conv(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = conv(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = conv(in_channels, out_channels, 1)

    def residual(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class ResnetBlock2D(_ResnetBlock):
    """Residual block run frame by frame (2D convs, GroupNorm statistics per frame)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__(in_channels, out_channels, dropout, nn.Conv2d)

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C', F, H, W)."""
        return per_frame(self.residual, x_BCFHW)


class ResnetBlock3D(_ResnetBlock):
    """Residual block on the whole clip (causal 3x3x3 convs, GroupNorm over frames, rows and cols)."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__(in_channels, out_channels, dropout, CausalConv3d)

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C', F, H, W)."""
        return self.residual(x_BCFHW)


def make_resnet(kind: str, in_channels: int, out_channels: int, dropout: float) -> nn.Module:
    return (ResnetBlock2D if kind == "ResnetBlock2D" else ResnetBlock3D)(in_channels, out_channels, dropout)


# ------------------------------------------------------------------------------------------------------
# Attention
# ------------------------------------------------------------------------------------------------------


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H * W positions of each frame, with a residual connection.

    GroupNorm runs over the whole clip; q, k, v and the output projection are 1x1x1 causal convs.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.q = CausalConv3d(channels, channels, 1)
        self.k = CausalConv3d(channels, channels, 1)
        self.v = CausalConv3d(channels, channels, 1)
        self.proj_out = CausalConv3d(channels, channels, 1)

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C, F, H, W)."""
        _, _, frames, height, _ = x_BCFHW.shape
        h_BCFHW = self.norm(x_BCFHW)
        # One attention problem per frame, one head of width C: (B*F, 1, L, C).
        q_N1LC, k_N1LC, v_N1LC = (
            rearrange(proj(h_BCFHW), "b c f h w -> (b f) 1 (h w) c") for proj in (self.q, self.k, self.v)
        )
        out_N1LC = attention(q_N1LC, k_N1LC, v_N1LC)  # softmax(q k^T / sqrt(C)) v
        out_BCFHW = rearrange(out_N1LC, "(b f) 1 (h w) c -> b c f h w", f=frames, h=height)
        return x_BCFHW + self.proj_out(out_BCFHW)


def make_attention(kind: str, channels: int) -> nn.Module:
    # Both accepted names denote the same per-frame attention (see config.ATTENTIONS).
    return AttentionBlock(channels)


# ------------------------------------------------------------------------------------------------------
# Downsamplers (halve rows and cols; "3D" also halves frames after the first)
# ------------------------------------------------------------------------------------------------------


class Downsample(nn.Module):
    """Per-frame stride-2 3x3 conv after zero-padding one row / col at the bottom / right (H -> H // 2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2)

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C', F, H // 2, W // 2)."""
        return per_frame(self.conv, F.pad(x_BCFHW, (0, 1, 0, 1)))


class SpatialDownsample2x(nn.Module):
    """Causal (1, 3, 3) conv with spatial stride 2 after the same bottom / right zero padding."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, (1, 3, 3), stride=(1, 2, 2))

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C', F, H // 2, W // 2)."""
        return self.conv(F.pad(x_BCFHW, (0, 1, 0, 1)))


class Spatial2xTime2x3DDownsample(nn.Module):
    """Causal 3x3x3 conv with stride 2 on all axes: F -> (F - 1) // 2 + 1 frames (1 + 2k -> 1 + k)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, 3, stride=2)

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C', (F - 1) // 2 + 1, H // 2, W // 2)."""
        return self.conv(F.pad(x_BCFHW, (0, 1, 0, 1)))


def make_downsample(kind: str, channels: int) -> nn.Module:
    classes = {
        "Downsample": Downsample,
        "SpatialDownsample2x": SpatialDownsample2x,
        "Spatial2xTime2x3DDownsample": Spatial2xTime2x3DDownsample,
    }
    return classes[kind](channels, channels)


# ------------------------------------------------------------------------------------------------------
# Upsamplers
# ------------------------------------------------------------------------------------------------------


class SpatialUpsample2x(nn.Module):
    """Nearest-neighbour 2x on rows and cols, then a causal (1, 3, 3) conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, (1, 3, 3), padding=1)

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C', F, 2H, 2W)."""
        return self.conv(F.interpolate(x_BCFHW, scale_factor=(1, 2, 2), mode="nearest"))


class Spatial2xTime2x3DUpsample(nn.Module):
    """Trilinear 2x on rows and cols and, for frames after the first, 2x in time; then a causal 3x3x3 conv.

    The first frame is interpolated on its own, so F frames become 1 + 2 (F - 1).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(in_channels, out_channels, 3, padding=1)

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C', 1 + 2 (F - 1), 2H, 2W)."""
        first_BCFHW = F.interpolate(x_BCFHW[:, :, :1], scale_factor=(1, 2, 2), mode="trilinear")
        if x_BCFHW.shape[2] > 1:
            rest_BCFHW = F.interpolate(x_BCFHW[:, :, 1:], scale_factor=(2, 2, 2), mode="trilinear")
            first_BCFHW = torch.cat([first_BCFHW, rest_BCFHW], dim=2)
        return self.conv(first_BCFHW)


class TimeUpsample2x(nn.Module):
    """Parameter-free 2x in time for the frames after the first (linear in time): F -> 1 + 2 (F - 1)."""

    def forward(self, x_BCFHW: Tensor) -> Tensor:
        """(B, C, F, H, W) -> (B, C, 1 + 2 (F - 1), H, W)."""
        if x_BCFHW.shape[2] == 1:
            return x_BCFHW
        rest_BCFHW = F.interpolate(x_BCFHW[:, :, 1:], scale_factor=(2, 1, 1), mode="trilinear")
        return torch.cat([x_BCFHW[:, :, :1], rest_BCFHW], dim=2)


def make_upsample(kind: str, channels: int) -> nn.Module:
    classes = {"SpatialUpsample2x": SpatialUpsample2x, "Spatial2xTime2x3DUpsample": Spatial2xTime2x3DUpsample}
    return classes[kind](channels, channels)


def make_time_upsample(kind: str, channels: int) -> nn.Module:
    # The only runnable temporal upsampler of the reference has no parameters (see config.TIME_UPSAMPLES).
    return TimeUpsample2x()
