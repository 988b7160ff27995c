"""Score records: every score is written as JSON with the protocol that produced it (docs/evaluation.md#records).

A record holds the metric and its values, the named protocol preset (if any), the feature network (name, hash
of its weights, preprocessing / resize method, dtype), both sample sets (path, count, statistics hash), the
generation settings of the generated set (read from the `generation.json` that `ptdit eval generate` writes
beside its samples; null when absent), the ptdit version and the time. Records are written atomically.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from ptdit.io import atomic_file, read_json

GENERATION_FILE = "generation.json"
# Generation settings every record carries (null when unknown); other keys of generation.json are kept too.
GENERATION_KEYS = ("checkpoint", "sampler", "steps", "cfg_scale", "seed", "num_samples", "num_ranks", "dtype")


def read_generation(samples_path: str | Path) -> dict[str, Any]:
    """The generation settings of a sample folder (its `generation.json`) or `.npz` (the one beside it).

    Returns:
        Every `GENERATION_KEYS` entry (None when unknown) plus the file's other keys; all None without a file.
    """
    path = Path(samples_path)
    meta_path = (path if path.is_dir() else path.parent) / GENERATION_FILE
    meta = read_json(meta_path, "generation metadata") if meta_path.is_file() else {}
    if not isinstance(meta, dict):
        raise ValueError(f"generation metadata {meta_path} must be a JSON object")
    return {**{key: None for key in GENERATION_KEYS}, **meta}


def score_record(
    *,
    metric: str,
    scores: dict[str, Any],
    features: dict[str, Any] | None,
    fake: dict[str, Any],
    real: dict[str, Any] | None = None,
    protocol: Any = None,
    generation: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One score with everything needed to reproduce or compare it.

    Args:
        metric: e.g. "fid", "kid", "fvd", "clipscore", "clipsim".
        scores: metric values, e.g. {"fid": 12.3, "kid": 0.004, "kid_std": 0.001}.
        features: the feature protocol (network, layer, weights_hash, preprocess, dtype, ...) and details.
        fake: the generated set (path, count, stats_hash, ...).
        real: the reference set, or None for reference-free metrics.
        protocol: the `Protocol` preset, or None.
        generation: generation settings (`read_generation`), or None.
        extra: more metric-specific fields (e.g. truncated_prompts).
    """
    from ptdit import __version__

    return {
        "metric": metric,
        "scores": scores,
        "protocol": protocol.name if protocol is not None else None,
        "protocol_preset": protocol.to_dict() if protocol is not None else None,
        "features": features,
        "real": real,
        "fake": fake,
        "generation": generation if generation is not None else {key: None for key in GENERATION_KEYS},
        **(extra or {}),
        "ptdit_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def default_record_path(samples_path: str | Path, metric: str) -> Path:
    """`<samples>.<metric>.json` beside the sample folder or file (`out/samples/` -> `out/samples.fid.json`)."""
    path = Path(samples_path)
    stem = path.name if path.is_dir() else path.stem
    return path.parent / f"{stem}.{metric}.json"


def write_record(path: str | Path, record: dict[str, Any]) -> Path:
    """Writes a record as indented JSON, atomically."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return path


__all__ = [
    "GENERATION_FILE",
    "GENERATION_KEYS",
    "default_record_path",
    "read_generation",
    "score_record",
    "write_record",
]
