"""Flat 2D shape datasets: still images ("shapes", text-to-image) and clips ("moving-shapes", text-to-video).

Everything is procedural: no files, and sample `i` is a pure function of `(seed, i)` (its own
`numpy.random.default_rng([seed, i])`), so the same bytes come back in any worker, rank or order. Images are
flat-coloured shapes from a six-colour palette on a black background, without anti-aliasing, so a small pixel-space
model learns them in minutes and `ptdit.eval.oracle` can check captions by plain image analysis.

Geometry is defined at 32 px and scales linearly with `size`: small / large shapes have a half-extent of 4.5 / 6.5
px (circle radius, half the square side, half the triangle base and height), placed at the 3 x 3 grid position
named in the caption (bounding-box centre inside that third of the image, 1 px from the border for the outer
cells). Objects of one image never overlap: their bounding boxes stay at least 3 px apart, which with these
sizes means that two objects never sit in adjacent (including diagonally adjacent) cells.

Shape legend: F frames (1 for images), H / W image rows / columns; samples are `(3, F, H, W)` in [-1, 1].
"""

from __future__ import annotations

import itertools
import operator
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ptdit.data.captions import (
    COLORS,
    DIRECTIONS,
    POSITIONS,
    SHAPES,
    SIZES,
    format_caption,
    moving_objects,
    parse_caption,
)

# Half-extents in pixels at size 32 (scaled by size / 32).
HALF_EXTENT = {"small": 4.5, "large": 6.5}
MOVING_HALF_EXTENT = 6.0
_MARGIN = 1.0  # gap between an outer-cell shape and the image border
_GAP = 3.0  # minimum gap between the bounding boxes of two objects (keeps connected components apart)
# Total travel of a moving shape over the clip, as a fraction of the image side (independent of `frames`).
MOVING_TRAVEL = 0.4
DIRECTION_VECTORS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


# --------------------------------------------------------------------------------------------------------------
# Base class: argument validation, per-sample RNG, tensor conversion
# --------------------------------------------------------------------------------------------------------------


