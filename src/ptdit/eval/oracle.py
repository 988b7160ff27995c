"""Oracle caption-adherence scorers for the procedural datasets (plain image analysis, no learned model).

Each scorer reads its targets by parsing the caption text (`ptdit.data.captions.parse_caption`), so it works on
generated samples that come with nothing but their prompt, and returns a per-sample accuracy in [0, 1]:

    accuracy = (number of the caption's checkable attributes that the pixels match) / (number of attributes)

Attributes per dataset:

- shapes: for every captioned object its colour, shape, grid position and size (4 each), plus one attribute
  "the image holds exactly as many objects as the caption names". Objects are connected components of the
  foreground (brightest channel > 0.5); captioned objects are matched one-to-one to detected objects by the
  assignment that matches the most attributes; an object left without a partner matches nothing.
- moving-shapes: colour, shape and direction of motion (3). Colour and shape are the majority over frames of the
  largest object per frame; the direction is that of the least-squares displacement of its bounding-box centre
  over the clip, and only counts if the object travels at least half the dataset's travel (0.2 of the image
  side) and mostly along one axis.
- turntable: object kind, main colour and top colour, each as the fraction of views where it is matched, plus
  one view-consistency attribute (4). A view is consistent when an object is found in every view, all views
  agree on (kind, main colour, top colour), and neighbouring views (cyclically) differ by at most 1.8x in
  silhouette area and 0.15 of the image side in bounding-box centre.

Measurement details: colours are classified per pixel by the nearest palette colour after dividing by the
brightest channel (so flat shading does not change the colour) and a region takes its majority colour; shapes
by the best intersection-over-union with a circle / square / triangle template fitted to the bounding box;
positions by the third of the image holding the bounding-box centre; sizes by the bounding-box extent against the
midpoint of the small and large extents; the turntable kind by silhouette features (a pyramid is much narrower in
its top 30% of rows than in its bottom 30%, a tower is tall, a cube is neither) and its colours from the top and
bottom 30% of the silhouette rows.

Shape legend: B batch, F frames (views), H / W rows / columns; scorers take pixels `(B, 3, F, H, W)` in [-1, 1].
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ptdit.data.captions import COLORS, POSITIONS, SHAPES, parse_caption
from ptdit.data.shapes import HALF_EXTENT, MOVING_HALF_EXTENT, MOVING_TRAVEL, shape_mask

_COLOR_NAMES = list(COLORS)
_PALETTE = np.array([COLORS[c] for c in _COLOR_NAMES], dtype=np.float32)  # (6, 3), brightest channel = 1
FLAT_THRESHOLD = 0.5  # foreground test for the flat (unshaded) 2D datasets, in [0, 1] units
_SHADED_THRESHOLD = 0.3  # turntable faces are at least 0.55 bright, so a lower threshold is still safe


# --------------------------------------------------------------------------------------------------------------
# Image analysis helpers
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """One connected foreground region: bounding box `[r0, r1) x [c0, c1)`, its mask crop and pixel colours."""

    r0: int
    r1: int
    c0: int
    c1: int
    mask: np.ndarray  # (r1 - r0, c1 - c0) bool
    color_ids: np.ndarray  # (r1 - r0, c1 - c0) palette index per pixel (meaningful where mask is True)

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def extent(self) -> int:
        return max(self.r1 - self.r0, self.c1 - self.c0)

    @property
    def center(self) -> tuple[float, float]:
        """Bounding-box centre (column, row) in pixel units."""
        return (self.c0 + self.c1) / 2.0, (self.r0 + self.r1) / 2.0

    def majority_color(self, rows: slice = slice(None)) -> tuple[str, float]:
        """Most frequent palette colour among the region's pixels (optionally only crop rows `rows`) and its share."""
        ids = self.color_ids[rows][self.mask[rows]]
        if ids.size == 0:
            return "", 0.0
        counts = np.bincount(ids, minlength=len(_COLOR_NAMES))
        return _COLOR_NAMES[int(counts.argmax())], float(counts.max() / ids.size)


