"""`ptdit eval`: the paper's metrics with weights from local files (docs/evaluation.md).

`ptdit eval fid|kid|fvd|clipscore|stats ...`, and `generate|oracle|train-features|shapes-fd` from
`ptdit.cli.eval_sampling`. Each sub-subcommand is added by its own `register_*` function
listed in `EVAL_COMMANDS` and runs one library function of `ptdit.eval.metrics`. Every score is printed and
written with its protocol to a JSON record beside the generated samples (`<samples>.<metric>.json`, or
`--out`); `--json` prints the record instead of the one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from typing import Any

FEATURES_HELP = (
    "feature network: inception[:FILE] (FID Inception-v3, pt_inception-2015-12-05-6726825d.pth), i3d[:FILE] "
    "(I3D rgb_imagenet.pt), hf:NAME_OR_DIR (a transformers image encoder, e.g. DINOv2 or CLIP); without FILE the "
    "file is looked for in torch's hub checkpoint folder. Default: the protocol's, else inception / i3d"
)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="evaluation: FID, KID, FVD, CLIPScore / CLIPSIM, feature statistics; generate, oracle, shapes-FD",
        description="The paper's metrics with feature networks loaded from local files. Every score is written "
        "with its protocol (feature network and weights hash, resize, dtype, sample counts, generation settings) "
        "to a JSON record beside the samples.",
    )
    commands = parser.add_subparsers(dest="eval_command", required=True, metavar="METRIC")
    for register_command in EVAL_COMMANDS:
        register_command(commands)


# ----------------------------------------------------------------------------------------------------------------
# Shared arguments and output
# ----------------------------------------------------------------------------------------------------------------


def add_run_args(p: argparse.ArgumentParser, *, batch_size: int) -> None:
    """--device, --batch-size."""
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--batch-size", type=int, default=batch_size, help="items per forward pass")


def add_output_args(p: argparse.ArgumentParser) -> None:
    """--out, --json."""
    p.add_argument("--out", metavar="FILE.json", help="score record (default: <fake>.<metric>.json beside the samples)")
    p.add_argument("--json", action="store_true", help="print the score record as JSON")


def settings_from(args: argparse.Namespace, *, features: str | None = None) -> Any:
    import torch

    from ptdit.eval.metrics import EvalSettings

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    kid_features = 0 if getattr(args, "no_kid_features", False) else EvalSettings.kid_features
    return EvalSettings(
        features=features,
        device=device,
        batch_size=args.batch_size,
        kid_features=kid_features,
        progress=sys.stderr.isatty(),
    )


@contextlib.contextmanager
def warnings_as_lines(command: str) -> Iterator[None]:
    """Prints each warning raised inside the block as one `ptdit eval CMD: warning: ...` line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                print(f"ptdit eval {command}: warning: {warning.message}", file=sys.stderr)


def write_and_report(args: argparse.Namespace, record: dict[str, Any], summary: str, default_from: str) -> None:
    from ptdit.eval.records import default_record_path, write_record

    path = write_record(args.out or default_record_path(default_from, record["metric"]), record)
    print(json.dumps(record, indent=2) if args.json else f"{summary}  -> {path}")


# ----------------------------------------------------------------------------------------------------------------
# fid, kid, fvd
# ----------------------------------------------------------------------------------------------------------------


def _add_frechet_args(p: argparse.ArgumentParser, *, media: str) -> None:
    kind = "images" if media == "image" else "videos"
    layout = "(N, H, W, 3)" if media == "image" else "(N, T, H, W, 3)"
    for name, role in (("--real", "reference"), ("--fake", "generated")):
        p.add_argument(
            name,
            required=True,
            metavar="PATH",
            help=f"{role} {kind}: a folder, an .npz with uint8 {layout} arr_0, or a statistics .npz",
        )
    p.add_argument("--features", metavar="NAME[:ARG]", help=FEATURES_HELP)
    p.add_argument("--protocol", metavar="NAME", help="enforce a paper protocol (see docs/evaluation.md)")
    p.add_argument("--center-crop", type=int, metavar="N", help="ADM center crop of the reference items to N x N")
    if media == "video":
        p.add_argument("--frames", type=int, metavar="T", help="frames per clip, the first ones (default 16)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID: number of random subsets")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID: samples per subset (capped by the sets)")
    add_run_args(p, batch_size=50 if media == "image" else 8)
    add_output_args(p)


def register_fid(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "fid",
        help="FID (and KID) between two image sets",
        description="Frechet distance of Inception-v3 pool3 features (or another feature network) between a "
        "reference and a generated image set; KID too when both sides have raw features.",
    )
    _add_frechet_args(p, media="image")
    p.set_defaults(func=run_frechet, metric="fid", media="image")


def register_kid(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "kid",
        help="KID (and FID) between two image sets",
        description="Kernel inception distance (unbiased polynomial-kernel MMD^2 over random subsets) between a "
        "reference and a generated image set.",
    )
    _add_frechet_args(p, media="image")
    p.set_defaults(func=run_frechet, metric="kid", media="image")


def register_fvd(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "fvd",
        help="FVD between two video sets (I3D, 16-frame clips)",
        description="Frechet video distance: I3D Kinetics-400 logits of the first 16 frames of every clip, "
        "resized to 224 px.",
    )
    _add_frechet_args(p, media="video")
    p.set_defaults(func=run_frechet, metric="fvd", media="video")


