"""`ptdit cache`: encode a training config's dataset once (text embeddings, VAE latent distributions) into a
feature cache that `ptdit train` reads with `data.dataset=cache data.path=DIR` (docs/data.md#feature-caches)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ptdit.cli.args import number, ptdit_command


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="encode a training config's dataset into a feature cache",
        description="Encodes the config's dataset with its text encoder and VAE into safetensors shards. Rerunning "
        "the same command resumes an interrupted cache; several processes: torchrun --nproc_per_node=N -m ptdit "
        "cache ...",
    )
    p.add_argument("--config", required=True, help="the training config whose dataset and encoders to use")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set data.size=512 (repeatable)")  # fmt: skip
    p.add_argument("--out", required=True, help="the cache folder (resumed when it holds this cache)")
    p.add_argument("--num", type=number(int, positive=True), help="cache the first N samples (default: all)")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], default="bf16", help="storage dtype (default bf16)")
    p.add_argument("--shard-size", type=number(int, positive=True), default=256, help="samples per shard")
    p.add_argument("--batch-size", type=number(int, positive=True), default=32, help="samples per encoder call")
    p.add_argument("--flip", action="store_true", help="also store the latents of the flipped images (data.flip)")
    p.add_argument("--stage", help="with a staged config: the stage whose size and data to cache (its name)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def stage_config(cfg: Any, stage: str | None) -> Any:
    """The config of the named stage of a staged config (a cache holds one size); `cfg` itself otherwise."""
    from ptdit.train.stages import resolve_stages

    if not cfg.stages:
        if stage is not None:
            raise ValueError(f"--stage {stage}: the config has no stages; leave --stage out")
        return cfg
    stages = {s.name: s.config for s in resolve_stages(cfg)}
    if stage not in stages:
        raise ValueError(f"the config has stages {list(stages)}; choose the one to cache with --stage NAME")
    return stages[stage]


def run(args: argparse.Namespace) -> int:
    from ptdit.train.cache import CacheOptions, write_cache
    from ptdit.train.config import load_train_config

    cfg = stage_config(load_train_config(args.config, args.overrides), args.stage)
    options = CacheOptions(dtype=args.dtype, shard_size=args.shard_size, batch_size=args.batch_size, flip=args.flip,
                           num=args.num)  # fmt: skip
    manifest = write_cache(cfg, args.out, options, show_progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"cached {manifest['num_samples']} samples in {len(manifest['shards'])} shard(s) under {args.out} "
              f"(content hash {manifest['content_hash'][:16]})")  # fmt: skip
        where = f"stages.{args.stage}.data.path" if args.stage else "data.path"
        print(f"train from it: {ptdit_command()} train --config {args.config} --set data.dataset=cache "
              f"--set {where}={args.out} --out RUN")  # fmt: skip
    return 0
