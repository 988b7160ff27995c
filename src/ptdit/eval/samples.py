"""Sample sets for the metrics: image or video folders and ADM-style `.npz` arrays, read in uint8 batches.

A set is scanned once up front (file list, every image's size, every video's frame size), so an empty,
unreadable or mixed-size set fails with one line before any feature is computed; then it is decoded batch by
batch, so 50k images never sit in memory at once. Formats (docs/evaluation.md#inputs):
* a folder, searched recursively (class subfolders allowed), hidden files skipped, sorted by relative path;
  videos with the same name and different containers (`a.mp4`, `a.gif`) count once, the first of
  `VIDEO_EXTENSIONS` winning;
* an `.npz` holding a uint8 array `arr_0`: (N, H, W, 3) images, as written by ADM / DiT sampling scripts, or
  (N, T, H, W, 3) videos; read from the archive in slices, never whole.
Reference sets of other sizes (e.g. COCO) are prepared with ADM's center crop (`center_crop`) when asked.

Shape legend: N items, B batch, T frames, H / W rows / columns.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptdit.data.folders import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from ptdit.optional import require

NPZ_KEY = "arr_0"


@dataclass(frozen=True)
class SampleSet:
    """A scanned set of images or videos.

    Attributes:
        path: the folder or `.npz` file.
        media: "image" or "video".
        source: "folder" or "npz".
        count: number of items.
        item_shape: (H, W) of an image or (T, H, W) of a video clip as the batches deliver it (after the crop
            and the frame limit).
        files: the items of a folder, in order (empty for `.npz`).
        center_crop: side of ADM's center crop applied to every item, or None.
    """

    path: Path
    media: str
    source: str
    count: int
    item_shape: tuple[int, ...]
    files: tuple[Path, ...] = ()
    center_crop: int | None = None

    def batches(self, batch_size: int, *, limit: int | None = None) -> Iterator[np.ndarray]:
        """Yields uint8 (B, H, W, 3) images or (B, T, H, W, 3) videos, the first `limit` items in order."""
        count = self.count if limit is None else min(limit, self.count)
        if self.source == "npz":
            yield from self._npz_batches(batch_size, count)
            return
        read = _read_image if self.media == "image" else _read_video
        frames = self.item_shape[0] if self.media == "video" else None
        for start in range(0, count, batch_size):
            paths = self.files[start : min(start + batch_size, count)]
            items = [read(path, self.center_crop, frames) for path in paths]
            for path, item in zip(paths, items, strict=True):
                if item.shape[-3:-1] != self.item_shape[-2:]:
                    raise ValueError(f"{path} decodes to {item.shape[-3:-1]} pixels, its header said {self.item_shape}")
            yield np.stack(items)

    def _npz_batches(self, batch_size: int, count: int) -> Iterator[np.ndarray]:
        with zipfile.ZipFile(self.path) as archive, archive.open(f"{NPZ_KEY}.npy") as handle:
            shape, _ = _npy_header(handle, self.path)
            item_bytes = int(np.prod(shape[1:]))
            for start in range(0, count, batch_size):
                n = min(batch_size, count - start)
                data = bytearray(handle.read(n * item_bytes))  # writable, so torch can share it
                batch = np.frombuffer(data, dtype=np.uint8).reshape(n, *shape[1:])
                if self.media == "video":
                    batch = batch[:, : self.item_shape[0]]
                if self.center_crop is not None:
                    batch = np.stack([_crop_frames(item, self.center_crop) for item in batch])
                yield batch

    def describe(self) -> dict[str, Any]:
        """What the score records say about this set."""
        return {
            "path": str(self.path),
            "source": self.source,
            "count": self.count,
            "item_shape": list(self.item_shape),
            "center_crop": self.center_crop,
        }


def open_samples(
    path: str | Path, *, media: str, num_frames: int | None = None, center_crop: int | None = None
) -> SampleSet:
    """Scans a folder or `.npz` of images (media "image") or videos (media "video").

    Args:
        path: the folder or `.npz` file.
        media: "image" or "video".
        num_frames: videos: frames per clip (the first ones); every video must have at least this many.
        center_crop: ADM's center crop to this side for every item (reference sets of mixed sizes), or None.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: empty or unreadable set, mixed sizes, too few frames, or a wrong array.
    """
    path = Path(path).expanduser()
    if media not in ("image", "video"):
        raise ValueError(f"media must be 'image' or 'video', got {media!r}")
    if media == "video" and (num_frames is None or num_frames < 1):
        raise ValueError(f"videos need num_frames >= 1, got {num_frames}")
    if center_crop is not None and center_crop < 1:
        raise ValueError(f"center_crop must be a positive side in pixels, got {center_crop}")
    if not path.exists():
        raise FileNotFoundError(f"sample set {path} not found")
    if path.is_dir():
        return _scan_folder(path, media, num_frames, center_crop)
    if path.suffix == ".npz":
        return _scan_npz(path, media, num_frames, center_crop)
    raise ValueError(f"{path} is neither a folder of {media}s nor an .npz file")


def is_stats_file(path: str | Path) -> bool:
    """Whether `path` is a ptdit feature-statistics `.npz` (it holds a `protocol` entry)."""
    path = Path(path)
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return "protocol.npy" in archive.namelist()
    except zipfile.BadZipFile:
        raise ValueError(f"{path} is not a readable .npz file (corrupt or truncated)") from None


# ----------------------------------------------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------------------------------------------


def _folder_items(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Files under `root` with one of `extensions`, hidden ones skipped, sorted by relative path; one file per
    (folder, stem), preferring the earlier extension."""
    chosen: dict[tuple[Path, str], Path] = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if (
            not path.is_file()
            or path.suffix.lower() not in extensions
            or any(p.startswith(".") for p in relative.parts)
        ):
            continue
        key = (relative.parent, path.stem)
        if key not in chosen or extensions.index(path.suffix.lower()) < extensions.index(chosen[key].suffix.lower()):
            chosen[key] = path
    return sorted(chosen.values(), key=lambda p: p.relative_to(root).as_posix())


