"""Datasets on disk in folder layouts: `image-folder` and `video-folder` (docs/data.md).

- `image-folder`: either class subfolders (`root/<class>/*.jpg`, the ImageNet layout; the caption is the
  class name and `label` its index) or flat images with a caption in a same-named `.txt` file.
- `video-folder`: clips (`.mp4`, `.webm`, `.gif`, `.apng`, `.npy`, ...) with same-named `.txt` captions; the
  first `frames` frames (every `frame_stride`-th) are used.

Both are `ptdit.data.files.FileDataset`s: pixels are resized to cover the target and center-cropped (smaller
files are upscaled by default, as these layouts always did), and a file that cannot be used is skipped and
counted (docs/data.md#bad-data).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ptdit.data.decode import CLIP_EXTENSIONS
from ptdit.data.decode import IMAGE_EXTENSIONS as IMAGE_TYPES
from ptdit.data.files import FileDataset
from ptdit.data.sources import FolderFiles

# Dotted suffixes of the media files other modules recognise (e.g. `ptdit.eval.samples`).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")


def _folder(path: Any, root: str | None, kind: str) -> Path:
    where = root if root is not None else path
    if isinstance(where, (list, tuple)):
        raise ValueError(f"the {kind} dataset reads one folder; give data.path as a single folder")
    if where is None:
        raise ValueError(f"the {kind} dataset needs data.path (a folder)")
    folder = Path(os.path.expanduser(str(where)))
    if not folder.is_dir():
        raise FileNotFoundError(f"{kind} folder {folder} not found")
    return folder


def image_folder_dataset(
    *, path: Any = None, root: str | None = None, size: int = 256, seed: int = 0, allow_upscale: bool = True
) -> FileDataset:
    """Images in a folder (class subfolders, or same-named `.txt` captions); `root` is the older name of `path`."""
    source = FolderFiles(_folder(path, root, "image-folder"), IMAGE_TYPES)
    return FileDataset(source, size=size, allow_upscale=allow_upscale)


def video_folder_dataset(
    *,
    path: Any = None,
    root: str | None = None,
    size: int = 256,
    seed: int = 0,
    frames: int = 17,
    frame_stride: int = 1,
    allow_upscale: bool = True,
) -> FileDataset:
    """Clips in a folder with same-named `.txt` captions: the first `frames` frames at `frame_stride`."""
    source = FolderFiles(_folder(path, root, "video-folder"), CLIP_EXTENSIONS)
    return FileDataset(source, size=size, frames=frames, frame_stride=frame_stride, allow_upscale=allow_upscale)


__all__ = ["IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "image_folder_dataset", "video_folder_dataset"]
