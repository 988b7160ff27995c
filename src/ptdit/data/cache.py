"""Feature caches on disk: a dataset's text embeddings and VAE latent distributions, encoded once by `ptdit cache`
and read by training instead of the raw data (docs/data.md#feature-caches).

A cache folder holds:

- `manifest.json`: what was encoded (dataset and options, encoders with fingerprints, size, frames, dtype, ...),
  the shard list with each shard's sample count and sha256, and a content hash over all of them. `complete` is
  false until every shard is written; a reader refuses an incomplete cache.
- `null.safetensors`: the text encoder's null (empty-prompt) embedding and mask in float32, for caption dropout.
- `shard-NNNNNN.safetensors`: `shard_size` consecutive samples each (the last may hold fewer). Tensors:
  `latent_mean` (K, C, F', Y, X), `latent_std` (absent for deterministic autoencoders), `latent_mean_flip` /
  `latent_std_flip` (caches written with --flip), `text` (sum of lengths, E): only the valid tokens of every
  caption, concatenated, with `text_length` (K,), `label` (K,) for class datasets, and `index` (K,), the source
  dataset's sample indices, and `skipped` (K,), the bad samples the source skipped for each (docs/data.md#bad-data).
  The captions are in the shard's metadata (JSON list).

A cache of bucketed data (`data.buckets=pixart`) encodes each sample at its bucket's shape; its manifest's
`buckets` records the bucket shapes (pixels and latents) and each sample's bucket (`assignment`, by source index),
and each shard holds one bucket (`shards[k].bucket`): the buckets in order, each bucket's samples in ascending
source index. Sample i of the cache is source sample i either way (docs/data.md#caches-of-bucketed-data).

safetensors shards (not a tar of per-sample files): no pickle, a header read gives every tensor's offset, one
file write per K samples is the unit of atomic writes and of resuming, and safetensors is already a dependency.
"""

from __future__ import annotations

import bisect
import json
import operator
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from ptdit.io import atomic_file, read_json

FORMAT = "ptdit-feature-cache"
VERSION = 1
MANIFEST = "manifest.json"
NULL_NAME = "null.safetensors"
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def shard_name(index: int) -> str:
    return f"shard-{index:06d}.safetensors"


def write_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Writes a safetensors file atomically (a killed write leaves nothing), readable like the folder it is in
    (safetensors itself creates private files)."""
    from safetensors.torch import save_file

    with atomic_file(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.chmod(tmp, path.parent.stat().st_mode & 0o666)


def write_shard(path: Path, tensors: dict[str, torch.Tensor], captions: list[str]) -> None:
    """Writes one shard atomically: a killed write leaves no shard (and a resumed `ptdit cache` redoes it)."""
    write_tensors(path, tensors, {"captions": json.dumps(captions)})


def read_manifest(root: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a complete cache; raises naming what is wrong and how to fix it."""
    root = Path(root)
    if not (root / MANIFEST).is_file():
        raise FileNotFoundError(f"data.path={root} holds no feature cache ({MANIFEST}); write one with ptdit cache")
    manifest = read_json(root / MANIFEST, what="feature cache manifest")
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise ValueError(f"data.path={root} is not a ptdit feature cache of version {VERSION}; re-run ptdit cache")
    if not manifest.get("complete"):
        raise ValueError(f"the feature cache {root} is incomplete (interrupted); re-run the same ptdit cache command")
    return manifest


class _OpenShard:
    """One open shard: its small per-sample tensors and captions in memory, latents and text read per sample."""

    SMALL = ("index", "skipped", "label", "text_length")
    LATENTS = ("latent_mean", "latent_std", "latent_mean_flip", "latent_std_flip")

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        self.handle = safe_open(str(path), framework="pt")
        self.keys = set(self.handle.keys())
        self.captions = json.loads(self.handle.metadata()["captions"])
        self.small = {k: self.handle.get_tensor(k) for k in self.SMALL if k in self.keys}
        self.starts = torch.zeros(len(self.captions) + 1, dtype=torch.long)
        if "text_length" in self.small:
            self.starts[1:] = self.small["text_length"].cumsum(0)

    def item(self, row: int) -> dict[str, Any]:
        item: dict[str, Any] = {"caption": self.captions[row], "index": int(self.small["index"][row])}
        if "skipped" in self.small:
            item["skipped"] = int(self.small["skipped"][row])
        if "label" in self.small:
            item["label"] = int(self.small["label"][row])
        for key in self.LATENTS:
            if key in self.keys:
                item[key] = self.handle.get_slice(key)[row : row + 1][0].float()
        if "text" in self.keys:
            item["text"] = self.handle.get_slice("text")[int(self.starts[row]) : int(self.starts[row + 1])].float()
        return item


