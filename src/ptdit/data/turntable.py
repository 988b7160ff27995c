"""Turntable multi-view dataset ("turntable", text-to-multi-view) and its tiny numpy software renderer.

Each sample shows one two-tone convex object (a cube, a square pyramid or a tall square tower; the upper half of
the object, by height, has the "top" colour) from `views` cameras evenly spaced in azimuth (360 / views degrees
apart, random start azimuth) at one elevation drawn uniformly from [5, 30] degrees, looking at the object centre.
Caption example: "a red cube with a blue top".

Renderer: orthographic projection, flat shading per face (ambient plus Lambert term for a light fixed in the
world, so the shading turns with the object), no anti-aliasing. The objects are convex, so back-face culling
alone resolves visibility (no z-buffer or sorting needed); each visible face is a convex polygon rasterised by
half-plane tests on pixel centres. About 0.2 ms per view at 32 px.

Shape legend: V views (the F axis of a sample), H / W image rows / columns; samples are `(3, V, H, W)` in
[-1, 1]. World axes: x, y horizontal, z up; lengths in units of the image side.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np

from ptdit.data.captions import COLORS, KINDS
from ptdit.data.shapes import ProceduralDataset

ELEVATION_RANGE = (5.0, 30.0)  # degrees
_LIGHT = np.array([0.35, -0.55, 0.76]) / np.linalg.norm([0.35, -0.55, 0.76])  # world-fixed light direction
_AMBIENT = 0.55  # brightness of an unlit face; keeps every face well above the oracle's background threshold
# (half-width of the square cross-section at the bottom, middle and top, full height), in image-side units.
_KIND_GEOMETRY = {
    "cube": ((0.21, 0.21, 0.21), 0.42),
    "pyramid": ((0.25, 0.125, 0.0), 0.45),
    "tower": ((0.12, 0.12, 0.12), 0.62),
}


@cache
def object_mesh(kind: str) -> tuple[tuple[np.ndarray, np.ndarray, int], ...]:
    """Faces of a two-tone convex object, as `(vertices (k, 3), outward unit normal (3,), part)` tuples.

    The object is a stack of two square frustums (bottom half, top half) centred on the origin; `part` is 0 for
    faces with the main colour and 1 for faces with the top colour. Degenerate faces (the pyramid apex) are
    dropped.
    """
    if kind not in _KIND_GEOMETRY:
        raise ValueError(f"unknown object kind {kind!r}; valid kinds: {list(KINDS)}")
    half_widths, height = _KIND_GEOMETRY[kind]
    corners = np.array([[1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=np.float64)  # counter-clockwise from above
    rings = [
        np.concatenate([corners * hw, np.full((4, 1), z)], axis=1)
        for hw, z in zip(half_widths, (-height / 2, 0.0, height / 2), strict=True)
    ]
    faces = [(rings[0][::-1], 0), (rings[2], 1)]  # bottom (seen from below: reversed), top
    for band in (0, 1):
        lo, hi = rings[band], rings[band + 1]
        faces += [(np.stack([lo[i], lo[(i + 1) % 4], hi[(i + 1) % 4], hi[i]]), band) for i in range(4)]
    mesh = []
    for verts, part in faces:
        # Newell's method: robust normal for polygons with repeated vertices (the apex).
        normal = np.cross(verts, np.roll(verts, -1, axis=0)).sum(axis=0)
        area2 = np.linalg.norm(normal)
        if area2 > 1e-9:
            mesh.append((verts, normal / area2, part))
    return tuple(mesh)


def render_view(
    kind: str, colors: tuple[tuple[float, ...], tuple[float, ...]], azimuth: float, elevation: float, size: int
) -> np.ndarray:
    """Renders one view of a two-tone object on a black background.

    Args:
        kind: "cube", "pyramid" or "tower".
        colors: RGB in [0, 1] of the main (bottom-half) and top-half faces.
        azimuth: camera azimuth in degrees (rotation about the vertical axis).
        elevation: camera elevation in degrees above the horizon.
        size: image side in pixels.

    Returns:
        (H, W, 3) float32 image in [0, 1].
    """
    az, el = math.radians(azimuth), math.radians(elevation)
    forward = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])  # to the camera
    right = np.array([-math.sin(az), math.cos(az), 0.0])
    up = np.cross(forward, right)
    image = np.zeros((size, size, 3), dtype=np.float32)
    centers = np.arange(size, dtype=np.float64) + 0.5
    for verts, normal, part in object_mesh(kind):
        if normal @ forward <= 1e-6:  # back face: hidden behind the (convex) object
            continue
        # Orthographic projection to pixel coordinates (column, row), image rows pointing down.
        cols, rows = size / 2 + size * (verts @ right), size / 2 - size * (verts @ up)
        c0, c1 = max(int(cols.min()), 0), min(math.ceil(cols.max()) + 1, size)
        r0, r1 = max(int(rows.min()), 0), min(math.ceil(rows.max()) + 1, size)
        px, py = centers[None, None, c0:c1], centers[None, r0:r1, None]
        ex, ey = np.roll(cols, -1) - cols, np.roll(rows, -1) - rows
        # Half-plane test per edge; the sign of the polygon's area makes it orientation-independent.
        cross = ex[:, None, None] * (py - rows[:, None, None]) - ey[:, None, None] * (px - cols[:, None, None])
        sign = 1.0 if (cols * np.roll(rows, -1) - np.roll(cols, -1) * rows).sum() > 0 else -1.0
        inside = (cross * sign >= 0).all(axis=0)
        shade = _AMBIENT + (1 - _AMBIENT) * max(float(normal @ _LIGHT), 0.0)
        image[r0:r1, c0:c1][inside] = np.asarray(colors[part], dtype=np.float32) * shade
    return image


class TurntableDataset(ProceduralDataset):
    """Text-to-multi-view: a two-tone object seen from `views` evenly spaced azimuths at one elevation.

    Caption example: "a red cube with a blue top" (the two colours differ). With `single_color_fraction > 0`
    that fraction of the objects has one colour throughout, captioned "a red cube". Samples are
    `(3, views, size, size)`; view `v` is at azimuth `start + 360 * v / views` degrees.

    Args:
        size: image side in pixels.
        seed: dataset seed.
        num_samples: the dataset length.
        views: number of views (>= 1).
        single_color_fraction: probability of a one-colour object, in [0, 1]. With the default 0 the samples
            are exactly those of the two-tone dataset.
    """

    name = "turntable"

    def __init__(
        self,
        *,
        size: int = 32,
        seed: int = 0,
        num_samples: int = 100_000,
        views: int = 8,
        single_color_fraction: float = 0.0,
    ) -> None:
        super().__init__(size=size, seed=seed, num_samples=num_samples)
        if not isinstance(views, int) or views < 1:
            raise ValueError(f"views must be a positive int, got {views!r}")
        if not isinstance(single_color_fraction, (int, float)) or not 0.0 <= single_color_fraction <= 1.0:
            raise ValueError(f"single_color_fraction must be in [0, 1], got {single_color_fraction!r}")
        self.views, self.single_color_fraction = views, float(single_color_fraction)

    def sample_spec(self, index: int) -> dict[str, Any]:
        rng = self.rng(index)
        kind = KINDS[int(rng.integers(len(KINDS)))]
        names = list(COLORS)
        color, top_color = (names[i] for i in rng.choice(len(names), size=2, replace=False))
        spec = self.complete_spec({"kind": kind, "color": color, "top_color": top_color}, rng)
        # Drawn last, and only when asked for, so the default samples keep their original draws.
        if self.single_color_fraction > 0 and rng.random() < self.single_color_fraction:
            spec["top_color"] = color
        return spec

    def complete_spec(self, spec: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        azimuth = float(rng.uniform(0.0, 360.0))
        elevation = float(rng.uniform(*ELEVATION_RANGE))
        return {**spec, "azimuth": azimuth, "elevation": elevation}

    def render(self, spec: dict[str, Any]) -> np.ndarray:
        colors = (COLORS[spec["color"]], COLORS[spec["top_color"]])
        return np.stack(
            [
                render_view(
                    spec["kind"], colors, spec["azimuth"] + 360.0 * v / self.views, spec["elevation"], self.size
                )
                for v in range(self.views)
            ]
        )