def label_components(mask_HW: np.ndarray) -> np.ndarray:
    """4-connected component labels, vectorised (min-label propagation with pointer jumping).

    Every foreground pixel holds the flat index of a pixel of its own component; each round lowers it to the
    smallest label among its neighbours, lowers the label's own pixel too ("hooking"), then follows pointers to
    their end, so labels spread along whole chains per round instead of one pixel per round.

    Args:
        mask_HW: (H, W) bool foreground.

    Returns:
        (H, W) int labels: -1 for background, otherwise the smallest flat pixel index of the component.
    """
    h, w = mask_HW.shape
    n = h * w
    # parent has one extra slot, index n, that background pixels point to and that never changes.
    parent = np.append(np.where(mask_HW.ravel(), np.arange(n), n), n)
    padded = np.full((h + 2, w + 2), n)  # border of background labels around the image
    while True:
        labels = parent[:n].reshape(h, w)
        padded[1:-1, 1:-1] = labels
        neighbour_min = np.minimum.reduce(
            [labels, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        ).ravel()
        neighbour_min = np.where(mask_HW.ravel(), neighbour_min, n)
        updated = parent.copy()
        np.minimum.at(updated, parent[:n], neighbour_min)  # hook each label's own pixel
        updated[:n] = np.minimum(updated[:n], neighbour_min)
        while True:  # pointer jumping until every pixel points at a root
            jumped = updated[updated]
            if np.array_equal(jumped, updated):
                break
            updated = jumped
        if np.array_equal(updated, parent):
            return np.where(mask_HW, parent[:n].reshape(h, w), -1)
        parent = updated


def palette_ids(image_HW3: np.ndarray) -> np.ndarray:
    """(H, W) index of the nearest palette colour after normalising each pixel by its brightest channel."""
    chroma = image_HW3 / np.maximum(image_HW3.max(axis=-1, keepdims=True), 1e-3)
    # Squared distance up to the per-pixel constant |chroma|^2: |p|^2 - 2 chroma . p, for all palette p at once.
    return ((_PALETTE * _PALETTE).sum(axis=-1) - 2.0 * chroma @ _PALETTE.T).argmin(axis=-1)


def find_blobs(image_HW3: np.ndarray, threshold: float, min_area: int = 1) -> list[Blob]:
    """Connected components of `max channel > threshold` with at least `min_area` pixels, largest first.

    Args:
        image_HW3: (H, W, 3) image in [0, 1].
        threshold: foreground threshold on the brightest channel.
        min_area: smaller components are dropped (noise speckle; also keeps this cheap on noise images).
    """
    mask = image_HW3.max(axis=-1) > threshold
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return []
    # Label only the foreground's bounding box (objects cover a small part of the image), then shift back.
    top, left = int(rows[0]), int(cols[0])
    image_HW3, mask = image_HW3[top : rows[-1] + 1, left : cols[-1] + 1], mask[top : rows[-1] + 1, left : cols[-1] + 1]
    labels = label_components(mask)
    roots, areas = np.unique(labels[mask], return_counts=True)
    keep = roots[areas >= min_area][np.argsort(-areas[areas >= min_area], kind="stable")]
    blobs = []
    for root in keep:
        rows, cols = np.nonzero(labels == root)
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        crop = labels[r0:r1, c0:c1] == root
        ids = palette_ids(image_HW3[r0:r1, c0:c1])
        blobs.append(Blob(int(r0) + top, int(r1) + top, int(c0) + left, int(c1) + left, crop, ids))
    return blobs


def classify_shape(blob: Blob) -> tuple[str, float]:
    """Best-fitting flat shape of a region and its intersection-over-union with that shape's template."""
    h, w = blob.mask.shape
    v = (np.arange(h)[:, None] + 0.5) / h * 2.0 - 1.0
    u = (np.arange(w)[None, :] + 0.5) / w * 2.0 - 1.0
    ious = []
    for shape in SHAPES:
        template = shape_mask(shape, u, v)
        ious.append((template & blob.mask).sum() / max((template | blob.mask).sum(), 1))
    best = int(np.argmax(ious))
    return SHAPES[best], float(ious[best])


def _position_name(blob: Blob, size: int) -> str:
    cx, cy = blob.center
    return POSITIONS[3 * min(int(3 * cy / size), 2) + min(int(3 * cx / size), 2)]


def is_flat_object(blob: Blob, min_half: float, max_half: float) -> bool:
    # Plausible shape: extent between half the smallest and 1.5x the largest shape, filled at least like a
    # triangle would be, mostly one colour. Rejects noise speckle and image-filling regions.
    fill = blob.area / blob.mask.size
    return min_half <= blob.extent <= 3.0 * max_half and fill >= 0.35 and blob.majority_color()[1] >= 0.6


def min_flat_area(min_half: float) -> int:
    # A quarter of the smallest shape's area (a triangle: 2 * half^2): anything smaller is speckle.
    return max(int(0.5 * min_half * min_half), 1)


def to_unit_numpy(pixels: torch.Tensor) -> np.ndarray:
    """(B, 3, F, H, W) in [-1, 1] -> (B, F, H, W, 3) float32 numpy in [0, 1] (a strided view)."""
    if pixels.dim() != 5 or pixels.shape[1] != 3:
        raise ValueError(f"pixels must be (B, 3, F, H, W), got {tuple(pixels.shape)}")
    if pixels.shape[-1] != pixels.shape[-2]:
        raise ValueError(f"images must be square, got H x W = {pixels.shape[-2]} x {pixels.shape[-1]}")
    x = pixels.detach().to("cpu", torch.float32).numpy()
    # A transposed view, not a copy: the analysis reads small crops, and a full copy costs more than it saves.
    return ((np.clip(x, -1.0, 1.0) + 1.0) * 0.5).transpose(0, 2, 3, 4, 1)


def _check_batch(pixels: torch.Tensor, captions: list[str]) -> np.ndarray:
    images = to_unit_numpy(pixels)
    if len(captions) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} samples but {len(captions)} captions")
    return images