def _scan_folder(root: Path, media: str, num_frames: int | None, center_crop: int | None) -> SampleSet:
    extensions = IMAGE_EXTENSIONS if media == "image" else VIDEO_EXTENSIONS
    files = _folder_items(root, extensions)
    if not files:
        raise ValueError(f"no {media}s ({', '.join(extensions)}) under {root}")
    probe = _image_size if media == "image" else _video_size
    sizes = [probe(path) for path in files]  # (H, W) each; raises on unreadable files
    if center_crop is None:
        for path, size in zip(files, sizes, strict=True):
            if size != sizes[0]:
                raise ValueError(
                    f"{media}s of mixed sizes under {root}: {files[0].name} is {sizes[0][1]}x{sizes[0][0]}, "
                    f"{path.relative_to(root)} is {size[1]}x{size[0]}; evaluate one size at a time "
                    "(a reference set can be center-cropped with --center-crop N)"
                )
    side = (center_crop, center_crop) if center_crop is not None else sizes[0]
    shape = side if media == "image" else (num_frames, *side)
    return SampleSet(root, media, "folder", len(files), tuple(shape), tuple(files), center_crop)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size[1], image.size[0]
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path} ({err}); remove or replace the file") from None


def _read_image(path: Path, center_crop: int | None, _frames: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            return np.asarray(center_crop_image(image, center_crop) if center_crop else image)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image {path} ({err}); remove or replace the file") from None


def _video_size(path: Path) -> tuple[int, int]:
    av = require("av", "video", purpose="reading videos")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            context = container.streams.video[0].codec_context
            return context.height, context.width
    except (av.error.FFmpegError, OSError) as err:
        raise ValueError(f"cannot read video {path} ({err}); remove or replace the file") from None


def _read_video(path: Path, center_crop: int | None, frames: int | None) -> np.ndarray:
    """The first `frames` frames of a video: (T, H, W, 3) uint8."""
    av = require("av", "video", purpose="reading videos")
    decoded = []
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                image = frame.to_image()
                decoded.append(np.asarray(center_crop_image(image, center_crop) if center_crop else image))
                if len(decoded) == frames:
                    break
    except (av.error.FFmpegError, OSError) as err:
        raise ValueError(f"cannot decode video {path} ({err}); remove or replace the file") from None
    if len(decoded) < (frames or 1):
        raise ValueError(f"video {path} has {len(decoded)} frames, fewer than the {frames} the protocol needs")
    return np.stack(decoded)


# ----------------------------------------------------------------------------------------------------------------
# ADM-style .npz arrays
# ----------------------------------------------------------------------------------------------------------------


def _npy_header(handle: Any, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the `.npy` member open in `handle`, leaving it at the first data byte."""
    fmt = np.lib.format
    version = fmt.read_magic(handle)
    shape, fortran_order, dtype = (
        fmt.read_array_header_1_0(handle) if version == (1, 0) else fmt.read_array_header_2_0(handle)
    )
    if fortran_order or dtype != np.uint8:
        raise ValueError(f"{path}: {NPZ_KEY} must be a C-ordered uint8 array, got {dtype}, fortran={fortran_order}")
    return tuple(shape), dtype


def _scan_npz(path: Path, media: str, num_frames: int | None, center_crop: int | None) -> SampleSet:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if f"{NPZ_KEY}.npy" not in names:
                if "mu.npy" in names:
                    raise ValueError(
                        f"{path} holds statistics (mu, sigma) but no protocol record (made by another tool, e.g. "
                        "pytorch-fid?): recreate them with `ptdit eval stats` so that protocols can be checked"
                    )
                keys = sorted(n.removesuffix(".npy") for n in names)
                raise ValueError(f"{path} has no {NPZ_KEY} array of samples; its keys are {keys}")
            with archive.open(f"{NPZ_KEY}.npy") as handle:
                shape, _ = _npy_header(handle, path)
    except zipfile.BadZipFile:
        raise ValueError(f"{path} is not a readable .npz file (corrupt or truncated)") from None
    ndim = 4 if media == "image" else 5
    layout = "(N, H, W, 3)" if media == "image" else "(N, T, H, W, 3)"
    if len(shape) != ndim or shape[-1] != 3:
        raise ValueError(f"{path}: {NPZ_KEY} must be {layout} uint8 {media}s, got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"{path}: {NPZ_KEY} holds no {media}s")
    if media == "video" and shape[1] < num_frames:
        raise ValueError(f"{path}: videos have {shape[1]} frames, fewer than the {num_frames} the protocol needs")
    side = (center_crop, center_crop) if center_crop is not None else tuple(shape[-3:-1])
    item_shape = side if media == "image" else (num_frames, *side)
    return SampleSet(path, media, "npz", shape[0], tuple(item_shape), (), center_crop)


# ----------------------------------------------------------------------------------------------------------------
# Reference preparation and prompts
# ----------------------------------------------------------------------------------------------------------------


def center_crop_image(image: Any, size: int) -> Any:
    """ADM's reference preparation (guided-diffusion `center_crop_arr`, used for the ImageNet and COCO reference
    batches): halve with a box filter while the short side is >= 2 x size, resize the short side to `size`
    (bicubic), then crop the center `size` x `size` square. PIL image in, PIL image out."""
    from PIL import Image

    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.Resampling.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.Resampling.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


def _crop_frames(item: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    frames = item if item.ndim == 4 else item[None]
    cropped = np.stack([np.asarray(center_crop_image(Image.fromarray(f), size)) for f in frames])
    return cropped if item.ndim == 4 else cropped[0]


def read_prompts(samples: SampleSet, prompts_file: str | Path | None = None) -> list[str]:
    """One prompt per item: line i of `prompts_file`, else each file's `.txt` sidecar or the `prompt` of its
    `.json` sidecar (as `ptdit sample` writes them).

    Raises:
        ValueError: no prompt for some item, or fewer lines than items.
    """
    if prompts_file is not None:
        path = Path(prompts_file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"prompts file {path} not found")
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) < samples.count:
            raise ValueError(f"{path} has {len(lines)} prompts for {samples.count} {samples.media}s")
        return lines[: samples.count]
    if samples.source != "folder":
        raise ValueError(f"{samples.path} is an .npz: pass the prompts with --prompts FILE (one per line)")
    return [_sidecar_prompt(path) for path in samples.files]


def _sidecar_prompt(path: Path) -> str:
    text, meta = path.with_suffix(".txt"), path.with_suffix(".json")
    if text.is_file():
        return text.read_text(encoding="utf-8").strip()
    if meta.is_file():
        prompt = json.loads(meta.read_text(encoding="utf-8")).get("prompt")
        if isinstance(prompt, str):
            return prompt
    raise ValueError(f"no prompt for {path}: add {text.name} or a {meta.name} with a 'prompt', or pass --prompts FILE")


__all__ = ["NPZ_KEY", "SampleSet", "center_crop_image", "is_stats_file", "open_samples", "read_prompts"]
