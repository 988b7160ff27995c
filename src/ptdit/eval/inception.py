"""Inception-v3 as used for FID: the network of pytorch-fid, whose weights are TensorFlow's 2015-12-05 Inception.

This is the "FID Inception" of Heusel et al. (2017) as ported to torch by pytorch-fid: torchvision's Inception-v3
layout with 1008 output classes and no auxiliary head, patched in three ways to match the TensorFlow graph the
FID weights come from (docs/evaluation.md#inception):
* the average pools inside the A, C and E blocks ignore padded zeros (`count_include_pad=False`);
* the last E block (Mixed_7c) max-pools its pool branch instead of average-pooling it.
Parameter names and shapes are exactly those of `pt_inception-2015-12-05-6726825d.pth`, so that file loads
as is (`load_fid_inception`). The features are the 2048-d global average pool ("pool3").

Resize protocol (pytorch-fid's, the one every FID in this library uses; docs/evaluation.md#resize-protocol):
uint8 RGB (B, H, W, 3) -> float32 / 255 in [0, 1] -> bilinear resize to 299 x 299 (torch `interpolate`,
`align_corners=False`, no antialiasing) -> 2 x - 1 in [-1, 1] -> network -> pool3 (B, 2048).
The TensorFlow FID code resizes differently, so scores are close to but not identical with TF-computed FIDs.

Shape legend: B batch, C channels, H / W image rows / columns.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_NAME
FID_WEIGHTS_SHA256_PREFIX = "6726825d"  # torch.hub convention: the file name carries its sha256 prefix
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_CLASSES = 1008  # TensorFlow's Inception has 1008 outputs (1000 classes + 8 unused)
PREPROCESS = "uint8 RGB / 255 -> bilinear 299x299 (torch, align_corners=False, no antialias) -> 2x-1"


class ConvBN(nn.Module):
    """Conv2d without bias, BatchNorm (eps 1e-3), ReLU: torchvision's BasicConv2d (keys `conv.*`, `bn.*`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_3x3(x_BCHW: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool does not count padded zeros (the FID patch of the A, C and E blocks).
    return F.avg_pool2d(x_BCHW, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_3x3(x_BCHW: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x_BCHW, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35 x 35 block: 1x1, 5x5, double 3x3 and pool branches (Mixed_5b/c/d)."""

    def __init__(self, in_channels: int, pool_features: int, ch) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, ch(64), 1)
        self.branch5x5_1 = ConvBN(in_channels, ch(48), 1)
        self.branch5x5_2 = ConvBN(ch(48), ch(64), 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, ch(64), 1)
        self.branch3x3dbl_2 = ConvBN(ch(64), ch(96), 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(ch(96), ch(96), 3, padding=1)
        self.branch_pool = ConvBN(in_channels, ch(pool_features), 1)
        self.out_channels = ch(64) + ch(64) + ch(96) + ch(pool_features)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x_BCHW))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x_BCHW)))
        pool = self.branch_pool(_avg_pool_3x3(x_BCHW))
        return torch.cat([self.branch1x1(x_BCHW), b5, b3, pool], dim=1)


class InceptionB(nn.Module):
    """35 -> 17 reduction (Mixed_6a): strided 3x3, strided double 3x3, max pool."""

    def __init__(self, in_channels: int, ch) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(in_channels, ch(384), 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, ch(64), 1)
        self.branch3x3dbl_2 = ConvBN(ch(64), ch(96), 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(ch(96), ch(96), 3, stride=2)
        self.out_channels = ch(384) + ch(96) + in_channels

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x_BCHW)))
        return torch.cat([self.branch3x3(x_BCHW), b3, F.max_pool2d(x_BCHW, kernel_size=3, stride=2)], dim=1)


class InceptionC(nn.Module):
    """17 x 17 block with factorised 7x7 convolutions (Mixed_6b/c/d/e)."""

    def __init__(self, in_channels: int, channels_7x7: int, ch) -> None:
        super().__init__()
        c7 = ch(channels_7x7)
        self.branch1x1 = ConvBN(in_channels, ch(192), 1)
        self.branch7x7_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, ch(192), (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, ch(192), (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(in_channels, ch(192), 1)
        self.out_channels = 4 * ch(192)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x_BCHW)))
        b7dbl = self.branch7x7dbl_1(x_BCHW)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b7dbl = conv(b7dbl)
        pool = self.branch_pool(_avg_pool_3x3(x_BCHW))
        return torch.cat([self.branch1x1(x_BCHW), b7, b7dbl, pool], dim=1)


class InceptionD(nn.Module):
    """17 -> 8 reduction (Mixed_7a)."""

    def __init__(self, in_channels: int, ch) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(in_channels, ch(192), 1)
        self.branch3x3_2 = ConvBN(ch(192), ch(320), 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_channels, ch(192), 1)
        self.branch7x7x3_2 = ConvBN(ch(192), ch(192), (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(ch(192), ch(192), (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(ch(192), ch(192), 3, stride=2)
        self.out_channels = ch(320) + ch(192) + in_channels

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x_BCHW))
        b7 = self.branch7x7x3_1(x_BCHW)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return torch.cat([b3, b7, F.max_pool2d(x_BCHW, kernel_size=3, stride=2)], dim=1)


class InceptionE(nn.Module):
    """8 x 8 block with split 1x3 / 3x1 outputs (Mixed_7b, Mixed_7c).

    `max_pool=True` is the FID patch of Mixed_7c: its pool branch max-pools (the TensorFlow graph does so).
    """

    def __init__(self, in_channels: int, ch, *, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(in_channels, ch(320), 1)
        self.branch3x3_1 = ConvBN(in_channels, ch(384), 1)
        self.branch3x3_2a = ConvBN(ch(384), ch(384), (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(ch(384), ch(384), (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_channels, ch(448), 1)
        self.branch3x3dbl_2 = ConvBN(ch(448), ch(384), 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(ch(384), ch(384), (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(ch(384), ch(384), (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_channels, ch(192), 1)
        self.out_channels = ch(320) + 4 * ch(384) + ch(192)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x_BCHW)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], dim=1)
        b3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x_BCHW))
        b3dbl = torch.cat([self.branch3x3dbl_3a(b3dbl), self.branch3x3dbl_3b(b3dbl)], dim=1)
        pool = _max_pool_3x3 if self.max_pool else _avg_pool_3x3  # max: the FID patch of Mixed_7c
        return torch.cat([self.branch1x1(x_BCHW), b3, b3dbl, self.branch_pool(pool(x_BCHW))], dim=1)


class InceptionV3(nn.Module):
    """The FID Inception-v3: (B, 3, 299, 299) in [-1, 1] -> pool3 features (B, 2048).

    Args:
        num_classes: outputs of `fc` (1008 in the FID weights); `fc` is kept only so the weights file loads
            as is, the features are taken before it.
        width: channel multiplier, a multiple of 1/32 (so that it can be read back from the stem's 32 channels);
            1.0 is the FID network. Smaller widths only exist so tests can run the same architecture quickly.
    """

    def __init__(self, *, num_classes: int = NUM_CLASSES, width: float = 1.0) -> None:
        super().__init__()
        if width <= 0 or (32 * width) % 1:
            raise ValueError(f"width must be a positive multiple of 1/32, got {width}")

        def ch(channels: int) -> int:
            return max(1, int(channels * width))

        self.width = width
        self.Conv2d_1a_3x3 = ConvBN(3, ch(32), 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(ch(32), ch(32), 3)
        self.Conv2d_2b_3x3 = ConvBN(ch(32), ch(64), 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(ch(64), ch(80), 1)
        self.Conv2d_4a_3x3 = ConvBN(ch(80), ch(192), 3)
        self.Mixed_5b = InceptionA(ch(192), 32, ch)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, 64, ch)
        self.Mixed_5d = InceptionA(self.Mixed_5c.out_channels, 64, ch)
        self.Mixed_6a = InceptionB(self.Mixed_5d.out_channels, ch)
        self.Mixed_6b = InceptionC(self.Mixed_6a.out_channels, 128, ch)
        self.Mixed_6c = InceptionC(self.Mixed_6b.out_channels, 160, ch)
        self.Mixed_6d = InceptionC(self.Mixed_6c.out_channels, 160, ch)
        self.Mixed_6e = InceptionC(self.Mixed_6d.out_channels, 192, ch)
        self.Mixed_7a = InceptionD(self.Mixed_6e.out_channels, ch)
        self.Mixed_7b = InceptionE(self.Mixed_7a.out_channels, ch, max_pool=False)
        self.Mixed_7c = InceptionE(self.Mixed_7b.out_channels, ch, max_pool=True)
        self.feature_dim = self.Mixed_7c.out_channels
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool3 features.

        Args:
            x: (B, 3, H, W) in [-1, 1], normally 299 x 299 (see `preprocess`); at least 75 x 75.

        Returns:
            (B, feature_dim) features (2048 at width 1).
        """
        x_BCHW = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (B, 64, 147, 147)
        x_BCHW = F.max_pool2d(x_BCHW, kernel_size=3, stride=2)  # (B, 64, 73, 73)
        x_BCHW = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x_BCHW))  # (B, 192, 71, 71)
        x_BCHW = F.max_pool2d(x_BCHW, kernel_size=3, stride=2)  # (B, 192, 35, 35)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a):
            x_BCHW = block(x_BCHW)  # (B, 768, 17, 17) after Mixed_6a
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a):
            x_BCHW = block(x_BCHW)  # (B, 1280, 8, 8) after Mixed_7a
        x_BCHW = self.Mixed_7c(self.Mixed_7b(x_BCHW))  # (B, 2048, 8, 8)
        return x_BCHW.mean(dim=(2, 3))  # (B, 2048): the global average pool

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], *, source: str = "state dict") -> InceptionV3:
        """Builds the network whose width and class count match `state` and loads it (strict key check)."""
        from ptdit.eval.weights import load_exact

        stem, fc = state.get("Conv2d_1a_3x3.conv.weight"), state.get("fc.weight")
        if stem is None or fc is None:
            raise ValueError(f"{source} is not an FID Inception-v3 state dict (no Conv2d_1a_3x3 / fc weights)")
        model = cls(num_classes=fc.shape[0], width=stem.shape[0] / 32)
        return load_exact(model, state, source=source)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """The FID resize protocol (module docstring).

    Args:
        images: (B, H, W, 3) uint8 RGB.

    Returns:
        (B, 3, 299, 299) float32 in [-1, 1].
    """
    x_BCHW = images.permute(0, 3, 1, 2).float() / 255.0
    x_BCHW = F.interpolate(x_BCHW, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    return 2 * x_BCHW - 1


def load_fid_inception(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> InceptionV3:
    """The FID Inception-v3 with weights from a local file (`.pth` read with `weights_only=True`, or safetensors).

    Args:
        path: the weights file; None = `FID_WEIGHTS_NAME` in torch's hub checkpoint folder, where pytorch-fid
            caches it (`$TORCH_HOME/hub/checkpoints`).
        device: where to put the network.

    Raises:
        MissingWeightsError: the file does not exist (the message says what to download and where to put it).
        ValueError: the file is not an FID Inception-v3 state dict.
    """
    from ptdit.eval.weights import file_sha256, read_weights

    state, path = read_weights(
        path, default_name=FID_WEIGHTS_NAME, url=FID_WEIGHTS_URL, what="FID Inception-v3", flag="inception"
    )
    if not file_sha256(path).startswith(FID_WEIGHTS_SHA256_PREFIX):
        warnings.warn(
            f"{path} is not the standard {FID_WEIGHTS_NAME} (its sha256 does not start with "
            f"{FID_WEIGHTS_SHA256_PREFIX}): scores will not be comparable with published FIDs",
            stacklevel=2,
        )
    return InceptionV3.from_state_dict(state, source=str(path)).to(device).eval()


__all__ = [
    "FEATURE_DIM",
    "FID_WEIGHTS_NAME",
    "FID_WEIGHTS_URL",
    "InceptionV3",
    "load_fid_inception",
    "preprocess",
]
