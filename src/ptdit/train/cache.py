"""`ptdit cache`: encode a training config's dataset once into a feature cache (docs/data.md#feature-caches).

The config's dataset, text encoder and VAE are built exactly as training builds them; each shard of
`shard_size` consecutive samples is encoded and written atomically. With `data.buckets=pixart` each sample is
encoded at its bucket's shape (the raw bucketed path's own resize / crop: the dataset's `(index, shape)` items) and
a shard holds one bucket (docs/data.md#caches-of-bucketed-data). A rerun of the same command skips the shards
that exist (resume after an interruption); under torchrun, rank r writes the shards i with i % world_size == r.
Rank 0 writes the manifest (first incomplete, then with every shard's sha256 and the content hash).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ptdit.data.cache import DTYPES, FORMAT, MANIFEST, NULL_NAME, VERSION, shard_name, write_shard, write_tensors
from ptdit.io import read_json, remove_stale_temporaries, write_json
from ptdit.train.config import TrainConfig
from ptdit.train.distributed import DistInfo, setup_distributed, teardown_distributed
from ptdit.train.setup import build_dataset, build_text_encoder

# Manifest fields that are not part of what is encoded (filled in when the cache is complete).
_PROGRESS = ("complete", "shards", "content_hash")


@dataclass(frozen=True)
class CacheOptions:
    """How to store the features: dtype of embeddings and latents, samples per shard, samples per encoder
    batch, whether to also encode the flipped pixels, and how many samples (None: the whole dataset)."""

    dtype: str = "bf16"
    shard_size: int = 256
    batch_size: int = 32
    flip: bool = False
    num: int | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"--dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.shard_size < 1 or self.batch_size < 1 or (self.num is not None and self.num < 1):
            raise ValueError("--shard-size, --batch-size and --num must be positive")


@dataclass
class _Encoders:
    vae: Any
    text: Any | None
    conditioning: str


def _null(enc: _Encoders) -> dict[str, torch.Tensor] | None:
    """The null condition (empty prompt, as training computes it), float32, for caption dropout."""
    if enc.text is None:
        return None
    emb_BSE, mask_BS = enc.text.encode([""], negative=True)
    return {"context": emb_BSE.float().cpu(), "context_mask": mask_BS.cpu()}


@dataclass(frozen=True)
class _Plan:
    """The shards: each one's source sample indices and bucket (None without buckets), and the bucket table."""

    shards: list[tuple[list[int], int | None]]
    buckets: dict[str, Any] | None


def _plan(cfg: TrainConfig, dataset: Any, enc: _Encoders, options: CacheOptions, device: torch.device) -> _Plan:
    """Consecutive samples per shard; with buckets, each bucket's samples (ascending index) cut into shards."""
    num = len(dataset) if options.num is None else min(options.num, len(dataset))
    size = options.shard_size
    if cfg.data.buckets == "none":
        return _Plan([(list(range(i, min(num, i + size))), None) for i in range(0, num, size)], None)
    if not hasattr(dataset, "media_shape"):
        raise ValueError(f"data.buckets=pixart needs stored data (webdataset, parquet, folders), not "
                         f"{cfg.data.dataset!r}; set data.buckets=none")  # fmt: skip
    from ptdit.train.buckets import bucket_assignment

    shapes, assignment = bucket_assignment(cfg, dataset, enc.vae)
    assignment = assignment[:num]
    shards: list[tuple[list[int], int | None]] = []
    for bucket in range(len(shapes)):
        members = [int(i) for i in np.flatnonzero(assignment == bucket)]
        shards += [(members[k : k + size], bucket) for k in range(0, len(members), size)]
    latents = []
    for height, width, frames in shapes:  # the latent shape of each bucket, from the VAE itself
        zeros = torch.zeros(1, 3, frames, height, width, device=device)
        latents.append(list(enc.vae.encode_distribution(zeros)[0].shape[1:]))
    table = {"shapes": [list(s) for s in shapes], "latent_shapes": latents, "assignment": assignment.tolist()}
    return _Plan(shards, table)


