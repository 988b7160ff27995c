"""Feature statistics: accumulated in one pass, cached as `.npz`, and compared only under one protocol.

A statistics file (docs/evaluation.md#statistics-files) holds, as plain arrays (read with
`allow_pickle=False`):
* `mu` (D,) and `sigma` (D, D): float64 mean and covariance (unbiased, N - 1) of the features;
* `count`: the number of samples N;
* `features` (M, D) float32: a seeded random subset of at most `MAX_KID_FEATURES` raw features, for KID
  (M = 0 when not kept);
* `protocol`: JSON of the feature protocol, the fields two statistics must share to be compared: feature
  network, hash of its weights, feature size and layer, preprocessing, dtype, media and input size;
* `protocol_hash`: the first 16 hex digits of the sha256 of that JSON (sorted keys);
* `meta`: JSON of what is recorded but not compared (source path, center crop, ptdit version, date).

Shape legend: N samples, M kept samples, D feature size.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptdit.io import atomic_file

FORMAT_VERSION = 1
MAX_KID_FEATURES = 10_000  # raw features kept per set for KID (which uses subsets of 1000 by default)
PROTOCOL_FIELDS = ("network", "layer", "weights_hash", "feature_dim", "preprocess", "dtype", "media", "input_size")


def protocol_hash(protocol: dict[str, Any]) -> str:
    """First 16 hex digits of the sha256 of the protocol's canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(protocol, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of a set's features, with the protocol they were made under.

    Attributes:
        mu: (D,) float64 mean.
        sigma: (D, D) float64 covariance.
        count: number of samples.
        protocol: the compared fields (`PROTOCOL_FIELDS`).
        features: (M, D) float32 raw features kept for KID (M may be 0).
        meta: recorded, not compared.
    """

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    protocol: dict[str, Any]
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def protocol_hash(self) -> str:
        return protocol_hash(self.protocol)

    @property
    def stats_hash(self) -> str:
        """First 16 hex digits of the sha256 of (protocol hash, count, mu, sigma): names these statistics."""
        digest = hashlib.sha256(f"{self.protocol_hash}:{self.count}:".encode())
        digest.update(np.ascontiguousarray(self.mu, np.float64).tobytes())
        digest.update(np.ascontiguousarray(self.sigma, np.float64).tobytes())
        return digest.hexdigest()[:16]


def check_same_protocol(first: dict[str, Any], second: dict[str, Any], names: tuple[str, str]) -> None:
    """Refuses to compare statistics made under different protocols.

    Raises:
        ValueError: naming the first differing field and both values.
    """
    for key in sorted(set(first) | set(second), key=lambda k: (k not in PROTOCOL_FIELDS, k)):
        if first.get(key) != second.get(key):
            raise ValueError(
                f"{names[0]} and {names[1]} were made under different protocols: {key} differs "
                f"({first.get(key)!r} vs {second.get(key)!r}); recompute one with the same feature network and settings"
            )


class MomentAccumulator:
    """Running sum and sum of outer products in float64, shifted by the first batch's mean for accuracy."""

    def __init__(self) -> None:
        self.count = 0
        self.shift: np.ndarray | None = None
        self.total: np.ndarray | None = None
        self.outer: np.ndarray | None = None

    def add(self, features: np.ndarray) -> None:
        """Adds (B, D) features."""
        x_BD = np.asarray(features, np.float64)
        if self.shift is None:
            self.shift = x_BD.mean(axis=0)
            self.total = np.zeros_like(self.shift)
            self.outer = np.zeros((x_BD.shape[1], x_BD.shape[1]))
        x_BD = x_BD - self.shift
        self.total += x_BD.sum(axis=0)
        self.outer += x_BD.T @ x_BD
        self.count += len(x_BD)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean (D,), unbiased covariance (D, D)); needs at least 2 samples."""
        if self.count < 2:
            raise ValueError(f"statistics need at least 2 samples, got {self.count}")
        centred_mean = self.total / self.count
        sigma = (self.outer - self.count * np.outer(centred_mean, centred_mean)) / (self.count - 1)
        return self.shift + centred_mean, sigma


def save_stats(path: str | Path, stats: FeatureStats) -> Path:
    """Writes a statistics `.npz` atomically (a crash never leaves a truncated file)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"statistics files end in .npz, got {path.name}")
    with atomic_file(path) as tmp:
        np.savez(
            tmp,
            format_version=np.int64(FORMAT_VERSION),
            mu=np.asarray(stats.mu, np.float64),
            sigma=np.asarray(stats.sigma, np.float64),
            count=np.int64(stats.count),
            features=np.asarray(stats.features, np.float32),
            protocol=np.str_(json.dumps(stats.protocol, sort_keys=True)),
            protocol_hash=np.str_(stats.protocol_hash),
            meta=np.str_(json.dumps(stats.meta, sort_keys=True)),
        )
    return path


def load_stats(path: str | Path) -> FeatureStats:
    """Reads a statistics `.npz` written by `save_stats`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a ptdit statistics file, another format version, or a protocol that does not match its
            recorded hash (edited or damaged).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"statistics file {path} not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"cannot read statistics file {path} ({err}); recreate it with `ptdit eval stats`") from None
    if "protocol" not in arrays:
        raise ValueError(
            f"{path} has no protocol record (made by another tool, e.g. pytorch-fid?): recreate it with "
            "`ptdit eval stats` so that it can be checked against the samples' protocol"
        )
    if int(arrays.get("format_version", -1)) != FORMAT_VERSION:
        raise ValueError(f"{path} is statistics format {arrays.get('format_version')}, expected {FORMAT_VERSION}")
    stats = FeatureStats(
        mu=arrays["mu"],
        sigma=arrays["sigma"],
        count=int(arrays["count"]),
        protocol=json.loads(str(arrays["protocol"])),
        features=arrays["features"],
        meta=json.loads(str(arrays["meta"])),
    )
    if stats.protocol_hash != str(arrays["protocol_hash"]):
        raise ValueError(f"{path}: the protocol record does not match its hash (edited or damaged); recreate it")
    return stats


__all__ = [
    "MAX_KID_FEATURES",
    "PROTOCOL_FIELDS",
    "FeatureStats",
    "MomentAccumulator",
    "check_same_protocol",
    "load_stats",
    "protocol_hash",
    "save_stats",
]
