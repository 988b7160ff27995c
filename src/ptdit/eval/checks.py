"""Attribute checks with reasons: what the oracle benchmark (`ptdit.eval.benchmark`) scores per sample.

Where `ptdit.eval.oracle` gives one accuracy per sample, these functions read a sample against its caption and
return one `Check` per captioned attribute, each with pass / fail and a sentence saying why, plus what the
image analysis found. The measurements are the oracle's (same detector, colour, shape, size and position
classifiers, motion fit and view descriptions); docs/oracle-benchmark.md describes the checks.

Dependency gating (as DPG-Bench does for its question graph): an object's attributes (colour, position, size,
direction, top colour, view consistency) depend on the object being drawn. When it was not drawn they are not
measured; their `Check` has `scored=False`, counts as failed, and says so in `why`.

"Drawn" means:
- shapes: the captioned object is matched (best one-to-one assignment, shape first) to a detected object of
  the captioned shape;
- moving-shapes: the mover's shape is found in at least half of the frames (per frame, detected objects are
  assigned to the captioned movers by shape, then colour);
- turntable: the captioned kind is recognised in more than half of the views.

Shape legend: F frames (views), H / W rows / columns; inputs are `(F, H, W, 3)` numpy arrays in [0, 1].
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ptdit.data.captions import moving_objects, parse_caption
from ptdit.data.shapes import HALF_EXTENT, MOVING_HALF_EXTENT
from ptdit.eval.oracle import (
    FLAT_THRESHOLD,
    Blob,
    classify_shape,
    describe_flat_object,
    describe_view,
    find_blobs,
    is_flat_object,
    min_flat_area,
    motion_direction,
    views_consistent,
)

TAGS = ("drawn", "count", "color", "position", "size", "direction", "top_color", "consistency")


@dataclass(frozen=True)
class Check:
    """One captioned attribute of one sample.

    Attributes:
        name: what is checked, e.g. "object 2 (a large blue square) color".
        tag: the attribute kind, one of `TAGS`; benchmark categories select checks by tag.
        passed: the pixels show the attribute (always False when not scored).
        scored: False when the check was gated off because its object was not drawn.
        why: what was wanted and what was found.
    """

    name: str
    tag: str
    passed: bool
    scored: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _attribute(name: str, tag: str, wanted: str, found: str | None, gate: str | None) -> Check:
    """A check of `found == wanted`, or a gated (unscored, failed) one when `gate` names the missing object."""
    if gate is not None:
        return Check(name, tag, False, False, f"not scored: {gate} was not drawn")
    ok = found == wanted
    return Check(name, tag, ok, True, f"{'found' if ok else 'wanted'} {wanted}" + ("" if ok else f", found {found}"))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --------------------------------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------------------------------


def _flat_objects(image_HW3: np.ndarray, half_small: float, half_large: float) -> list[Blob]:
    blobs = find_blobs(image_HW3, FLAT_THRESHOLD, min_flat_area(half_small))
    return [b for b in blobs if is_flat_object(b, half_small, half_large)]


def _assign(wanted: list[dict[str, str]], found: list[dict[str, str]], keys: tuple[str, ...]) -> list[int | None]:
    """Best one-to-one assignment of captioned to found objects: most shape matches first, then most attribute
    matches (a shape match outweighs all other attributes together). Returns the found index per captioned
    object, None for an object left without a partner."""
    slots: list[dict[str, str] | None] = [*found, *([None] * len(wanted))]
    weight = len(keys) + 1

    def value(perm: tuple[int, ...]) -> int:
        return sum(
            weight * (s["shape"] == w["shape"]) + sum(s[k] == w[k] for k in keys)
            for w, j in zip(wanted, perm, strict=True)
            if (s := slots[j]) is not None
        )

    best = max(itertools.permutations(range(len(slots)), len(wanted)), key=value)  # first best on ties
    return [j if j < len(found) else None for j in best]


def _shape_words(o: dict[str, str]) -> str:
    return f"a {o['size']} {o['color']} {o['shape']} at the {o['position']}"


def check_shapes(image_FHW3: np.ndarray, caption: str) -> tuple[list[Check], list[dict[str, Any]]]:
    """Checks of a "shapes" image: per captioned object drawn / color / position / size, and the count.

    Returns:
        (checks, found): found lists the detected objects (color, shape, position, size), largest first.
    """
    size = image_FHW3.shape[1]
    scale = size / 32.0
    wanted = parse_caption("shapes", caption)["objects"]
    blobs = _flat_objects(image_FHW3[0], HALF_EXTENT["small"] * scale, HALF_EXTENT["large"] * scale)
    found = [describe_flat_object(b, size) for b in blobs]
    keys = ("color", "position", "size")
    partner = _assign(wanted, found[:6], keys)  # the 6 largest bound the search (at most 10P4 assignments)
    checks = []
    for i, (w, j) in enumerate(zip(wanted, partner, strict=True)):
        label = f"object {i + 1} ({_shape_words(w)})"
        f = found[j] if j is not None else None
        drawn = f is not None and f["shape"] == w["shape"]
        if drawn:
            why = f"found a {f['shape']} at the {f['position']}"
        else:
            why = f"no {w['shape']} found" + (f" (closest: {_shape_words(f)})" if f is not None else "")
        checks.append(Check(f"{label} drawn", "drawn", drawn, True, why))
        for key in keys:
            checks.append(_attribute(f"{label} {key}", key, w[key], f[key] if f else None, None if drawn else label))
    wanted_shapes = Counter(w["shape"] for w in wanted)
    found_shapes = Counter(f["shape"] for f in found)
    count_ok = found_shapes == wanted_shapes

    def describe(c: Counter) -> str:
        return ", ".join(_plural(n, s) for s, n in sorted(c.items())) or "nothing"

    why = f"wanted {describe(wanted_shapes)}, found {describe(found_shapes)}"
    checks.append(Check(f"count ({len(wanted)} objects)", "count", count_ok, True, why))
    return checks, found


# --------------------------------------------------------------------------------------------------------------
# moving-shapes
# --------------------------------------------------------------------------------------------------------------


def _track_movers(clip_FHW3: np.ndarray, wanted: list[dict[str, str]]) -> list[list[tuple[int, str, str, Blob]]]:
    """Per captioned mover, the (frame, shape, colour, blob) it is assigned in each frame where it has a partner.

    One mover takes the largest object of each frame (as the oracle does); several movers take the best
    assignment of the frame's largest objects by shape, then colour.
    """
    half = MOVING_HALF_EXTENT * clip_FHW3.shape[1] / 32.0
    tracks: list[list[tuple[int, str, str, Blob]]] = [[] for _ in wanted]
    for f, frame in enumerate(clip_FHW3):
        blobs = _flat_objects(frame, half, half)[: len(wanted) + 2]
        found = [{"shape": classify_shape(b)[0], "color": b.majority_color()[0]} for b in blobs]
        partner = [0 if found else None] if len(wanted) == 1 else _assign(wanted, found, ("color",))
        for track, j in zip(tracks, partner, strict=True):
            if j is not None:
                track.append((f, found[j]["shape"], found[j]["color"], blobs[j]))
    return tracks


def check_moving_shapes(clip_FHW3: np.ndarray, caption: str) -> tuple[list[Check], list[dict[str, Any]]]:
    """Checks of a "moving-shapes" clip: per captioned mover drawn / color / direction.

    Returns:
        (checks, found): found holds, per captioned mover, the frames where its shape was seen, its majority
        colour and its measured direction ("" when unclear).
    """
    frames, size = clip_FHW3.shape[0], clip_FHW3.shape[1]
    wanted = moving_objects(parse_caption("moving-shapes", caption))
    checks, found = [], []
    for i, (w, track) in enumerate(zip(wanted, _track_movers(clip_FHW3, wanted), strict=True)):
        label = f"mover {i + 1} (a {w['color']} {w['shape']} moving {w['direction']})"
        seen = [(f, color, blob) for f, shape, color, blob in track if shape == w["shape"]]
        drawn = 2 * len(seen) >= frames
        colors = Counter(color for _, color, _ in seen)
        color = colors.most_common(1)[0][0] if colors else None
        direction = motion_direction([(f, *blob.center) for f, _, blob in seen], size, frames) or "unclear"
        found.append({"frames_seen": len(seen), "color": color, "direction": direction})
        why = f"its shape is seen in {len(seen)} of {frames} frames" + ("" if drawn else " (needs half)")
        checks.append(Check(f"{label} drawn", "drawn", drawn, True, why))
        gate = None if drawn else label
        checks.append(_attribute(f"{label} color", "color", w["color"], color, gate))
        checks.append(_attribute(f"{label} direction", "direction", w["direction"], direction, gate))
    return checks, found


# --------------------------------------------------------------------------------------------------------------
# turntable
# --------------------------------------------------------------------------------------------------------------


def _majority(views: list[dict[str, Any] | None], key: str, wanted: str) -> tuple[bool, str]:
    """(more than half of the views show `wanted` for `key`, the most common reading)."""
    values = Counter(v[key] if v else "nothing" for v in views)
    return 2 * values[wanted] > len(views), f"{values.most_common(1)[0][0]} ({values[wanted]} of {len(views)} views)"


def check_turntable(views_FHW3: np.ndarray, caption: str) -> tuple[list[Check], list[dict[str, Any]]]:
    """Checks of a "turntable" view set: the kind (drawn), main and top colour, and view consistency.

    Returns:
        (checks, found): found is the per-view reading (kind, color, top_color; None where no object is found).
    """
    wanted = parse_caption("turntable", caption)
    label = f"the {wanted['kind']}"
    views = [describe_view(view) for view in views_FHW3]
    drawn, reading = _majority(views, "kind", wanted["kind"])
    checks = [Check(f"{label} drawn", "drawn", drawn, True, f"wanted {wanted['kind']} in most views, found {reading}")]
    for key in ("color", "top_color"):
        if not drawn:
            checks.append(_attribute(f"{label} {key}", key, wanted[key], None, label))
            continue
        ok, reading = _majority(views, key, wanted[key])
        checks.append(Check(f"{label} {key}", key, ok, True, f"wanted {wanted[key]} in most views, found {reading}"))
    if drawn:
        ok = views_consistent(views, views_FHW3.shape[1])
        why = "every view agrees and neighbouring views match" if ok else _inconsistency(views)
        checks.append(Check(f"{label} view consistency", "consistency", ok, True, why))
    else:
        checks.append(
            Check(f"{label} view consistency", "consistency", False, False, f"not scored: {label} was not drawn")
        )
    found = [{k: v[k] for k in ("kind", "color", "top_color")} if v else None for v in views]
    return checks, found


def _inconsistency(views: list[dict[str, Any] | None]) -> str:
    if any(v is None for v in views):
        return f"no object in {sum(v is None for v in views)} of {len(views)} views"
    readings = {(v["kind"], v["color"], v["top_color"]) for v in views}
    if len(readings) > 1:
        return f"views disagree: {len(readings)} different (kind, color, top color) readings"
    return "neighbouring views differ too much in silhouette area or position"


CHECKERS: dict[str, Callable[[np.ndarray, str], tuple[list[Check], list[dict[str, Any]]]]] = {
    "shapes": check_shapes,
    "moving-shapes": check_moving_shapes,
    "turntable": check_turntable,
}

__all__ = ["CHECKERS", "TAGS", "Check", "check_moving_shapes", "check_shapes", "check_turntable"]