# --------------------------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------------------------


def describe_flat_object(blob: Blob, size: int) -> dict[str, str]:
    scale = size / 32.0
    threshold = (HALF_EXTENT["small"] + HALF_EXTENT["large"]) * scale  # midpoint of the two full extents
    return {
        "color": blob.majority_color()[0],
        "shape": classify_shape(blob)[0],
        "position": _position_name(blob, size),
        "size": "small" if blob.extent < threshold else "large",
    }


def flat_objects(image_HW3: np.ndarray) -> list[Blob]:
    """The blobs of an image in [0, 1] that pass as flat shapes of the "shapes" data, largest first."""
    scale = image_HW3.shape[0] / 32.0
    small, large = HALF_EXTENT["small"] * scale, HALF_EXTENT["large"] * scale
    return [b for b in find_blobs(image_HW3, FLAT_THRESHOLD, min_flat_area(small)) if is_flat_object(b, small, large)]


ONE_OBJECT_CHECKS = ("color", "shape", "position", "size", "count")


def one_object_checks(pixels: torch.Tensor, wanted: list[dict[str, str]]) -> dict[str, torch.Tensor]:
    """Per-attribute checks of one-object "shapes" samples (docs/study.md#measures).

    Sample i asks for the attributes in `wanted[i]` (any of color, shape, position, size). Each is checked on
    the largest detected flat object; `count` checks that exactly one object is detected. A sample with no
    object fails every check.

    Returns:
        `{check: (B,) bool}` for `count` and each attribute that every `wanted[i]` names.
    """
    images = to_unit_numpy(pixels)
    if len(wanted) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} samples but {len(wanted)} labels")
    keys = [k for k in ONE_OBJECT_CHECKS[:-1] if all(k in w for w in wanted)]
    hits: dict[str, list[bool]] = {k: [] for k in (*keys, "count")}
    for image, want in zip(images, wanted, strict=True):
        blobs = flat_objects(image[0])
        found = describe_flat_object(blobs[0], image.shape[2]) if blobs else {}
        for k in keys:
            hits[k].append(found.get(k) == want[k])
        hits["count"].append(len(blobs) == 1)
    return {k: torch.tensor(v, dtype=torch.bool) for k, v in hits.items()}


def score_shape_classes(pixels: torch.Tensor, labels: list[int]) -> torch.Tensor:
    """Class adherence of one-object "shapes" samples from a class-conditional model (docs/study.md#efficiency).

    Label k asks for the (colour, shape) pair `SHAPE_CLASSES[k]`. A sample scores the mean of three checks
    (`one_object_checks`): the largest detected object has the colour, it has the shape, and exactly one object
    is detected.

    Returns:
        (B,) float32 accuracies in {0, 1/3, 2/3, 1}.
    """
    from ptdit.data.shapes import SHAPE_CLASSES

    wanted = [dict(zip(("color", "shape"), SHAPE_CLASSES[int(k)], strict=True)) for k in labels]
    checks = one_object_checks(pixels, wanted)
    return torch.stack(list(checks.values())).float().mean(0)


