"""Decoding one stored sample: image / clip bytes -> pixels at a (height, width, frames) target, and captions.

Every failure a file can cause (undecodable bytes, a missing or empty caption, an image smaller than its target,
a clip with too few frames) raises `BadSample`, which the file datasets (`ptdit.data.files`) count and skip
(docs/data.md#bad-data). Images are resized to cover the target (bicubic) and center-cropped to it.

Formats: images in anything PIL reads (`.png`, `.jpg`, `.webp`, ...); clips as animated PNG (`.apng`, lossless:
what `ptdit data export` writes), GIF (PIL), `.npy` uint8 (F, H, W, 3) arrays, or `.mp4` / `.webm` / ... (PyAV).
Shape legend: F frames, H / W rows / columns.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import torch

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp")
CLIP_EXTENSIONS = ("apng", "gif", "npy", "mp4", "webm", "mov", "mkv", "avi")
PIL_CLIP_EXTENSIONS = ("apng", "gif")


class BadSample(Exception):
    """A stored sample that cannot be used; the message says why (the dataset adds its name)."""


def fit(image: Any, height: int, width: int, *, allow_upscale: bool) -> np.ndarray:
    """PIL image -> (height, width, 3) uint8: resized to cover the target (bicubic), then center-cropped.

    Raises BadSample for an image smaller than the target unless `allow_upscale`.
    """
    from PIL import Image

    image = image.convert("RGB")
    w, h = image.size
    scale = max(height / h, width / w)
    if scale > 1 and not allow_upscale:
        raise BadSample(f"{w}x{h} px is smaller than the {width}x{height} target (data.options.allow_upscale=true)")
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    if size != (w, h):
        image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return np.asarray(image.crop((left, top, left + width, top + height)))


def to_pixels(frames: list[np.ndarray]) -> torch.Tensor:
    """List of (H, W, 3) uint8 -> (3, F, H, W) float32 in [-1, 1]."""
    array = torch.from_numpy(np.stack(frames)).float()  # (F, H, W, 3)
    return (array / 127.5 - 1).permute(3, 0, 1, 2).contiguous()


def decode_media(data: bytes, ext: str, height: int, width: int, frames: int, stride: int, **kw: Any) -> torch.Tensor:
    """Stored bytes -> (3, F, height, width) pixels in [-1, 1]; F = `frames` (the first, every `stride`-th).

    An image gives one frame (`frames` must then be 1); a clip gives its first `frames` frames at `stride`.
    """
    ext = ext.lower()
    try:
        chosen = _frames(data, ext, frames, stride, height, width, kw.get("allow_upscale", False))
    except BadSample:
        raise
    except Exception as err:  # PIL, PyAV and numpy raise many error types for damaged bytes
        raise BadSample(f"cannot decode .{ext} ({type(err).__name__}: {str(err)[:80]})") from None
    if len(chosen) < frames:
        raise BadSample(f"{len(chosen)} usable frames, fewer than frames={frames}")
    return to_pixels(chosen)


def _frames(data: bytes, ext: str, frames: int, stride: int, height: int, width: int, upscale: bool) -> list:
    wanted = frames * stride
    if ext == "npy":
        array = np.load(io.BytesIO(data), allow_pickle=False)
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise BadSample(f".npy clip must be uint8 (F, H, W, 3), got {array.dtype} {array.shape}")
        return [_fit_array(a, height, width, upscale) for a in array[:wanted:stride]]
    if ext in IMAGE_EXTENSIONS or ext in PIL_CLIP_EXTENSIONS:
        from PIL import Image, ImageSequence

        with Image.open(io.BytesIO(data)) as image:
            out = []
            for i, frame in enumerate(ImageSequence.Iterator(image)):
                if i >= wanted:
                    break
                if i % stride == 0:
                    out.append(fit(frame, height, width, allow_upscale=upscale))
            return out
    if ext in CLIP_EXTENSIONS:
        from ptdit.optional import require

        av = require("av", "video", purpose="reading videos")
        out = []
        with av.open(io.BytesIO(data)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                if i >= wanted:
                    break
                if i % stride == 0:
                    out.append(fit(frame.to_image(), height, width, allow_upscale=upscale))
        return out
    raise BadSample(f"unsupported media type .{ext}")


def _fit_array(array: np.ndarray, height: int, width: int, upscale: bool) -> np.ndarray:
    from PIL import Image

    return fit(Image.fromarray(array), height, width, allow_upscale=upscale)


def media_shape(data: bytes, ext: str) -> tuple[int, int, int]:
    """(height, width, frames) of stored media from its header where the format allows (PIL, .npy); clips
    PyAV reads count their frames from the stream header (0 when unknown). Raises BadSample when unreadable."""
    ext = ext.lower()
    try:
        if ext == "npy":
            array = np.load(io.BytesIO(data), mmap_mode=None, allow_pickle=False)
            return int(array.shape[1]), int(array.shape[2]), int(array.shape[0])
        if ext in IMAGE_EXTENSIONS or ext in PIL_CLIP_EXTENSIONS:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as image:
                return image.size[1], image.size[0], int(getattr(image, "n_frames", 1))
        from ptdit.optional import require

        av = require("av", "video", purpose="reading videos")
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            return stream.height, stream.width, int(stream.frames or 0)
    except BadSample:
        raise
    except Exception as err:
        raise BadSample(f"cannot read the .{ext} header ({type(err).__name__})") from None


def caption_of(fields: dict[str, bytes], caption_key: str) -> str:
    """The caption of a sample: its `txt` field, else `json[caption_key]`; BadSample when neither has one."""
    text: Any = None
    if "txt" in fields:
        text = fields["txt"].decode("utf-8", errors="replace")
    elif "json" in fields:
        try:
            text = json.loads(fields["json"]).get(caption_key)
        except (ValueError, AttributeError):
            raise BadSample("its .json is not a JSON object") from None
    if not isinstance(text, str) or not text.strip():
        raise BadSample(f"no caption (a non-empty .txt, or .json with a {caption_key!r} field)")
    return text.strip()


__all__ = [
    "CLIP_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "BadSample",
    "caption_of",
    "decode_media",
    "fit",
    "media_shape",
    "to_pixels",
]
