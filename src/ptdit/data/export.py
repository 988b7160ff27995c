"""`ptdit data export`: the built-in procedural datasets written as stored data (docs/data.md#export).

Formats (sample i is procedural sample i of the seed; keys are `%08d`):
- `wds`: WebDataset tar shards `shard-000000.tar`, ... of `--shard-size` samples, written with webdataset's
  `TarWriter`: `00000000.png` + `00000000.txt` per image, `.apng` per clip / view set.
- `parquet`: `part-000000.parquet`, ... with columns `key`, `image` (the same PNG / APNG bytes) and `caption`,
  in row groups of `ROW_GROUP` rows (small, so random access reads little).
- `folder`: `00000000.png` + `00000000.txt` in one folder (the `image-folder` / `video-folder` layouts).

Images are PNG; clips and view sets are animated PNG (APNG, lossless, read by PIL): the procedural datasets'
flat colours survive exactly, where MP4 (PyAV) would blur them with chroma subsampling and lossy coding.
Everything is written into a temporary folder that replaces `--out` only when complete (`atomic_directory`).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ptdit.data.captions import format_caption
from ptdit.data.procedural import build_dataset
from ptdit.io import atomic_directory
from ptdit.optional import require

FORMATS = ("wds", "parquet", "folder")
ROW_GROUP = 128
MANIFEST = "ptdit-export.json"


def encode_frames(frames: np.ndarray) -> tuple[str, bytes]:
    """(F, H, W, 3) uint8 -> (extension, bytes): PNG for one frame, APNG for several."""
    from PIL import Image

    buffer = io.BytesIO()
    images = [Image.fromarray(f) for f in frames]
    if len(images) == 1:
        images[0].save(buffer, format="PNG", compress_level=1)
        return "png", buffer.getvalue()
    # No `duration`: PIL then keeps identical consecutive frames instead of merging them into one.
    images[0].save(buffer, format="PNG", save_all=True, append_images=images[1:], compress_level=1)
    return "apng", buffer.getvalue()


def samples(dataset: Any, num: int) -> Iterator[tuple[str, str, bytes, str]]:
    """(key, extension, media bytes, caption) of procedural samples 0 .. num - 1."""
    name = dataset.name
    for i in range(num):
        spec = dataset.sample_spec(i)
        frames = np.clip(np.rint(dataset.render(spec) * 255), 0, 255).astype(np.uint8)  # (F, H, W, 3)
        ext, data = encode_frames(frames)
        yield f"{i:08d}", ext, data, format_caption(name, spec)


def _write_wds(folder: Path, items: Iterator[tuple[str, str, bytes, str]], shard_size: int) -> int:
    wds = require("webdataset", "data", purpose="writing WebDataset shards")
    shards, writer, handle = 0, None, None
    for count, (key, ext, data, caption) in enumerate(items):
        if count % shard_size == 0:
            if writer is not None:
                writer.close()
            handle = open(folder / f"shard-{shards:06d}.tar", "wb")  # noqa: SIM115 (closed by the writer)
            # An int mtime: a float one costs a pax header (1 KB) per member.
            writer, shards = wds.TarWriter(handle, mtime=0), shards + 1
        writer.write({"__key__": key, ext: data, "txt": caption})  # type: ignore[union-attr]
    if writer is not None:
        writer.close()
    return shards


def _write_parquet(folder: Path, items: Iterator[tuple[str, str, bytes, str]], shard_size: int) -> int:
    pa = require("pyarrow", "data", purpose="writing Parquet files")
    pq = require("pyarrow.parquet", "data", purpose="writing Parquet files")
    schema = pa.schema([("key", pa.string()), ("image", pa.binary()), ("caption", pa.string())])
    shards, rows = 0, {"key": [], "image": [], "caption": []}

    def flush() -> None:
        nonlocal shards, rows
        table = pa.table(rows, schema=schema)
        pq.write_table(table, folder / f"part-{shards:06d}.parquet", row_group_size=ROW_GROUP)
        shards, rows = shards + 1, {"key": [], "image": [], "caption": []}

    for key, _, data, caption in items:
        rows["key"].append(key)
        rows["image"].append(data)
        rows["caption"].append(caption)
        if len(rows["key"]) == shard_size:
            flush()
    if rows["key"]:
        flush()
    return shards


def _write_folder(folder: Path, items: Iterator[tuple[str, str, bytes, str]], shard_size: int) -> int:
    for key, ext, data, caption in items:
        (folder / f"{key}.{ext}").write_bytes(data)
        (folder / f"{key}.txt").write_text(caption + "\n", encoding="utf-8")
    return 1


WRITERS = {"wds": _write_wds, "parquet": _write_parquet, "folder": _write_folder}


def export_dataset(
    name: str,
    num: int,
    out: str | Path,
    *,
    fmt: str = "wds",
    seed: int = 0,
    size: int = 32,
    shard_size: int = 1000,
    options: dict[str, Any] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Writes procedural samples 0 .. num - 1 of `name` to `out` in `fmt`; returns the manifest it writes.

    Raises:
        ValueError: unknown format or dataset, num or shard_size < 1.
        FileExistsError: `out` exists and is not empty.
    """
    from tqdm.auto import tqdm

    if fmt not in WRITERS:
        raise ValueError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    if num < 1 or shard_size < 1:
        raise ValueError(f"--num and --shard-size must be >= 1, got {num}, {shard_size}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"--out {out} exists and is not an empty folder; choose a new folder")
    options = dict(options or {})
    dataset = build_dataset(name, size=size, seed=seed, num_samples=num, **options)  # checks the arguments first
    items = samples(dataset, num)
    manifest = {"dataset": name, "num": num, "seed": seed, "size": size, "format": fmt, "options": options}
    with atomic_directory(out) as tmp:
        bar = tqdm(items, total=num, desc=f"export {name} -> {fmt}", unit="sample", disable=not show_progress,
                   file=sys.stderr)  # fmt: skip
        manifest["shards"] = WRITERS[fmt](tmp, iter(bar), shard_size)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


__all__ = ["FORMATS", "MANIFEST", "encode_frames", "export_dataset"]
