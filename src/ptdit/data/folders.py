"""Datasets on disk for the paper's recipes: image folders and video folders.

- `image-folder`: either class subfolders (`root/<class>/*.jpg`, the ImageNet layout; the caption is the
  class name and `label` its index) or flat images with a caption in a same-named `.txt` file.
- `video-folder`: videos (`.mp4`, `.webm`, `.gif`, ...) with same-named `.txt` captions; the first
  `frames` frames (every `frame_stride`-th) are used.

Pixels are resized (shorter side) and center-cropped to `size`, returned as (3, F, size, size) in [-1, 1].
A file that cannot be decoded raises a ValueError naming it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptdit.optional import require

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")


def _files(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in extensions)


def _resize_crop(image: Any, size: int) -> np.ndarray:
    """PIL image -> (size, size, 3) uint8: shorter side resized to `size` (bicubic), then center crop."""
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
    w, h = image.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)))


def _to_pixels(frames: list[np.ndarray]) -> torch.Tensor:
    """List of (H, W, 3) uint8 -> (3, F, H, W) float32 in [-1, 1]."""
    array = torch.from_numpy(np.stack(frames)).float()  # (F, H, W, 3)
    return (array / 127.5 - 1).permute(3, 0, 1, 2).contiguous()


def _caption(path: Path) -> str:
    text = path.with_suffix(".txt")
    if not text.is_file():
        raise ValueError(f"no caption file {text.name} next to {path}; add one, or use class subfolders")
    return text.read_text(encoding="utf-8").strip()


def _check_root(root: str | os.PathLike[str] | None, kind: str) -> Path:
    if root is None:
        raise ValueError(f"the {kind} dataset needs data.options.root (a folder)")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{kind} root {folder} not found")
    return folder


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images from a folder (class subfolders or `.txt` captions); sample i is file i (sorted), no randomness."""

    def __init__(self, *, root: str | None = None, size: int = 256, seed: int = 0) -> None:
        folder = _check_root(root, "image-folder")
        self.size, self.seed = size, seed
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if classes:
            self.classes: list[str] | None = classes
            self.items = [(f, i) for i, c in enumerate(classes) for f in _files(folder / c, IMAGE_EXTENSIONS)]
        else:
            self.classes = None
            self.items = [(f, -1) for f in _files(folder, IMAGE_EXTENSIONS)]
        if not self.items:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {folder}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.items[index]
        try:
            with Image.open(path) as image:
                pixels = _to_pixels([_resize_crop(image, self.size)])
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            raise ValueError(f"cannot read image {path} ({err}); remove or replace the file") from None
        item = {"pixels": pixels, "index": index}
        if self.classes is not None:
            item.update(caption=self.classes[label], label=label)
        else:
            item["caption"] = _caption(path)
        return item


class VideoFolderDataset(torch.utils.data.Dataset):
    """Videos with `.txt` captions, decoded with PyAV; the first `frames` frames at `frame_stride`."""

    def __init__(
        self, *, root: str | None = None, size: int = 256, frames: int = 17, frame_stride: int = 1, seed: int = 0
    ) -> None:
        folder = _check_root(root, "video-folder")
        if frames < 1 or frame_stride < 1:
            raise ValueError(f"frames and frame_stride must be >= 1, got {frames}, {frame_stride}")
        self.size, self.frames, self.stride, self.seed = size, frames, frame_stride, seed
        self.items = _files(folder, VIDEO_EXTENSIONS)
        if not self.items:
            raise ValueError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) under {folder}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        av = require("av", "video", purpose="reading videos")
        path = self.items[index]
        wanted = self.frames * self.stride
        frames = []
        try:
            with av.open(str(path)) as container:
                for i, frame in enumerate(container.decode(video=0)):
                    if i % self.stride == 0:
                        frames.append(_resize_crop(frame.to_image(), self.size))
                    if i + 1 >= wanted:
                        break
        except (av.error.FFmpegError, OSError) as err:
            raise ValueError(f"cannot decode video {path} ({err}); remove or replace the file") from None
        if len(frames) < self.frames:
            raise ValueError(f"video {path} has {len(frames)} usable frames, fewer than frames={self.frames}")
        return {"pixels": _to_pixels(frames), "caption": _caption(path), "index": index}
