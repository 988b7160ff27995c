"""The metric harness behind `ptdit eval`: feature statistics, FID / KID / FVD between two sets, CLIPScore and
CLIPSIM, each returned as a score record (`ptdit.eval.records`) that carries its protocol.

Either side of a Frechet distance is a sample set (folder or `.npz`) or a cached statistics file; the feature
network is loaded only when some side needs features computed, and the protocols of the two sides are compared
before any feature is computed, so a mismatch fails at once (docs/evaluation.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptdit.eval.features import DEFAULT_FEATURES, FeatureExtractor, build_features, feature_network
from ptdit.eval.frechet import frechet_distance, kernel_distance
from ptdit.eval.protocols import Protocol
from ptdit.eval.records import read_generation, score_record
from ptdit.eval.samples import SampleSet, is_stats_file, open_samples, read_prompts
from ptdit.eval.stats import MAX_KID_FEATURES, FeatureStats, MomentAccumulator, check_same_protocol, load_stats

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
DEFAULT_NUM_FRAMES = 16  # frames per clip without a protocol: the FVD convention


@dataclass(frozen=True)
class EvalSettings:
    """How features are computed.

    Attributes:
        features: feature network spec (`ptdit.eval.features.build_features`), or None for the media's default
            (or the protocol's).
        device: where networks run.
        batch_size: items per forward pass.
        kid_features: raw features kept per set for KID (0: none).
        progress: show a progress bar on stderr.
    """

    features: str | None = None
    device: str = "cpu"
    batch_size: int = 50
    kid_features: int = MAX_KID_FEATURES
    progress: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.kid_features < 0:
            raise ValueError(
                f"batch_size must be >= 1 and kid_features >= 0, got {self.batch_size}, {self.kid_features}"
            )


def compute_stats(
    samples: SampleSet,
    extractor: FeatureExtractor,
    *,
    settings: EvalSettings,
    limit: int | None = None,
    seed: int = 0,
) -> FeatureStats:
    """Feature statistics of the first `limit` items of a set, in one streaming pass.

    The raw features of a seeded random subset of `settings.kid_features` items are kept for KID (a random
    subset, not the first items, because folders are often sorted by class).
    """
    from tqdm import tqdm

    if extractor.media != samples.media:
        raise ValueError(f"{samples.path} holds {samples.media}s but the feature network reads {extractor.media}s")
    count = samples.count if limit is None else min(limit, samples.count)
    keep = np.sort(np.random.default_rng(seed).choice(count, min(count, settings.kid_features), replace=False))
    moments, kept, start = MomentAccumulator(), [], 0
    with tqdm(
        total=count, desc=f"features {samples.path.name}", unit=samples.media, disable=not settings.progress
    ) as bar:
        for batch in samples.batches(settings.batch_size, limit=count):
            features = extractor(batch)  # (B, D)
            moments.add(features)
            chosen = keep[(keep >= start) & (keep < start + len(features))] - start
            kept.append(features[chosen].astype(np.float32))
            start += len(features)
            bar.update(len(features))
    mu, sigma = moments.result()
    if count <= len(mu):
        warnings.warn(
            f"{samples.path.name}: {count} samples for {len(mu)}-d features: the covariance is singular and the "
            "distance biased upward",
            stacklevel=2,
        )
    meta = {**samples.describe(), "count": count, **extractor.details, "kid_seed": seed}
    return FeatureStats(mu, sigma, count, extractor.protocol(samples.item_shape), np.concatenate(kept), meta)


@dataclass(frozen=True)
class Side:
    """One side of a Frechet distance: a cached statistics file or a sample set."""

    path: Path
    stats: FeatureStats | None = None
    samples: SampleSet | None = None

    @property
    def count(self) -> int:
        return self.stats.count if self.stats is not None else self.samples.count

    @property
    def item_shape(self) -> tuple[int, ...]:
        if self.stats is not None:
            return tuple(self.stats.protocol.get("input_size", ()))
        return self.samples.item_shape


def open_side(path: str | Path, *, media: str, num_frames: int | None = None, center_crop: int | None = None) -> Side:
    """A statistics file (recognised by its protocol record) or a sample set (`open_samples`)."""
    path = Path(path).expanduser()
    if is_stats_file(path):
        stats = load_stats(path)
        if stats.protocol.get("media") != media:
            raise ValueError(f"{path} holds statistics of {stats.protocol.get('media')}s, not {media}s")
        return Side(path, stats=stats)
    return Side(path, samples=open_samples(path, media=media, num_frames=num_frames, center_crop=center_crop))


def feature_spec(settings: EvalSettings, protocol: Protocol | None, media: str) -> str:
    """The feature network to use: the user's, else the protocol's, else the media's default."""
    default = protocol.features if protocol is not None else DEFAULT_FEATURES[media]
    spec = settings.features or default
    if protocol is not None and spec.partition(":")[0] != default.partition(":")[0]:
        raise ValueError(f"protocol {protocol.name} uses {default} features, not {spec}")
    feature_network(spec, media=media)  # a known name that reads this media
    return spec


def preparation(
    protocol: Protocol | None, media: str, center_crop: int | None, num_frames: int | None
) -> tuple[int | None, int | None]:
    """(center crop of reference items, frames per clip): the caller's, else the protocol's, else none / 16."""
    if protocol is not None:
        num_frames = num_frames or protocol.num_frames
        if center_crop is None and protocol.reference_center_crop:
            center_crop = protocol.image_size
    return center_crop, num_frames or (DEFAULT_NUM_FRAMES if media == "video" else None)


def _check_protocol(protocol: Protocol | None, spec: str, real: Side, fake: Side) -> None:
    if protocol is None:
        return
    network = feature_network(spec).network
    for side in (real, fake):
        made_with = side.stats.protocol.get("network") if side.stats is not None else network
        if network is not None and made_with != network:
            raise ValueError(
                f"protocol {protocol.name} uses {network} features; {side.path} holds {made_with} statistics"
            )
    protocol.check_count(fake.count, what=f"generated {fake.path.name} samples")
    protocol.check_size(fake.item_shape, what="samples")
    if protocol.num_reference is not None:
        protocol.check_count(real.count, what=f"reference samples in {real.path.name}", needed=protocol.num_reference)


def side_stats(
    side: Side, extractor: FeatureExtractor | None, settings: EvalSettings, limit: int | None
) -> FeatureStats:
    """The side's statistics: loaded, or computed with `extractor`."""
    if side.stats is not None:
        return side.stats
    return compute_stats(side.samples, extractor, settings=settings, limit=limit)


# long function: the steps of one comparison (open, check, load the network once, compute, score), in order.
def frechet_between(
    real_path: str | Path,
    fake_path: str | Path,
    *,
    metric: str = "fid",
    media: str = "image",
    settings: EvalSettings = EvalSettings(),
    protocol: Protocol | None = None,
    center_crop: int | None = None,
    num_frames: int | None = None,
    kid: tuple[int, int] = (KID_SUBSETS, KID_SUBSET_SIZE),
) -> dict[str, Any]:
    """FID (images) or FVD (videos) between a reference and a generated set, plus KID when both sides kept raw
    features; returns the score record.

    Args:
        real_path: reference folder, `.npz` or statistics file.
        fake_path: generated folder, `.npz` or statistics file.
        metric: record name ("fid", "kid" or "fvd"); the scores hold "fid" (images) or "fvd" (videos), plus
            "kid" when possible.
        media: "image" or "video".
        settings: feature computation.
        protocol: a preset whose counts and sizes are enforced, or None.
        center_crop: ADM center crop of the reference items (default: the protocol's image size when it
            prepares references so).
        num_frames: frames per video clip (default: the protocol's, else 16).
        kid: (number of subsets, subset size) of KID.
    """
    spec = feature_spec(settings, protocol, media)
    center_crop, num_frames = preparation(protocol, media, center_crop, num_frames)
    real = open_side(real_path, media=media, num_frames=num_frames, center_crop=center_crop)
    fake = open_side(fake_path, media=media, num_frames=num_frames)
    _check_protocol(protocol, spec, real, fake)

    extractor = None
    if real.stats is None or fake.stats is None:
        extractor = build_features(spec, device=settings.device)
    # Compare protocols before computing anything (a sample side's protocol is known from its scan).
    expected = [s.stats.protocol if s.stats is not None else extractor.protocol(s.item_shape) for s in (real, fake)]
    check_same_protocol(expected[0], expected[1], (str(real.path), str(fake.path)))

    limits = (protocol.num_reference, protocol.num_samples) if protocol is not None else (None, None)
    real_stats = side_stats(real, extractor, settings, limits[0])
    fake_stats = side_stats(fake, extractor, settings, limits[1])
    distance = "fvd" if media == "video" else "fid"
    scores: dict[str, Any] = {
        distance: frechet_distance(real_stats.mu, real_stats.sigma, fake_stats.mu, fake_stats.sigma)
    }
    if len(real_stats.features) >= 2 and len(fake_stats.features) >= 2:
        subset = min(kid[1], len(real_stats.features), len(fake_stats.features))
        kid_mean, kid_std = kernel_distance(
            real_stats.features, fake_stats.features, num_subsets=kid[0], subset_size=subset
        )
        scores.update(kid=kid_mean, kid_std=kid_std, kid_subsets=kid[0], kid_subset_size=subset)
    features = {**real_stats.protocol, "protocol_hash": real_stats.protocol_hash}
    if extractor is not None:
        features.update(extractor.details)
    return score_record(
        metric=metric,
        scores=scores,
        features=features,
        real=_describe(real, real_stats),
        fake=_describe(fake, fake_stats),
        protocol=protocol,
        generation=read_generation(fake.path),
    )


def _describe(side: Side, stats: FeatureStats) -> dict[str, Any]:
    source = "stats" if side.stats is not None else side.samples.source
    info = side.samples.describe() if side.samples is not None else {"path": str(side.path), "source": source}
    return {**info, "count": stats.count, "stats_hash": stats.stats_hash, "kid_features": len(stats.features)}


def make_stats(
    path: str | Path,
    *,
    media: str = "image",
    settings: EvalSettings = EvalSettings(),
    protocol: Protocol | None = None,
    center_crop: int | None = None,
    num_frames: int | None = None,
) -> FeatureStats:
    """Statistics of a reference (or generated) set, to be cached with `ptdit.eval.stats.save_stats`."""
    if protocol is not None and protocol.metric not in ("fid", "fvd"):
        raise ValueError(f"protocol {protocol.name} ({protocol.metric}) uses no feature statistics")
    if protocol is not None and media != ("video" if protocol.metric == "fvd" else "image"):
        raise ValueError(f"protocol {protocol.name} ({protocol.metric}) does not score {media}s")
    center_crop, num_frames = preparation(protocol, media, center_crop, num_frames)
    samples = open_samples(path, media=media, num_frames=num_frames, center_crop=center_crop)
    limit = protocol.num_reference if protocol is not None else None
    if limit is not None:
        protocol.check_count(samples.count, what=f"reference samples in {samples.path.name}", needed=limit)
    extractor = build_features(feature_spec(settings, protocol, media), device=settings.device)
    stats = compute_stats(samples, extractor, settings=settings, limit=limit)
    meta = {**stats.meta, "preset": protocol.name if protocol is not None else None}
    return FeatureStats(stats.mu, stats.sigma, stats.count, stats.protocol, stats.features, meta)


# long function: the steps of one CLIP evaluation (open, check, prompts, score in batches, record), in order.
def clip_similarity(
    path: str | Path,
    *,
    clip: str | None = None,
    prompts_file: str | Path | None = None,
    media: str = "image",
    settings: EvalSettings = EvalSettings(),
    protocol: Protocol | None = None,
    long_prompts: str = "truncate",
    num_frames: int | None = None,
) -> dict[str, Any]:
    """CLIPScore of images or CLIPSIM of videos (`ptdit.eval.clip_score`) against their prompts; returns the
    score record.

    Args:
        path: generated folder or `.npz`.
        clip: CLIP model folder or hub id in the local cache (default: the protocol's).
        prompts_file: one prompt per line, in item order; None = the items' sidecar files.
        media: "image" (CLIPScore) or "video" (CLIPSIM, mean over frames).
        settings: device, batch size, progress (`features` is unused).
        protocol: a CLIPSIM preset whose counts and sizes are enforced, or None.
        long_prompts: "truncate" or "error".
        num_frames: frames per video scored (default: the protocol's, else 16).
    """
    from tqdm import tqdm

    from ptdit.eval.clip_score import load_clip, warn_truncated

    _, num_frames = preparation(protocol, media, None, num_frames)
    samples = open_samples(path, media=media, num_frames=num_frames)
    if protocol is not None:
        protocol.check_count(samples.count, what=f"generated {samples.path.name} {media}s")
        protocol.check_size(samples.item_shape, what=f"{media}s")
    count = protocol.num_samples if protocol is not None else samples.count
    prompts = read_prompts(samples, prompts_file)[:count]
    clip = clip or (protocol.features if protocol is not None else None)
    if clip is None:
        raise ValueError("CLIPScore needs a CLIP model: pass --clip NAME_OR_DIR (a local folder or a cached hub id)")
    scorer = load_clip(clip, device=settings.device, long_prompts=long_prompts)
    truncated = scorer.count_long(prompts)
    warn_truncated(truncated, len(prompts), scorer.max_tokens)
    per_item, start = [], 0
    with tqdm(total=count, desc="CLIP", unit=media, disable=not settings.progress) as bar:
        for batch in samples.batches(settings.batch_size, limit=count):
            chunk = prompts[start : start + len(batch)]
            cos = scorer.cosine(batch, chunk) if media == "image" else scorer.frame_cosine(batch, chunk)
            per_item.append(np.maximum(cos, 0).reshape(len(batch), -1).mean(axis=1))  # video: mean over frames
            start += len(batch)
            bar.update(len(batch))
    similarity = float(np.concatenate(per_item).mean())
    scores = (
        {"clipscore": 100 * similarity} if media == "image" else {"clipsim": similarity, "clipscore": 100 * similarity}
    )
    return score_record(
        metric="clipscore" if media == "image" else "clipsim",
        scores=scores,
        features={**scorer.info, "media": media, "input_size": list(samples.item_shape)},
        fake={**samples.describe(), "count": count},
        protocol=protocol,
        generation=read_generation(samples.path),
        extra={
            "prompts": {
                "count": count,
                "truncated": truncated,
                "max_tokens": scorer.max_tokens,
                "long_prompts": long_prompts,
            }
        },
    )


__all__ = [
    "EvalSettings",
    "FeatureStats",
    "clip_similarity",
    "compute_stats",
    "frechet_between",
    "make_stats",
    "open_side",
]
