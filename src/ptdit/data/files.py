"""Map-style datasets over stored samples (tar shards, Parquet; folders in `ptdit.data.folders`), robust to bad
data.

Sample i is stored sample i of the source (`ptdit.data.sources`), decoded at a target shape: `data.size`
square by default, or the shape of its bucket when the sampler passes `(i, (height, width, frames))`
(`ptdit.data.buckets`). A sample that cannot be used (`BadSample`: undecodable, no caption, smaller than the
target, too few frames) is replaced by the next valid index, deterministically, so batches keep their size and
a resumed run reads the same samples; each item says how many bad samples it skipped (`skipped`, summed per
batch and logged as `data_skipped`; docs/data.md#bad-data).

Items: `{"pixels": (3, F, H, W) float32 in [-1, 1], "caption": str, "index": int, "skipped": int}` (+ `label`
for class folders).
"""

from __future__ import annotations

import operator
import warnings
from typing import Any

import torch

from ptdit.data.decode import BadSample, caption_of, decode_media, media_shape
from ptdit.data.sources import MEDIA_EXTENSIONS, ParquetRows, TarShards, resolve_paths

MAX_CONSECUTIVE_BAD = 100  # more bad samples in a row than this means the data, not a few files, is broken
WARN_FIRST = 3  # bad samples named in a warning per process; later ones are only counted


class FileDataset(torch.utils.data.Dataset):
    """Stored samples decoded at `size` x `size` (or a bucket's shape), `frames` frames (1: images).

    Args:
        source: a `TarShards`, `ParquetRows` or `FolderFiles`.
        size: default square side in pixels.
        frames: frames per sample (1 for images; clips use their first `frames` frames at `frame_stride`).
        caption_key: the caption field of a `.json` sidecar.
        allow_upscale: upscale images smaller than the target instead of skipping them.
    """

    def __init__(
        self,
        source: Any,
        *,
        size: int,
        frames: int = 1,
        frame_stride: int = 1,
        caption_key: str = "caption",
        allow_upscale: bool = False,
    ) -> None:
        if frames < 1 or frame_stride < 1:
            raise ValueError(f"data.options frames and frame_stride must be >= 1, got {frames}, {frame_stride}")
        if len(source) == 0:
            raise ValueError("the dataset holds no samples; check data.path")
        self.source, self.size, self.frames, self.stride = source, size, frames, frame_stride
        self.caption_key, self.allow_upscale = caption_key, allow_upscale
        self.bad_named = 0

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: Any) -> dict[str, Any]:
        index, target = _unpack(index, (self.size, self.size, self.frames))
        for skipped in range(MAX_CONSECUTIVE_BAD + 1):
            j = (index + skipped) % len(self)
            try:
                item = self.load(j, target)
            except BadSample as err:
                self._report(j, err)
                continue
            return {**item, "index": index, "skipped": skipped}
        raise ValueError(
            f"{MAX_CONSECUTIVE_BAD + 1} consecutive bad samples from {self.source.name(index)} on; "
            "the data is broken, check data.path and data.options"
        )

    def load(self, index: int, target: tuple[int, int, int]) -> dict[str, Any]:
        """Stored sample `index` at target (height, width, frames); BadSample when it cannot be used."""
        fields = self.source.fields(index)
        ext = _media_ext(fields)
        height, width, frames = target
        pixels = decode_media(
            fields[ext], ext, height, width, frames, self.stride if frames > 1 else 1, allow_upscale=self.allow_upscale
        )
        item: dict[str, Any] = {"pixels": pixels, "caption": caption_of(fields, self.caption_key)}
        if "cls" in fields:
            item["label"] = int(fields["cls"])
        return item

    def media_shape(self, index: int) -> tuple[int, int, int] | None:
        """(height, width, frames) of stored sample `index` from its header, or None when it is unreadable."""
        try:
            fields = self.source.fields(index)
            ext = _media_ext(fields)
            return media_shape(fields[ext], ext)
        except BadSample:
            return None

    def _report(self, index: int, err: BadSample) -> None:
        self.bad_named += 1
        if self.bad_named <= WARN_FIRST:
            last = self.bad_named == WARN_FIRST
            more = " (further bad samples are counted in data_skipped, not named)" if last else ""
            warnings.warn(
                f"skipping bad sample {self.source.name(index)}: {err}; the next valid sample replaces it{more}",
                stacklevel=3,
            )


def _unpack(index: Any, default: tuple[int, int, int]) -> tuple[int, tuple[int, int, int]]:
    """A sampler passes an index, or (index, (height, width, frames)) for a bucket."""
    if isinstance(index, (tuple, list)):
        return operator.index(index[0]), tuple(int(v) for v in index[1])  # type: ignore[return-value]
    return operator.index(index), default


def _media_ext(fields: dict[str, bytes]) -> str:
    for ext in fields:
        if ext.rpartition(".")[2] in MEDIA_EXTENSIONS:
            return ext
    raise BadSample(f"no image or video field (has {sorted(fields) or 'nothing'})")


# --------------------------------------------------------------------------------------------------------------
# The datasets `data.dataset` names (registered in ptdit.data.registry)
# --------------------------------------------------------------------------------------------------------------


def _frames(frames: int | None, views: int | None) -> int:
    if frames is not None and views is not None and frames != views:
        raise ValueError(f"data.options frames={frames} and views={views} disagree; give one")
    return frames or views or 1


def webdataset_dataset(
    *,
    path: Any = None,
    size: int = 256,
    seed: int = 0,
    frames: int | None = None,
    views: int | None = None,
    frame_stride: int = 1,
    caption_key: str = "caption",
    allow_upscale: bool = False,
) -> FileDataset:
    """WebDataset tar shards at `path` (`000123.png` + `000123.txt` or `.json`; clips `.apng`, `.mp4`, ...)."""
    source = TarShards(resolve_paths(path, ".tar", "webdataset"))
    return FileDataset(
        source, size=size, frames=_frames(frames, views), frame_stride=frame_stride,
        caption_key=caption_key, allow_upscale=allow_upscale,
    )  # fmt: skip


def parquet_dataset(
    *,
    path: Any = None,
    size: int = 256,
    seed: int = 0,
    frames: int | None = None,
    views: int | None = None,
    frame_stride: int = 1,
    image_column: str = "image",
    caption_column: str = "caption",
    allow_upscale: bool = False,
) -> FileDataset:
    """Parquet files at `path` with an image (or clip) bytes column and a caption column."""
    source = ParquetRows(
        resolve_paths(path, ".parquet", "parquet"), image_column=image_column, caption_column=caption_column
    )
    return FileDataset(
        source, size=size, frames=_frames(frames, views), frame_stride=frame_stride, allow_upscale=allow_upscale
    )


__all__ = [
    "MAX_CONSECUTIVE_BAD",
    "FileDataset",
    "parquet_dataset",
    "webdataset_dataset",
]