class ProceduralDataset(Dataset):
    """A map-style dataset whose sample `i` is computed on the fly from `(seed, i)`.

    Subclasses implement `sample_spec` (all random draws: captioned attributes plus render-only parameters) and
    `render` (deterministic pixels from a spec), so captions can be drawn without rendering.

    Args:
        size: image side in pixels (square images).
        seed: dataset seed; different seeds give different samples.
        num_samples: the dataset length.
    """

    name: ClassVar[str]
    min_size: ClassVar[int] = 16

    def __init__(self, *, size: int = 32, seed: int = 0, num_samples: int = 100_000) -> None:
        if not isinstance(size, int) or size < self.min_size:
            raise ValueError(f"size must be an int >= {self.min_size}, got {size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int, got {num_samples!r}")
        self.size, self.seed, self.num_samples = size, seed, num_samples
        self.scale = size / 32.0  # geometry constants are given at 32 px

    def __len__(self) -> int:
        return self.num_samples

    def rng(self, index: int) -> np.random.Generator:
        """The private generator of sample `index` (independent of any global RNG state)."""
        return np.random.default_rng([self.seed, index])

    def sample_spec(self, index: int) -> dict[str, Any]:
        """All random choices of sample `index`: the captioned attributes plus render-only parameters."""
        raise NotImplementedError

    def render(self, spec: dict[str, Any]) -> np.ndarray:
        """Pixels of a spec as a float32 `(F, H, W, 3)` array in [0, 1]."""
        raise NotImplementedError

    def caption(self, index: int) -> str:
        """The caption of sample `index`, without rendering it."""
        return format_caption(self.name, self.sample_spec(self._check_index(index)))

    def complete_spec(self, spec: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """A parsed caption plus the render-only parameters it leaves open, drawn from `rng` (default: none)."""
        return spec

    def render_caption(self, caption: str, seed: int = 0) -> torch.Tensor:
        """A real sample of any valid caption (e.g. a benchmark prompt): `(3, F, H, W)` float32 in [-1, 1].

        The render-only parameters (a mover's start, a turntable's pose) come from a generator seeded with
        `(dataset seed, seed, 1)`, a stream separate from the samples' own, so the result is a pure function of
        (caption, dataset seed, seed).
        """
        rng = np.random.default_rng([self.seed, seed, 1])
        return _to_pixels(self.render(self.complete_spec(parse_caption(self.name, caption), rng)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Returns `{"pixels": (3, F, H, W) float32 in [-1, 1], "caption": str, "index": int}` plus `extra_fields`."""
        index = self._check_index(index)
        spec = self.sample_spec(index)
        pixels = _to_pixels(self.render(spec))
        return {"pixels": pixels, "caption": format_caption(self.name, spec), "index": index, **self.extra_fields(spec)}

    def extra_fields(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Item fields beyond pixels, caption and index, derived from the sample's spec (default: none)."""
        return {}

    def _check_index(self, index: int) -> int:
        index = operator.index(index)
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for a dataset of {self.num_samples} samples")
        return index

    def _canvas(self, frames: int) -> np.ndarray:
        return np.zeros((frames, self.size, self.size, 3), dtype=np.float32)


def _to_pixels(frames_FHW3: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) in [0, 1] -> (3, F, H, W) float32 tensor in [-1, 1]."""
    # In numpy: torch would spread these small elementwise ops over threads, which costs more than it saves
    # (tens of ms per sample on a busy 2-core machine).
    return torch.from_numpy(np.ascontiguousarray(frames_FHW3.transpose(3, 0, 1, 2)) * 2.0 - 1.0)


def rasterize_shape(canvas_HW3: np.ndarray, shape: str, cx: float, cy: float, half: float, rgb: tuple) -> None:
    """Paints one flat shape in place (pixel centres inside the shape take `rgb`; no anti-aliasing).

    Args:
        canvas_HW3: (H, W, 3) float image, modified in place.
        shape: "circle", "square" or "triangle" (apex up, base and height both `2 * half`).
        cx: bounding-box centre column in pixel units (pixel `j` covers [j, j + 1)).
        cy: bounding-box centre row in pixel units.
        half: half-extent in pixels.
        rgb: colour in [0, 1].
    """
    h, w = canvas_HW3.shape[:2]
    y0, y1 = max(int(np.floor(cy - half)), 0), min(int(np.ceil(cy + half)) + 1, h)
    x0, x1 = max(int(np.floor(cx - half)), 0), min(int(np.ceil(cx + half)) + 1, w)
    v = (np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy) / half  # (h', 1) in ~[-1, 1], down positive
    u = (np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx) / half  # (1, w')
    canvas_HW3[y0:y1, x0:x1][shape_mask(shape, u, v)] = rgb


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in normalised box coordinates `u, v` in [-1, 1] (v points down); broadcasts."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "square":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if shape == "triangle":
        return (v <= 1.0) & (np.abs(u) <= (v + 1.0) * 0.5)
    raise ValueError(f"unknown shape {shape!r}; valid shapes: {list(SHAPES)}")


# --------------------------------------------------------------------------------------------------------------
# shapes: one to a few flat shapes at named grid positions
# --------------------------------------------------------------------------------------------------------------


def pixel_half_extent(size_name: str, scale: float) -> float:
    """Half-extent of a "small" / "large" grid shape, rounded to a half-integer number of pixels.

    With the centre on a pixel centre (`grid_center`), the outermost covered pixel centres then sit half a pixel
    inside the boundary, never on it: no single-pixel nubs on circles, and the shape fills its
    `2 * floor(half) + 1` pixel box exactly like the oracle's templates do.
    """
    return float(np.floor(HALF_EXTENT[size_name] * scale)) + 0.5


def grid_center(position: str, half: float, size: int, scale: float) -> tuple[float, float]:
    """Bounding-box centre `(cx, cy)` of a shape of half-extent `half` at a named 3 x 3 grid position."""
    row, col = divmod(POSITIONS.index(position), 3)
    anchors = (half + _MARGIN * scale, size / 2.0, size - half - _MARGIN * scale)
    # Snap the centre onto a pixel centre: pixel offsets from the centre are then whole numbers, so a shape of
    # one size rasterises to the same pixels in every cell (a circle centred on a pixel corner would lose its
    # outermost rows and look like a square).
    return float(np.floor(anchors[col])) + 0.5, float(np.floor(anchors[row])) + 0.5


@lru_cache(maxsize=256)
def valid_layouts(size: int, sizes: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """All assignments of distinct grid cells to objects of the given sizes whose bounding boxes keep the gap."""
    scale = size / 32.0
    halves = [pixel_half_extent(s, scale) for s in sizes]
    layouts = []
    for cells in itertools.permutations(range(len(POSITIONS)), len(sizes)):
        boxes = [(*grid_center(POSITIONS[c], h, size, scale), h) for c, h in zip(cells, halves, strict=True)]
        # Two axis-aligned boxes are apart when they are apart along at least one axis.
        if all(
            abs(a[0] - b[0]) >= a[2] + b[2] + _GAP * scale or abs(a[1] - b[1]) >= a[2] + b[2] + _GAP * scale
            for a, b in itertools.combinations(boxes, 2)
        ):
            layouts.append(cells)
    return tuple(layouts)


class ShapesDataset(ProceduralDataset):
    """Text-to-image: 1 to `max_objects` flat shapes with size, colour, kind and grid position in the caption.

    Caption example: "a small red circle at the top left and a large blue square at the center" (objects in
    reading order of their grid cells). Samples are `(3, 1, size, size)`.

    Args:
        size: image side in pixels.
        seed: dataset seed.
        num_samples: the dataset length.
        min_objects: fewest objects per image (>= 1).
        max_objects: most objects per image (<= 4; the number is uniform in [min_objects, max_objects] unless
            `count_weights` is given).
        count_weights: relative weights of the object counts min_objects, ..., max_objects (one per count, not
            all zero), e.g. `[2, 5, 2, 1]` for 1 to 4 objects with half of the images holding two. None (the
            default): uniform, with exactly the draws of the datasets made before this option existed.
        class_labels: also give each sample a class `label`, its object's (colour, shape) pair
            (`shape_class`, 18 classes), for class-conditional models (docs/study.md#efficiency). Needs one object
            per image (`max_objects=1`); the images and captions are unchanged.
    """

    name = "shapes"
    min_size = 24  # below this two large shapes no longer fit in opposite cells with the required gap

    def __init__(
        self,
        *,
        size: int = 32,
        seed: int = 0,
        num_samples: int = 100_000,
        min_objects: int = 1,
        max_objects: int = 2,
        count_weights: list[float] | tuple[float, ...] | None = None,
        class_labels: bool = False,
    ) -> None:
        super().__init__(size=size, seed=seed, num_samples=num_samples)
        if class_labels and max_objects != 1:
            raise ValueError(f"class_labels needs one object per image: set max_objects=1 (got {max_objects!r})")
        self.class_labels = bool(class_labels)
        if not isinstance(min_objects, int) or not 1 <= min_objects <= 4:
            raise ValueError(f"min_objects must be an int in [1, 4], got {min_objects!r}")
        if not isinstance(max_objects, int) or not min_objects <= max_objects <= 4:
            raise ValueError(f"max_objects must be an int in [min_objects={min_objects}, 4], got {max_objects!r}")
        self.min_objects, self.max_objects = min_objects, max_objects
        self.count_probs = _count_probs(count_weights, max_objects - min_objects + 1)

    def sample_spec(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        if self.count_probs is None:
            count = int(rng.integers(self.min_objects, self.max_objects + 1))
        else:
            count = self.min_objects + int(rng.choice(len(self.count_probs), p=self.count_probs))
        sizes = [SIZES[i] for i in rng.integers(len(SIZES), size=count)]
        colors = [list(COLORS)[i] for i in rng.integers(len(COLORS), size=count)]
        shapes = [SHAPES[i] for i in rng.integers(len(SHAPES), size=count)]
        # Draw the sizes first, then a uniformly random non-overlapping layout for them (two large shapes
        # cannot sit in adjacent cells at 32 px, so sizes and cells are not independent).
        layouts = valid_layouts(self.size, tuple(sizes))
        cells = layouts[int(rng.integers(len(layouts)))]
        objects = [
            {"size": sz, "color": c, "shape": sh, "position": POSITIONS[cell]}
            for cell, sz, c, sh in sorted(zip(cells, sizes, colors, shapes, strict=True))
        ]
        return {"objects": objects}

    def extra_fields(self, spec: dict[str, Any]) -> dict[str, Any]:
        if not self.class_labels:
            return {}
        (obj,) = spec["objects"]
        return {"label": shape_class(obj["color"], obj["shape"])}

    def render(self, spec: dict[str, Any]) -> np.ndarray:
        # Needs only the captioned attributes, so `render(parse_caption("shapes", caption))` works too.
        canvas = self._canvas(1)
        for obj in spec["objects"]:
            half = pixel_half_extent(obj["size"], self.scale)
            cx, cy = grid_center(obj["position"], half, self.size, self.scale)
            rasterize_shape(canvas[0], obj["shape"], cx, cy, half, COLORS[obj["color"]])
        return canvas


# Class labels of one-object shapes images: (colour, shape) pairs in COLORS x SHAPES order.
SHAPE_CLASSES: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLORS for s in SHAPES)


def shape_class(color: str, shape: str) -> int:
    """The class label of a (colour, shape) pair: its index in SHAPE_CLASSES."""
    return SHAPE_CLASSES.index((color, shape))


def _count_probs(weights: list[float] | tuple[float, ...] | None, counts: int) -> np.ndarray | None:
    """Validated `count_weights` as probabilities (float64, summing to 1), or None for uniform counts."""
    if weights is None:
        return None
    if not isinstance(weights, (list, tuple)) or len(weights) != counts:
        raise ValueError(
            f"count_weights must be a list of {counts} weights (one per count from min_objects to max_objects), "
            f"got {weights!r}"
        )
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and np.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"count_weights must be finite numbers >= 0, got {weights!r}")
    total = float(sum(weights))
    if total <= 0:
        raise ValueError(f"count_weights must not all be zero, got {weights!r}")
    return np.asarray(weights, dtype=np.float64) / total


# --------------------------------------------------------------------------------------------------------------
# moving-shapes: one or two shapes moving left / right / up / down at constant speed
# --------------------------------------------------------------------------------------------------------------


class MovingShapesDataset(ProceduralDataset):
    """Text-to-video: flat shapes ("movers") translating in their captioned directions at constant speed.

    Each mover travels `0.4 * size` pixels from the first to the last frame (whatever `frames` is), starting at
    a random point that keeps its whole trajectory inside the image. Caption examples: "a red circle moving left"
    (one mover, the default) and "a red circle moving left and a blue square moving down" (`max_objects=2`).
    Movers of one clip differ in (colour, shape) and move along one axis (both horizontally or both vertically:
    perpendicular movers would have to cross at 32 px), and their bounding boxes stay at least 3 px (at 32 px)
    apart in every frame, so they never touch. Samples are `(3, frames, size, size)`.

    Args:
        size: image side in pixels.
        seed: dataset seed.
        num_samples: the dataset length.
        frames: clip length (>= 2, so the motion is visible).
        min_objects: fewest movers per clip (>= 1).
        max_objects: most movers per clip (<= 2; uniform in [min_objects, max_objects]). With the default 1 the
            samples are exactly those of the one-mover dataset.
        grid_motion: movers are drawn as the still "shapes" are (a half-integer half-extent, the centre on a
            pixel centre: the shape fills its `2 * floor(half) + 1` pixel box as the oracle's templates do; at
            16 px a 7 px box that may touch the border), start on pixel centres and move a whole number of
            pixels per frame (`round(0.4 * size / (frames - 1))`, at least 1), so every frame shows the same
            raster of the shape. The default (False) draws sub-pixel starts and steps, and a shape's raster then
            changes from frame to frame (at 16 px a triangle's rows go 1-1-3-3-5-5 in one frame and 1-2-3-4-5-6
            in the next), which a small model learns as a blur (EVALUATION.md).
    """

    name = "moving-shapes"

    def __init__(
        self,
        *,
        size: int = 32,
        seed: int = 0,
        num_samples: int = 100_000,
        frames: int = 8,
        min_objects: int = 1,
        max_objects: int = 1,
        grid_motion: bool = False,
    ) -> None:
        super().__init__(size=size, seed=seed, num_samples=num_samples)
        if not isinstance(grid_motion, bool):
            raise ValueError(f"grid_motion must be true or false, got {grid_motion!r}")
        if not isinstance(frames, int) or frames < 2:
            raise ValueError(f"frames must be an int >= 2, got {frames!r}")
        if not isinstance(min_objects, int) or not 1 <= min_objects <= 2:
            raise ValueError(f"min_objects must be an int in [1, 2], got {min_objects!r}")
        if not isinstance(max_objects, int) or not min_objects <= max_objects <= 2:
            raise ValueError(f"max_objects must be an int in [min_objects={min_objects}, 2], got {max_objects!r}")
        self.frames, self.min_objects, self.max_objects = frames, min_objects, max_objects
        self.grid_motion = grid_motion
        half = MOVING_HALF_EXTENT * self.scale
        self.half = float(np.floor(half)) + 0.5 if grid_motion else half
        self.margin = 0.0 if grid_motion else _MARGIN * self.scale  # a 7 px box leaves no margin for two at 16 px
        # pixels travelled per frame and over the clip
        self.step = (
            max(round(MOVING_TRAVEL * size / (frames - 1)), 1) if grid_motion else MOVING_TRAVEL * size / (frames - 1)
        )
        # (not step * (frames - 1) for sub-pixel motion: that may differ in the last bit and move the default samples)
        self.travel = self.step * (frames - 1) if grid_motion else MOVING_TRAVEL * size

    def sample_spec(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        if self.max_objects == 1:  # the original one-mover draws, in their original order
            mover = self._draw_mover(rng)
            return {**mover, "start": self._draw_start(rng, mover["direction"])}
        count = int(rng.integers(self.min_objects, self.max_objects + 1))
        movers: list[dict[str, Any]] = []
        while len(movers) < count:  # redraw until distinct in (colour, shape) and on the first mover's axis
            mover = self._draw_mover(rng)
            if all((m["color"], m["shape"]) != (mover["color"], mover["shape"]) for m in movers) and (
                not movers or _same_axis(mover["direction"], movers[0]["direction"])
            ):
                movers.append(mover)
        return self.complete_spec(movers[0] if count == 1 else {"objects": movers}, rng)

    def complete_spec(self, spec: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        movers = moving_objects(spec)
        if len(movers) == 1:
            return {**movers[0], "start": self._draw_start(rng, movers[0]["direction"])}
        starts = self._draw_apart_starts(rng, [m["direction"] for m in movers])
        return {"objects": [{**m, "start": start} for m, start in zip(movers, starts, strict=True)]}

    def render(self, spec: dict[str, Any]) -> np.ndarray:
        canvas = self._canvas(self.frames)
        half, step = self.half, self.step
        for f in range(self.frames):
            for mover in moving_objects(spec):
                dx, dy = DIRECTION_VECTORS[mover["direction"]]
                start_x, start_y = mover["start"]
                cx, cy = start_x + f * step * dx, start_y + f * step * dy
                rasterize_shape(canvas[f], mover["shape"], cx, cy, half, COLORS[mover["color"]])
        return canvas

    @staticmethod
    def _draw_mover(rng: np.random.Generator) -> dict[str, Any]:
        color = list(COLORS)[int(rng.integers(len(COLORS)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        direction = DIRECTIONS[int(rng.integers(len(DIRECTIONS)))]
        return {"color": color, "shape": shape, "direction": direction}

    def _start_ranges(self, direction: str) -> tuple[tuple[float, float], tuple[float, float]]:
        """((x_lo, x_hi), (y_lo, y_hi)): starts whose trajectory stays inside the image."""
        half, travel = self.half, self.travel
        lo, hi = half + self.margin, self.size - half - self.margin
        # Start so that start + travel * direction stays in [lo, hi] on the motion axis.
        dx, dy = DIRECTION_VECTORS[direction]
        return (
            (lo + travel * max(-dx, 0.0), hi - travel * max(dx, 0.0)),
            (lo + travel * max(-dy, 0.0), hi - travel * max(dy, 0.0)),
        )

    def _draw_start(self, rng: np.random.Generator, direction: str) -> tuple[float, float]:
        (x_lo, x_hi), (y_lo, y_hi) = self._start_ranges(direction)
        return (float(self._uniform(rng, x_lo, x_hi)), float(self._uniform(rng, y_lo, y_hi)))

    def _uniform(self, rng: np.random.Generator, lo: float, hi: float, n: int | None = None) -> Any:
        """Uniform start coordinates in [lo, hi]; with `grid_motion` only pixel centres (`k + 0.5`)."""
        if not self.grid_motion:
            return rng.uniform(lo, hi, n)
        first, last = int(np.ceil(lo - 0.5)), int(np.floor(hi - 0.5))
        if last < first:
            raise ValueError(f"no pixel-grid start for a mover in a {self.size} px clip; use a larger size")
        return rng.integers(first, last + 1, n) + 0.5

    def _draw_apart_starts(self, rng: np.random.Generator, directions: list[str]) -> list[tuple[float, float]]:
        """Starts of several movers whose bounding boxes keep the gap in every frame (rejection sampling).

        Candidates are drawn 256 at a time and the first that works is taken: deterministic and cheap (two
        movers on one axis need about 40 candidates at 32 px, as they must sit near opposite borders).
        """
        need = 2 * self.half + _GAP * self.scale
        offsets_F = np.arange(self.frames) * self.step  # travelled so far
        for _ in range(100):
            paths = []  # per mover: (256, F, 2) centres
            for direction in directions:
                (x_lo, x_hi), (y_lo, y_hi) = self._start_ranges(direction)
                starts = np.stack([self._uniform(rng, x_lo, x_hi, 256), self._uniform(rng, y_lo, y_hi, 256)], axis=1)
                paths.append(starts[:, None, :] + offsets_F[None, :, None] * np.array(DIRECTION_VECTORS[direction]))
            ok = np.ones(256, dtype=bool)
            for a, b in itertools.combinations(paths, 2):
                gap = np.abs(a - b)  # (256, F, 2): boxes are apart when apart along either axis, in every frame
                ok &= ((gap[..., 0] >= need) | (gap[..., 1] >= need)).all(axis=1)
            if ok.any():
                first = int(ok.argmax())
                return [(float(p[first, 0, 0]), float(p[first, 0, 1])) for p in paths]
        raise ValueError(f"cannot place {len(directions)} movers ({directions}) apart in a {self.size} px clip")


def _same_axis(a: str, b: str) -> bool:
    """True for two directions along one axis (left / right, or up / down)."""
    return (DIRECTION_VECTORS[a][0] == 0) == (DIRECTION_VECTORS[b][0] == 0)