def run_frechet(args: argparse.Namespace) -> int:
    from ptdit.eval.metrics import frechet_between
    from ptdit.eval.protocols import get_protocol

    protocol = get_protocol(args.protocol, metric="fid" if args.metric == "kid" else args.metric)
    with warnings_as_lines(args.metric):
        record = frechet_between(
            args.real,
            args.fake,
            metric=args.metric,
            media=args.media,
            settings=settings_from(args, features=args.features),
            protocol=protocol,
            center_crop=args.center_crop,
            num_frames=getattr(args, "frames", None),
            kid=(args.kid_subsets, args.kid_subset_size),
        )
    scores = record["scores"]
    if args.metric == "kid" and "kid" not in scores:
        raise ValueError("KID needs raw features on both sides; a statistics file made with --no-kid-features has none")
    kid = f"KID {scores['kid']:.5f} +- {scores['kid_std']:.5f}" if "kid" in scores else "KID n/a (no raw features)"
    main_score = f"{args.metric.upper()} {scores[args.metric]:.4f}" if args.metric != "kid" else None
    counts = f"real {record['real']['count']}, fake {record['fake']['count']}"
    summary = "  ".join(s for s in (main_score, kid, f"({record['features']['network']}; {counts})") if s)
    write_and_report(args, record, summary, args.fake)
    return 0


# ----------------------------------------------------------------------------------------------------------------
# clipscore
# ----------------------------------------------------------------------------------------------------------------


def register_clipscore(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "clipscore",
        help="CLIPScore of images / CLIPSIM of videos against their prompts",
        description="CLIPScore = 100 x max(cos, 0) between CLIP image and prompt embeddings, averaged over images; "
        "for videos CLIPSIM = the mean over frames of max(cos, 0), averaged over videos (0-1 scale).",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="PATH", help="generated images: a folder or an .npz")
    source.add_argument("--videos", metavar="PATH", help="generated videos: a folder or an .npz")
    p.add_argument(
        "--prompts", metavar="FILE", help="one prompt per line in item order (default: .txt / .json sidecars)"
    )
    p.add_argument("--clip", metavar="NAME_OR_DIR", help="CLIP model folder or cached hub id (default: the protocol's)")
    p.add_argument("--protocol", metavar="NAME", help="enforce a paper protocol (msrvtt-clipsim)")
    p.add_argument(
        "--long-prompts",
        choices=("truncate", "error"),
        default="truncate",
        help="prompts over CLIP's 77 tokens: cut to the first 75 tokens + end token, counted and recorded (default), "
        "or refuse",
    )
    p.add_argument("--frames", type=int, metavar="T", help="videos: frames scored, the first ones (default 16)")
    add_run_args(p, batch_size=32)
    add_output_args(p)
    p.set_defaults(func=run_clipscore)


def run_clipscore(args: argparse.Namespace) -> int:
    from ptdit.eval.metrics import clip_similarity
    from ptdit.eval.protocols import get_protocol

    media, path = ("image", args.images) if args.images else ("video", args.videos)
    protocol = get_protocol(args.protocol, metric="clipsim" if media == "video" else "clipscore")
    with warnings_as_lines("clipscore"):
        record = clip_similarity(
            path,
            clip=args.clip,
            prompts_file=args.prompts,
            media=media,
            settings=settings_from(args),
            protocol=protocol,
            long_prompts=args.long_prompts,
            num_frames=args.frames,
        )
    scores, prompts = record["scores"], record["prompts"]
    value = f"CLIPSIM {scores['clipsim']:.4f}" if media == "video" else f"CLIPScore {scores['clipscore']:.3f}"
    summary = f"{value}  ({prompts['count']} {media}s, {prompts['truncated']} prompts truncated)"
    write_and_report(args, record, summary, path)
    return 0


# ----------------------------------------------------------------------------------------------------------------
# stats
# ----------------------------------------------------------------------------------------------------------------


def register_stats(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "stats",
        help="cache the feature statistics of a (reference) set as .npz",
        description="Mean, covariance, count, a random subset of raw features (for KID) and the protocol of a "
        "set's features, written atomically to an .npz that fid / kid / fvd read instead of the set.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="PATH", help="a folder or an .npz of images")
    source.add_argument("--videos", metavar="PATH", help="a folder or an .npz of videos")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="statistics file to write")
    p.add_argument("--features", metavar="NAME[:ARG]", help=FEATURES_HELP)
    p.add_argument("--protocol", metavar="NAME", help="a paper protocol: its features, reference count and crop")
    p.add_argument("--center-crop", type=int, metavar="N", help="ADM center crop of every item to N x N")
    p.add_argument("--frames", type=int, metavar="T", help="videos: frames per clip, the first ones (default 16)")
    p.add_argument("--no-kid-features", action="store_true", help="keep no raw features (no KID from this file)")
    add_run_args(p, batch_size=50)
    p.set_defaults(func=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    from ptdit.eval.metrics import make_stats
    from ptdit.eval.protocols import get_protocol
    from ptdit.eval.stats import save_stats

    media, path = ("image", args.images) if args.images else ("video", args.videos)
    if not args.out.endswith(".npz"):
        raise ValueError(f"--out must end in .npz, got {args.out}")
    protocol = get_protocol(args.protocol)
    with warnings_as_lines("stats"):
        stats = make_stats(
            path,
            media=media,
            settings=settings_from(args, features=args.features),
            protocol=protocol,
            center_crop=args.center_crop,
            num_frames=args.frames,
        )
    save_stats(args.out, stats)
    print(
        f"{stats.count} {media}s -> {args.out} ({stats.protocol['network']}, {len(stats.mu)}-d, "
        f"protocol {stats.protocol_hash}, statistics {stats.stats_hash})"
    )
    return 0


# One register function per sub-subcommand, in the order of `ptdit eval --help`.
def _sampling_commands() -> list:
    from ptdit.cli.eval_sampling import SAMPLING_COMMANDS

    return SAMPLING_COMMANDS


EVAL_COMMANDS = [register_fid, register_kid, register_fvd, register_clipscore, register_stats, *_sampling_commands()]
