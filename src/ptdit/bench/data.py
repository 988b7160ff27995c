"""`ptdit bench data`: how many samples per second a stored format delivers through the training DataLoader.

The loader is the one training uses (map-style dataset, per-epoch shuffled positions, `collate`), with
`workers` worker processes; the first batch (worker start-up, index loading) is not timed. Results depend on
the machine and its load; they are measurements, not part of any test (docs/data.md#benchmarks).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

FORMAT_DATASETS = {"wds": "webdataset", "parquet": "parquet", "folder": "image-folder", "cache": "cache"}


def _manifest(path: str) -> dict[str, Any]:
    from ptdit.data.export import MANIFEST

    file = Path(path) / MANIFEST
    return json.loads(file.read_text()) if file.is_file() else {}


def bench_data(
    fmt: str, path: str, *, workers: int, batch_size: int = 32, batches: int = 50, size: int | None = None,
    seed: int = 0, show_progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Times `batches` shuffled batches of `batch_size` samples after one untimed batch; returns a result row."""
    from tqdm.auto import tqdm

    from ptdit.data.registry import build_named_dataset, get_entry
    from ptdit.data.sampling import EpochShuffle
    from ptdit.train.setup import collate

    if fmt not in FORMAT_DATASETS:
        raise ValueError(f"unknown --format {fmt!r}; valid: {', '.join(FORMAT_DATASETS)}")
    name = FORMAT_DATASETS[fmt]
    get_entry(name)  # names the registered datasets when `cache` is not available
    manifest = _manifest(path)
    options = {k: v for k, v in manifest.get("options", {}).items() if k in ("frames", "views")}
    if name == "image-folder" and options:
        name = "video-folder"
    size = size or manifest.get("size", 32)
    start = time.perf_counter()
    dataset = build_named_dataset(name, path=path, size=size, seed=seed, options=options)
    open_seconds = time.perf_counter() - start
    order = EpochShuffle(len(dataset), seed)
    lists = [[order(b * batch_size + i) for i in range(batch_size)] for b in range(batches + 1)]
    collate_fn = getattr(dataset, "collate", collate)  # a feature cache pads its text embeddings
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=lists, num_workers=workers, collate_fn=collate_fn)
    iterator = iter(loader)
    next(iterator)  # untimed: worker start-up
    start = time.perf_counter()
    for _ in tqdm(range(batches), desc=f"bench data {fmt}", disable=not show_progress, file=sys.stderr):
        next(iterator)
    seconds = time.perf_counter() - start
    return {
        "format": fmt, "dataset": name, "path": str(path), "samples": len(dataset), "workers": workers,
        "batch_size": batch_size, "batches": batches, "size": size, "open_seconds": open_seconds,
        "seconds": seconds, "samples_per_second": batches * batch_size / seconds,
    }  # fmt: skip


__all__ = ["FORMAT_DATASETS", "bench_data"]