def _spec(cfg: TrainConfig, enc: _Encoders, options: CacheOptions, dataset: Any, plan: _Plan,
          device: torch.device) -> dict:  # fmt: skip
    """What the cache encodes: everything a training config must match, and how it is stored."""
    from ptdit.encoders.fingerprint import encoder_fingerprint

    pixels = dataset[0]["pixels"]
    frames, height, width = (int(n) for n in pixels.shape[1:])
    latent_shape = list(enc.vae.encode_distribution(pixels[None].to(device))[0].shape[1:])
    num = sum(len(indices) for indices, _ in plan.shards)
    text, null = None, _null(enc)
    if enc.text is not None and null is not None:
        text = {"name": cfg.pipeline.text_encoder, "max_length": cfg.pipeline.text_max_length, "dim": enc.text.dim,
                "fingerprint": encoder_fingerprint(enc.text),
                "mask_dtype": str(null["context_mask"].dtype).removeprefix("torch.")}  # fmt: skip
    vae = {"name": cfg.pipeline.vae, "fingerprint": encoder_fingerprint(enc.vae),
           "flip_equivariant": enc.vae.spatial_factor == 1 and enc.vae.latent_channels == 3}  # fmt: skip
    return {
        "format": FORMAT, "version": VERSION, "conditioning": enc.conditioning,
        "dataset": {"name": cfg.data.dataset, "size": cfg.data.size, "seed": cfg.data.seed,
                    "options": dict(cfg.data.options)},
        "frames": frames, "pixel_shape": [3, frames, height, width],
        "latent_shape": latent_shape, "buckets": plan.buckets,
        "preprocessing": {"pixels": "dataset resize / center-crop to data.size (or the sample's bucket), scaled to "
                                    "[-1, 1]", "flip": options.flip},
        "text_encoder": text, "vae": vae, "flip": options.flip, "dtype": options.dtype,
        "num_samples": num, "shard_size": options.shard_size,
    }  # fmt: skip


def _encode_batch(enc: _Encoders, items: list[dict[str, Any]], options: CacheOptions, device: torch.device):
    """Tensors of one encoder batch: latents (and flipped latents), valid text tokens with lengths, labels."""
    dtype = DTYPES[options.dtype]
    pixels = torch.stack([it["pixels"] for it in items]).to(device)
    out: dict[str, list[torch.Tensor]] = {}
    variants = [("", pixels)] + ([("_flip", pixels.flip(-1))] if options.flip else [])
    for suffix, x in variants:
        mean, std = enc.vae.encode_distribution(x)
        out.setdefault(f"latent_mean{suffix}", []).append(mean.to(dtype).cpu())
        if std is not None:
            out.setdefault(f"latent_std{suffix}", []).append(std.to(dtype).cpu())
    if enc.text is not None:
        emb_BSE, mask_BS = enc.text.encode([it.get("caption", "") for it in items])
        lengths = mask_BS.sum(1).cpu()
        prefix = torch.arange(mask_BS.shape[1])[None] < lengths[:, None]
        if not torch.equal(mask_BS.cpu().bool(), prefix):
            raise ValueError("the text encoder's mask is not a prefix of valid tokens; it cannot be cached")
        out["text"] = [emb_BSE[b, : int(n)].to(dtype).cpu() for b, n in enumerate(lengths)]
        out["text_length"] = [lengths.long()]
    if "label" in items[0]:
        out["label"] = [torch.tensor([int(it["label"]) for it in items])]
    out["index"] = [torch.tensor([int(it.get("index", -1)) for it in items])]
    out["skipped"] = [torch.tensor([int(it.get("skipped", 0)) for it in items])]
    return out