class FeatureCache(torch.utils.data.Dataset):
    """The samples of a feature cache: dicts with `latent_mean` (C, F', Y, X) float32 (and `latent_std`, flipped
    variants when present), `text` (L, E) float32 valid tokens, `caption`, `label` and `index`.

    `collate` pads the text to the cache's max length and turns the lengths into the mask.
    """

    def __init__(self, root: str | os.PathLike[str], *, keep_shards: int = 256) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        counts = [int(s["count"]) for s in self.manifest["shards"]]
        self.offsets = [sum(counts[:i]) for i in range(len(counts) + 1)]
        self.keep_shards = keep_shards
        buckets = self.manifest.get("buckets")
        # Bucketed: rows are grouped by bucket; row_of[i] is the row of source sample i (a stable sort by bucket).
        self.row_of = None
        if buckets is not None:
            order = torch.argsort(torch.tensor(buckets["assignment"], dtype=torch.long), stable=True)
            self.row_of = torch.empty_like(order)
            self.row_of[order] = torch.arange(len(order))
        self._open: OrderedDict[int, _OpenShard] = OrderedDict()

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getstate__(self) -> dict[str, Any]:  # open shards stay in their process (DataLoader workers reopen)
        return {**self.__dict__, "_open": OrderedDict()}

    def _shard(self, number: int) -> _OpenShard:
        """Shard `number`, open (memory-mapped): a sample reads only its own rows, so shuffled reads do not load
        whole shards; the last `keep_shards` stay open."""
        if number not in self._open:
            self._open[number] = _OpenShard(self.root / self.manifest["shards"][number]["name"])
            while len(self._open) > self.keep_shards:
                self._open.popitem(last=False)
        self._open.move_to_end(number)
        return self._open[number]

    def buckets(self) -> tuple[list[tuple[int, int, int]], list[int]] | None:
        """(bucket shapes (height, width, frames), bucket of each sample) of a bucketed cache, else None."""
        buckets = self.manifest.get("buckets")
        if buckets is None:
            return None
        return [tuple(int(v) for v in shape) for shape in buckets["shapes"]], list(buckets["assignment"])

    def __getitem__(self, index: Any) -> dict[str, Any]:
        if isinstance(index, (tuple, list)):  # (index, bucket shape) from a bucket sampler: the row has that shape
            index = index[0]
        index = operator.index(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a feature cache of {len(self)} samples")
        position = index if self.row_of is None else int(self.row_of[index])
        number = bisect.bisect_right(self.offsets, position) - 1
        return self._shard(number).item(position - self.offsets[number])

    def null_condition(self) -> dict[str, torch.Tensor]:
        """The null (empty-prompt) text condition stored with the cache: `context` (1, S, E), `context_mask`."""
        from ptdit.io import load_safetensors

        return load_safetensors(self.root / NULL_NAME)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Stacks latents; pads text to the cache's max length with zeros and builds the mask from the lengths
        (in the dtype of the encoder's own mask, so cached and encoded conditions are the same tensors)."""
        batch: dict[str, Any] = {"caption": [it["caption"] for it in items]}
        for key in ("latent_mean", "latent_std", "latent_mean_flip", "latent_std_flip"):
            if key in items[0]:
                batch[key] = torch.stack([it[key] for it in items])
        if "text" in items[0]:
            text = self.manifest["text_encoder"]
            length, dim = int(text["max_length"]), int(text["dim"])
            context = torch.zeros(len(items), length, dim)
            lengths = torch.tensor([it["text"].shape[0] for it in items])
            for row, it in enumerate(items):
                context[row, : it["text"].shape[0]] = it["text"]
            mask_dtype = getattr(torch, text["mask_dtype"])
            batch["context"] = context
            batch["context_mask"] = (torch.arange(length)[None] < lengths[:, None]).to(mask_dtype)
        if "label" in items[0]:
            batch["label"] = torch.tensor([it["label"] for it in items])
        if "skipped" in items[0]:
            batch["skipped"] = sum(it["skipped"] for it in items)
        return batch


__all__ = ["DTYPES", "FORMAT", "MANIFEST", "NULL_NAME", "VERSION", "FeatureCache", "read_manifest", "shard_name",
           "write_shard", "write_tensors"]  # fmt: skip
