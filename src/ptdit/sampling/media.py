"""Writing samples: PNG (with generation metadata), grids, MP4 (H.264 via PyAV), GIF, contact sheets.

Every file is written to a hidden temporary name and renamed into place, so an interrupted run never leaves a
truncated file under its final name.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptdit.optional import require


def to_uint8_frames(pixels_CFHW: torch.Tensor) -> np.ndarray:
    """(3, F, H, W) pixels in [-1, 1] -> (F, H, W, 3) uint8."""
    x = ((pixels_CFHW.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().numpy()


def image_grid(images: list[np.ndarray], columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Tiles (H, W, 3) uint8 images of one size into a grid with white gaps."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    n = len(images)
    columns = columns or min(n, int(np.ceil(np.sqrt(n))))
    rows = -(-n // columns)
    h, w, c = images[0].shape
    grid = np.full((rows * h + (rows - 1) * pad, columns * w + (columns - 1) * pad, c), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * (h + pad) : r * (h + pad) + h, col * (w + pad) : col * (w + pad) + w] = img
    return grid


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary sibling path; renames it to `path` on success, removes it on failure."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_png(path: Path, image: np.ndarray, text: dict[str, Any] | None = None) -> Path:
    """Saves an (H, W, 3) uint8 image; `text` goes into PNG tEXt chunks (values JSON-encoded if not str)."""
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value if isinstance(value, str) else json.dumps(value))
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", pnginfo=info)
    return path


def save_gif(path: Path, frames: np.ndarray, fps: int) -> Path:
    """Saves (F, H, W, 3) uint8 frames as a looping GIF."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def save_mp4(path: Path, frames: np.ndarray, fps: int) -> Path:
    """Saves (F, H, W, 3) uint8 frames as H.264 MP4 (yuv420p) with PyAV; odd sizes are edge-padded to even."""
    av = require("av", "video", purpose="writing MP4")
    _f, h, w, _ = frames.shape
    frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        # No macroblock-tree rate control: with it x264 gave different bytes for the same frames from run to run
        # (measured with libx264 core 165), and evaluation outputs are compared byte for byte (ptdit.eval.generate).
        stream.options = {"crf": "18", "x264-params": "mbtree=0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def slug(text: str, max_len: int = 40) -> str:
    """A file-name-safe short form of a prompt."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:max_len] or "sample"


def first_free_index(out_dir: Path) -> int:
    """One more than the highest sample number (`NNN-...`) in `out_dir`; 0 for a new or empty folder."""
    numbers = [int(m.group(1)) for p in out_dir.glob("*") if (m := re.match(r"(\d{3,})-", p.name))]
    return max(numbers) + 1 if numbers else 0


def write_samples(
    pixels_BCFHW: torch.Tensor,
    out_dir: Path,
    records: list[dict[str, Any]],
    *,
    kind: str,
    fps: int,
    overwrite: bool = False,
) -> list[Path]:
    """Writes each sample and its JSON sidecar, plus a grid PNG (the last path returned); returns the written paths.

    kind: "image" (one PNG each), "video" (MP4 + GIF + contact sheet) or "multiview" (row of views + turntable
    GIF). `records[i]` is the metadata of sample i (prompt, seed, steps, cfg, sampler, checkpoint, ...).
    Earlier files in `out_dir` are never replaced unless `overwrite`: numbering continues after the highest
    sample number there, and the grid is then `grid-NNN.png` (NNN: its first sample).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    first = 0 if overwrite else first_free_index(out_dir)
    grid = "grid.png" if overwrite or (first == 0 and not (out_dir / "grid.png").exists()) else f"grid-{first:03d}.png"
    written: list[Path] = []
    firsts = []
    for i, (pixels, record) in enumerate(zip(pixels_BCFHW, records, strict=True)):
        frames = to_uint8_frames(pixels)
        stem = f"{first + i:03d}-{slug(str(record.get('prompt') or record.get('class_label') or 'sample'))}"
        text = {k: v for k, v in record.items() if v is not None}
        if kind == "image":
            written.append(save_png(out_dir / f"{stem}.png", frames[0], text))
        elif kind == "video":
            written.append(save_mp4(out_dir / f"{stem}.mp4", frames, fps))
            written.append(save_gif(out_dir / f"{stem}.gif", frames, fps))
            columns = min(len(frames), 8)
            written.append(save_png(out_dir / f"{stem}-sheet.png", image_grid(list(frames), columns), text))
        elif kind == "multiview":
            written.append(save_png(out_dir / f"{stem}-views.png", image_grid(list(frames), len(frames)), text))
            written.append(save_gif(out_dir / f"{stem}-turntable.gif", frames, fps))
        else:
            raise ValueError(f"unknown sample kind {kind!r}")
        sidecar = out_dir / f"{stem}.json"
        with atomic_path(sidecar) as tmp:
            tmp.write_text(
                json.dumps({**text, "files": [p.name for p in written if p.stem.startswith(stem)]}, indent=2)
            )
        written.append(sidecar)
        firsts.append(frames[0])
    written.append(save_png(out_dir / grid, image_grid(firsts)))
    return written


def sample_strips(pixels_BCFHW: torch.Tensor, max_frames: int = 8) -> np.ndarray:
    """One row per sample (up to `max_frames` frames side by side), stacked into one uint8 image."""
    frames = min(max_frames, pixels_BCFHW.shape[2])
    rows = [image_grid(list(to_uint8_frames(p)[:frames]), columns=frames) for p in pixels_BCFHW]
    return image_grid(rows, columns=8 if frames == 1 else 1)