def _write_one(path: Path, dataset: Any, indices: list[int], shape: Any, enc: _Encoders, options: CacheOptions,
               device: torch.device, bar: Any) -> None:  # fmt: skip
    """One shard: `indices` of the dataset, at the bucket `shape` (height, width, frames) when given."""
    parts: dict[str, list[torch.Tensor]] = {}
    captions: list[str] = []
    for start in range(0, len(indices), options.batch_size):
        chunk = indices[start : start + options.batch_size]
        items = [dataset[i if shape is None else (i, shape)] for i in chunk]
        for key, values in _encode_batch(enc, items, options, device).items():
            parts.setdefault(key, []).extend(values)
        captions += [it.get("caption", "") for it in items]
        bar.update(len(items))
    write_shard(path, {key: torch.cat(values) for key, values in parts.items()}, captions)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _start(out: Path, spec: dict[str, Any], null: dict[str, torch.Tensor] | None) -> None:
    """Rank 0: refuses a folder holding another cache or other files; writes the incomplete manifest and the null
    condition of a new cache."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file; choose a folder for the cache")
    if (out / MANIFEST).is_file():
        saved = read_json(out / MANIFEST, what="feature cache manifest")
        differ = sorted(k for k in set(saved) | set(spec) if k not in _PROGRESS and saved.get(k) != spec.get(k))
        if differ:
            raise ValueError(
                f"--out {out} holds a feature cache of other settings ({', '.join(differ)} differ); choose a new "
                "--out, or rerun with the cache's own config and options to resume it"
            )
    elif out.is_dir() and any(p.name != NULL_NAME and not p.name.startswith(".") for p in out.iterdir()):
        raise FileExistsError(f"--out {out} is not empty and holds no feature cache; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    if null is not None:
        write_tensors(out / NULL_NAME, null)
    write_json(out / MANIFEST, {**spec, "complete": False})


def _finish(out: Path, spec: dict[str, Any], plan: _Plan) -> dict[str, Any]:
    """Rank 0: every shard's sha256, and the content hash over the spec, the null condition and the shards."""
    shards = []
    for i, (indices, bucket) in enumerate(plan.shards):
        shards.append({"name": shard_name(i), "count": len(indices), "sha256": _sha256(out / shard_name(i))})
        if bucket is not None:
            shards[-1]["bucket"] = bucket
    digest = hashlib.sha256(repr(sorted(spec.items())).encode())
    if (out / NULL_NAME).is_file():
        digest.update(_sha256(out / NULL_NAME).encode())
    for shard in shards:
        digest.update(shard["sha256"].encode())
    manifest = {**spec, "shards": shards, "content_hash": digest.hexdigest(), "complete": True}
    write_json(out / MANIFEST, manifest)
    return manifest


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def _load_encoders(cfg: TrainConfig, info: DistInfo, scratch: Path) -> _Encoders:
    from ptdit.encoders import load_vae

    model_config = cfg.model_config()
    vae = load_vae(cfg.pipeline.vae, device=info.device)
    text, _, _ = build_text_encoder(cfg, model_config, scratch, is_main=False)
    return _Encoders(vae=vae, text=text, conditioning=model_config.conditioning)


def _encode_shards(out: Path, dataset: Any, enc: _Encoders, plan: _Plan, options: CacheOptions, info: DistInfo,
                   show: bool) -> None:  # fmt: skip
    """This rank's shards (i % world_size == rank), skipping those already written, with a progress bar."""
    from tqdm import tqdm

    counts = [len(indices) for indices, _ in plan.shards]
    mine = [i for i in range(len(counts)) if i % info.world_size == info.rank]
    todo = [i for i in mine if not (out / shard_name(i)).is_file()]
    done = sum(counts[i] for i in mine if i not in todo)
    shapes = plan.buckets["shapes"] if plan.buckets else None
    with tqdm(total=sum(counts[i] for i in mine), initial=done, unit="sample", desc="ptdit cache",
              disable=not (show and info.is_main)) as bar:  # fmt: skip
        for i in todo:
            indices, bucket = plan.shards[i]
            shape = None if bucket is None or shapes is None else tuple(shapes[bucket])
            _write_one(out / shard_name(i), dataset, indices, shape, enc, options, info.device, bar)


def write_cache(cfg: TrainConfig, out: str | Path, options: CacheOptions, *, show_progress: bool = True) -> dict:
    """Encodes `cfg`'s dataset into a feature cache under `out` (resuming one left by an interrupted run);
    returns the manifest. Launch with torchrun to encode on several processes."""
    if cfg.data.dataset == "cache":
        raise ValueError("the config already trains from a feature cache; give the config of the raw dataset")
    out = Path(out)
    info = setup_distributed(cfg.train.device)
    try:
        dataset = build_dataset(cfg)
        with tempfile.TemporaryDirectory(prefix="ptdit-cache-") as scratch:
            enc = _load_encoders(cfg, info, Path(scratch))
            plan = _plan(cfg, dataset, enc, options, info.device)
            spec = _spec(cfg, enc, options, dataset, plan, info.device)
            if info.is_main:
                _start(out, spec, _null(enc))
            _barrier(info)
            _encode_shards(out, dataset, enc, plan, options, info, show_progress)
        _barrier(info)
        manifest = _finish(out, spec, plan) if info.is_main else {}
        _barrier(info)
        return manifest if info.is_main else read_json(out / MANIFEST)
    finally:
        teardown_distributed()


__all__ = ["CacheOptions", "write_cache"]
