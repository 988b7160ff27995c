"""`ptdit data export`: write the built-in procedural datasets as WebDataset shards, Parquet or a folder."""

from __future__ import annotations

import argparse

from ptdit.cli.args import nonnegative_int, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "data",
        help="data tools: export the built-in datasets as shards (docs/data.md)",
        description="Data tools. `ptdit data export` writes procedural samples 0 .. N-1 as WebDataset tar shards "
        "(--format wds), Parquet files (parquet) or an image/video folder (folder): PNG images, animated PNG clips "
        "and view sets, .txt captions. Train on them with --set data.dataset=webdataset --set data.path=DIR.",
    )
    tools = p.add_subparsers(dest="tool", required=True, metavar="TOOL")
    e = tools.add_parser("export", help="write a built-in dataset as shards, Parquet or a folder")
    e.add_argument("--dataset", required=True, choices=("shapes", "moving-shapes", "turntable"))
    e.add_argument("--num", required=True, type=positive_int, help="number of samples")
    e.add_argument("--seed", type=nonnegative_int, default=0, help="dataset seed (default 0)")
    e.add_argument("--format", dest="fmt", required=True, choices=("wds", "parquet", "folder"))
    e.add_argument("--out", required=True, help="new (or empty) output folder; written atomically")
    e.add_argument(
        "--shard-size", type=positive_int, default=1000, help="samples per tar / Parquet file (default 1000)"
    )
    e.add_argument("--size", type=positive_int, default=32, help="image side in pixels (default 32)")
    e.add_argument("--frames", type=positive_int, help="moving-shapes: frames per clip (default: the dataset's)")
    e.add_argument("--views", type=positive_int, help="turntable: views per object (default: the dataset's)")
    e.add_argument("--max-objects", type=positive_int, help="shapes / moving-shapes: objects per sample at most")
    e.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ptdit.data.export import export_dataset

    options = {k: getattr(args, k) for k in ("frames", "views", "max_objects") if getattr(args, k) is not None}
    manifest = export_dataset(
        args.dataset, args.num, args.out, fmt=args.fmt, seed=args.seed, size=args.size,
        shard_size=args.shard_size, options=options, show_progress=True,
    )  # fmt: skip
    print(f"wrote {args.num} {args.dataset} samples to {args.out} ({args.fmt}, {manifest['shards']} file(s))")
    return 0