def score_shapes(pixels: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Caption adherence for "shapes" samples (see the module docstring for the definition).

    Args:
        pixels: (B, 3, 1, H, W) images in [-1, 1] (only the first frame is read), H = W.
        captions: B captions in the "shapes" grammar.

    Returns:
        (B,) float32 accuracies in [0, 1].
    """
    images = _check_batch(pixels, captions)
    size = images.shape[2]
    scores = []
    for image, caption in zip(images, captions, strict=True):
        wanted = parse_caption("shapes", caption)["objects"]
        blobs = flat_objects(image[0])
        found = [describe_flat_object(b, size) for b in blobs[:6]]  # the 6 largest bound the search below
        keys = ("color", "shape", "position", "size")
        # Best one-to-one assignment of captioned objects to detected ones (at most 6P4 = 360 candidates).
        best = 0
        slots = found + [None] * len(wanted)  # None = object left without a partner
        for perm in itertools.permutations(range(len(slots)), len(wanted)):
            matched = sum(sum(slots[j][k] == w[k] for k in keys) for w, j in zip(wanted, perm, strict=True) if slots[j])
            best = max(best, matched)
        count_ok = len(blobs) == len(wanted)
        scores.append((best + count_ok) / (len(keys) * len(wanted) + 1))
    return torch.tensor(scores, dtype=torch.float32)


# --------------------------------------------------------------------------------------------------------------
# moving-shapes
# --------------------------------------------------------------------------------------------------------------


def motion_direction(centers: list[tuple[int, float, float]], size: int, frames: int) -> str:
    """Direction of the least-squares displacement of (frame, cx, cy) centres over the clip ("" if unclear)."""
    if len(centers) < 2:
        return ""
    t, cx, cy = (np.array(c, dtype=np.float64) for c in zip(*centers, strict=True))
    if np.ptp(t) == 0:
        return ""
    slope_x, slope_y = np.polyfit(t, cx, 1)[0], np.polyfit(t, cy, 1)[0]
    dx, dy = slope_x * (frames - 1), slope_y * (frames - 1)  # displacement over the whole clip
    along, across = (dx, dy) if abs(dx) >= abs(dy) else (dy, dx)
    if abs(along) < 0.5 * MOVING_TRAVEL * size or abs(across) > 0.5 * abs(along):
        return ""
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def score_moving_shapes(pixels: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Caption adherence for "moving-shapes" clips: colour, shape and direction of motion.

    Clips of several movers (`max_objects=2`) are scored by `ptdit.eval.checks.check_moving_shapes`: the
    fraction of its per-mover checks (drawn, colour, direction) that pass.

    Args:
        pixels: (B, 3, F, H, W) clips in [-1, 1], F >= 2, H = W.
        captions: B captions in the "moving-shapes" grammar.

    Returns:
        (B,) float32 accuracies in [0, 1].
    """
    images = _check_batch(pixels, captions)
    frames, size = images.shape[1], images.shape[2]
    half = MOVING_HALF_EXTENT * size / 32.0
    scores = []
    for clip, caption in zip(images, captions, strict=True):
        wanted = parse_caption("moving-shapes", caption)
        if "objects" in wanted:
            from ptdit.eval.checks import check_moving_shapes  # checks builds on this module

            checks = check_moving_shapes(clip, caption)[0]
            scores.append(sum(c.passed for c in checks) / len(checks))
            continue
        colors, shapes, centers = Counter(), Counter(), []
        for f, frame in enumerate(clip):
            blobs = find_blobs(frame, FLAT_THRESHOLD, min_flat_area(half))
            blobs = [b for b in blobs if is_flat_object(b, half, half)]
            if blobs:
                colors[blobs[0].majority_color()[0]] += 1
                shapes[classify_shape(blobs[0])[0]] += 1
                centers.append((f, *blobs[0].center))
        found = {
            "color": colors.most_common(1)[0][0] if colors else "",
            "shape": shapes.most_common(1)[0][0] if shapes else "",
            "direction": motion_direction(centers, size, frames),
        }
        scores.append(sum(found[k] == wanted[k] for k in ("color", "shape", "direction")) / 3.0)
    return torch.tensor(scores, dtype=torch.float32)


# --------------------------------------------------------------------------------------------------------------
# turntable
# --------------------------------------------------------------------------------------------------------------


def describe_view(image_HW3: np.ndarray) -> dict[str, Any] | None:
    """Kind, main / top colour, silhouette area and centre of the object in one turntable view (None if none).

    Args:
        image_HW3: (H, W, 3) view in [0, 1], H = W.
    """
    size = image_HW3.shape[0]
    blobs = find_blobs(image_HW3, _SHADED_THRESHOLD, min_area=int(0.02 * size * size))
    if not blobs:
        return None  # nothing but specks
    blob = blobs[0]
    h, w = blob.mask.shape
    if blob.extent > 0.9 * size:
        return None  # an image-filling region (noise, blank frames): no object
    band = max(round(0.3 * h), 1)
    widths = blob.mask.sum(axis=1)  # (h,) silhouette width per row
    # A pyramid narrows to its apex (its top rows are far narrower than its bottom rows), a tower is tall, and
    # a cube is neither; measured margins over random poses: top/bottom width <= 0.55 vs 1.0, aspect <= 1.4 vs
    # >= 1.9 (cube vs tower).
    if widths[:band].mean() < 0.75 * widths[-band:].mean():
        kind = "pyramid"
    elif h / w > 1.65:
        kind = "tower"
    else:
        kind = "cube"
    return {
        "kind": kind,
        "color": blob.majority_color(slice(h - band, h))[0],
        "top_color": blob.majority_color(slice(0, band))[0],
        "area": blob.area,
        "center": blob.center,
    }


def views_consistent(views: list[dict[str, Any] | None], size: int) -> bool:
    if any(v is None for v in views):
        return False
    if len({(v["kind"], v["color"], v["top_color"]) for v in views}) > 1:
        return False
    for a, b in itertools.pairwise([*views, views[0]] if len(views) > 2 else views):
        if max(a["area"], b["area"]) > 1.8 * min(a["area"], b["area"]):
            return False
        if np.hypot(a["center"][0] - b["center"][0], a["center"][1] - b["center"][1]) > 0.15 * size:
            return False
    return True


def score_turntable(pixels: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Caption adherence for "turntable" samples: kind, main and top colour per view, and view consistency.

    Args:
        pixels: (B, 3, V, H, W) views in [-1, 1], H = W.
        captions: B captions in the "turntable" grammar.

    Returns:
        (B,) float32 accuracies in [0, 1].
    """
    images = _check_batch(pixels, captions)
    size = images.shape[2]
    scores = []
    for sample, caption in zip(images, captions, strict=True):
        wanted = parse_caption("turntable", caption)
        views = [describe_view(view) for view in sample]
        per_view = [
            np.mean([v is not None and v[k] == wanted[k] for v in views]) for k in ("kind", "color", "top_color")
        ]
        scores.append((sum(per_view) + views_consistent(views, size)) / 4.0)
    return torch.tensor(scores, dtype=torch.float32)


ORACLES: dict[str, Callable[[torch.Tensor, list[str]], torch.Tensor]] = {
    "shapes": score_shapes,
    "moving-shapes": score_moving_shapes,
    "turntable": score_turntable,
}


@torch.no_grad()
def evaluate_with_oracle(
    pipe: Any, dataset: str, prompts: list[str], *, batch_size: int = 16, progress: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples `prompts` with a generation pipeline and scores them with the dataset's oracle.

    Batch b of `batch_size` prompts uses seed b * batch_size, so sample i uses seed i whatever the batching.

    `progress`: a `ptdit.eval.progress.SampleProgress` advanced per batch (None: silent).

    Returns:
        (pixels (N, 3, F, H, W), per-sample accuracy (N,)).
    """
    if dataset not in ORACLES:
        raise ValueError(f"no oracle for dataset {dataset!r}; oracles exist for {sorted(ORACLES)}")
    pixels = sample_in_batches(pipe, prompts, batch_size, progress)
    return pixels, ORACLES[dataset](pixels, prompts)


def sample_in_batches(pipe: Any, prompts: list[str], batch_size: int, progress: Any = None) -> torch.Tensor:
    """(N, 3, F, H, W) samples of `prompts`, `batch_size` at a time; batch b uses seed b * batch_size, so sample i
    uses seed i whatever the batching. `progress`: a `ptdit.eval.progress.SampleProgress` advanced per batch."""
    chunks = []
    for i in range(0, len(prompts), batch_size):
        chunks.append(pipe(prompts[i : i + batch_size], seed=i))
        if progress is not None:
            progress.update(len(chunks[-1]))
    return torch.cat(chunks)
