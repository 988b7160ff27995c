"""`ptdit bench`: forward and training-step latency of PT-DiT next to DiT, PixArt-alpha and diffusers' PixArt."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ptdit.cli.args import AccumulateList

DEFAULT_MODELS = ("PT-DiT/XL", "DiT-XL/2", "PixArt-alpha-XL/2", "diffusers:PixArtTransformer2DModel")
MEMORY_MODELS = ("PT-DiT/XL", "DiT-XL/2", "PixArt-alpha-XL/2")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="time PT-DiT against DiT, PixArt-alpha and diffusers' PixArtTransformer2DModel",
        description="Builds each model (random weights) and times the forward pass and a training step "
        "(forward + loss + backward, no optimizer update): after max(1, --warmup) warm-up calls per model, "
        "--repeats interleaved rounds over all models (A, B, C, A, B, C, ...) next to a reference matmul; median and "
        "min-max. Reports peak memory, throughput, forward GMACs (1 MAC = 1 FLOP), achieved GFLOP/s (2 x MAC), "
        "their share of the matmul rate measured in the same rounds and, against the first "
        "model, time and FLOP ratios and the realised speedup = (t / t_first) / (flops / flops_first). Text models "
        "get --text-tokens unpadded random caption tokens (4096-d for the presets). "
        "'diffusers:PixArtTransformer2DModel' is built from config at the width and depth of the first ptdit model.",
    )
    p.add_argument(
        "what",
        nargs="?",
        choices=("models", "pipeline", "data", "memory"),
        default="models",
        help="models (default): networks side by side; pipeline: the released text-to-image pipeline at full size "
        "with random weights (T5-XXL, PT-DiT/XL, CausalVAE), time per stage and peak memory; data: samples/s of a "
        "stored format through the training DataLoader (--format, --path, --workers); memory: peak memory of one "
        "training step per model and size, estimated on fake tensors (nothing allocated)",
    )
    _data_arguments(p)
    p.add_argument("--steps", type=int, default=30, help="pipeline: sampling steps")
    p.add_argument("--cfg", type=float, default=4.0, help="pipeline: guidance scale")
    p.add_argument(
        "--model",
        nargs="+",
        action=AccumulateList,
        default=None,
        metavar="NAME",
        help=f"presets or diffusers:... (default: {' '.join(DEFAULT_MODELS)}; memory: {' '.join(MEMORY_MODELS)})",
    )
    p.add_argument(
        "--resolution", nargs="+", action=AccumulateList, type=int, default=[512], metavar="R", help="image side, px"
    )
    p.add_argument(
        "--frames",
        nargs="+",
        action=AccumulateList,
        type=int,
        default=[1],
        metavar="F",
        help="video frames (1 = image); several only for memory",
    )
    p.add_argument("--depth", type=int, help="override the presets' depth (quick CPU runs)")
    p.add_argument("--width", type=int, help="override the presets' width (heads keep the head dim unless --heads)")
    p.add_argument("--heads", type=int, help="override the number of heads")
    p.add_argument("--window", nargs=3, type=int, metavar=("PF", "PH", "PW"), help="PT-DiT window (default: paper's)")
    p.add_argument("--batch", type=int, help="batch size (default 1; data: 32)")
    p.add_argument("--text-tokens", type=int, default=120, help="caption length of text-conditional models")
    _timing_arguments(p)
    _memory_arguments(p)
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per (model, resolution, frames)")
    p.set_defaults(func=run)


def _timing_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per model before timing (at least 1 is run)")
    p.add_argument("--forward-only", action="store_true", help="skip the training step")
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        help="where to run (default cpu); memory: whose attention path the estimate follows and where --measure "
        "runs (default cuda, the accelerator of the paper's claim; cpu with --measure)",
    )
    p.add_argument(
        "--dtype",
        choices=("fp32", "bf16"),
        help="weights and inputs dtype (default: fp32 for models, bf16 for pipeline)",
    )
    p.add_argument(
        "--attention",
        choices=("sdpa", "flex", "math"),
        default="sdpa",
        help="attention backend of the ptdit models (docs/architecture.md#attention-modules): sdpa (default), flex "
        "(FlexAttention, compiled on CUDA; forward only on CPU, so with --forward-only), math (the reference); "
        "diffusers' model keeps its own",
    )
    p.add_argument(
        "--reference-linear",
        action="store_true",
        help="run every linear layer on its reference path (F.linear + F.gelu), without the CPU bf16 inference fast "
        "path (docs/decisions.md#fused-cpu-linear): to measure what the fast path gains",
    )
    p.add_argument(
        "--profile",
        type=int,
        metavar="TOP",
        help="instead of timing, profile each model's forward pass (torch.profiler, --repeats calls) and list the "
        "TOP operators by self CPU time",
    )
    p.add_argument(
        "--window-report",
        action="store_true",
        help="instead of whole models, time window vs shifted-window attention (fast split path vs all-masked "
        "reference) at the first model's width",
    )


def _memory_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("memory (ptdit bench memory)")
    g.add_argument(
        "--precision",
        choices=("bf16", "fp32"),
        default="bf16",
        help="bf16: autocast over fp32 weights, gradients, AdamW states and EMA (as train.precision: bf16); fp32",
    )
    g.add_argument(
        "--checkpointing",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-block activation checkpointing on / off (default: both)",
    )
    g.add_argument(
        "--foreach",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="AdamW's multi-tensor update, torch's default on CUDA (default: on); --no-foreach: CPU's per-tensor loop",
    )
    g.add_argument(
        "--measure",
        action="store_true",
        help="also run the steps for real on the CPU and report the allocator's and the resident-set peaks next to "
        "the estimate (small sizes only)",
    )
    g.add_argument(
        "--vae",
        action="store_true",
        help="also estimate the per-step latent encoding with the released CausalVAE (tiled, bf16) at each size",
    )
    g.add_argument("--budget", type=float, default=64.0, help="accelerator memory in GiB for the 'fits' column")
    g.add_argument("--plot", help="write a log-log plot of peak memory against tokens (.png/.svg/.pdf or a folder)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")


def _data_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `ptdit bench data`."""
    p.add_argument("--format", dest="data_format", choices=("wds", "parquet", "folder", "cache"), help="data: format")
    p.add_argument("--path", help="data: the exported data (ptdit data export --out)")
    p.add_argument("--workers", type=int, default=0, help="data: DataLoader worker processes (default 0)")
    p.add_argument("--batches", type=int, default=50, help="data: timed batches (after one untimed)")


def _settings(args: argparse.Namespace) -> Any:
    from ptdit.bench.harness import BenchSettings

    return BenchSettings(
        resolution=args.resolution[0],
        frames=args.frames[0],
        depth=args.depth,
        width=args.width,
        heads=args.heads,
        window=tuple(args.window) if args.window else None,
        batch=args.batch or 1,
        text_tokens=args.text_tokens,
        repeats=args.repeats,
        warmup=args.warmup,
        forward_only=args.forward_only,
        device=args.device,
        dtype=args.dtype or "fp32",
    )


def _check_models(names: list[str]) -> None:
    from ptdit.bench.harness import DIFFUSERS_PIXART
    from ptdit.presets.models import MODEL_PRESETS

    unknown = [m for m in names if m not in MODEL_PRESETS and m != DIFFUSERS_PIXART]
    if unknown:
        valid = ", ".join([*MODEL_PRESETS, DIFFUSERS_PIXART])
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; available: {valid}")


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _gmac(value: float) -> str:
    return f"{value:.1f}" if value >= 100 else f"{value:.4g}"


def _range(spread: dict[str, float] | None) -> str:  # rows written before the spread was recorded have none
    return "-" if spread is None else f"{spread['min']:.1f}-{spread['max']:.1f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    r0 = rows[0]
    print(
        f"device {r0['device']}, {r0['dtype']}, {r0['threads']} threads, CPU allocator "
        f"{r0.get('cpu_allocator', 'system')}, batch {r0['batch']}, text tokens "
        f"{r0['text_tokens']} (no padding); median (min-max) of {r0['repeats']} interleaved rounds after "
        f"{r0.get('warmup', 1)} warm-up call(s); GMAC: forward, 1 MAC = 1 FLOP; GFLOP/s: 2 x MAC"
    )
    for res in dict.fromkeys(r["resolution"] for r in rows if "matmul_ms_spread" in r):
        r = next(r for r in rows if r["resolution"] == res)
        mm = r["matmul_ms_spread"]
        print(
            f"  {res} px: reference matmul {r['matmul_size']}^3 {r['dtype']}: {r['matmul_gflops_per_s']:.1f} GFLOP/s "
            f"(median; {mm['min']:.3g}-{mm['max']:.3g} ms)"
        )
    header = (
        f"{'res':>5} {'tokens':>6} {'model':<34} {'D':>3} {'W':>5} {'fwd ms':>9} {'fwd min-max':>17} "
        f"{'train ms':>9} {'train min-max':>17} {'peak MB':>8} {'GMAC':>9} {'GFLOP/s':>8} {'share':>6} "
        f"{'t/t0':>6} {'f/f0':>6} {'realised':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['resolution']:>5} {r['tokens']:>6} {r['model']:<34} {r['depth']:>3} {r['width']:>5} "
            f"{r['forward_ms']:>9.1f} {_range(r.get('forward_ms_spread')):>17} {_fmt(r['train_step_ms'], '9.1f'):>9} "
            f"{_range(r.get('train_step_ms_spread')):>17} {_fmt(r['peak_memory_mb'], '8.0f'):>8} "
            f"{_gmac(r['gmac']):>9} {r['forward_gflops_per_s']:>8.1f} "
            f"{_fmt(r.get('forward_share_of_matmul'), '6.2f'):>6} "
            f"{r['forward_time_ratio']:>6.2f} {r['flop_ratio']:>6.2f} {r['forward_realised_speedup']:>8.2f}"
        )
    if any(r["train_realised_speedup"] is not None for r in rows):
        print(
            "\ntraining step (forward + backward): time ratio, FLOP ratio, realised speedup vs the first model, "
            "share of the matmul rate"
        )
        for r in rows:
            print(
                f"{r['resolution']:>5} {r['model']:<34} {_fmt(r['train_time_ratio'], '6.2f')} "
                f"{_fmt(r['train_flop_ratio'], '6.2f')} {_fmt(r['train_realised_speedup'], '6.2f')} "
                f"{_fmt(r.get('train_share_of_matmul'), '6.2f')}"
            )
    print(
        "\nshare: achieved GFLOP/s over the reference matmul's, timed in the same rounds; t/t0, f/f0: forward time "
        "and FLOPs relative to the first model; realised = (t/t0) / (f/f0), i.e. for PT-DiT first: "
        "(t_baseline / t_ptdit) / (flops_baseline / flops_ptdit); 1.0 = FLOP saving fully realised"
    )


def run_window_report(args: argparse.Namespace) -> int:
    from ptdit.bench.harness import bench_config, replace_settings, window_attention_report
    from ptdit.presets.models import get_preset

    settings = _settings(args)
    settings.validate()
    ours = [m for m in args.model if not m.startswith("diffusers:")]
    config = bench_config(ours[0], settings) if ours else get_preset("PT-DiT/XL")
    rows = [
        window_attention_report(replace_settings(settings, resolution=r), dim=config.dim, num_heads=config.num_heads)
        for r in args.resolution
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    where = f"{settings.device} {settings.dtype}"
    print(f"one attention module, width {config.dim}, {config.num_heads} heads, {where}, forward")
    print(
        f"{'res':>5} {'tokens':>6} {'window':<9} {'masked/all':>10} {'window ms':>10} {'shifted split':>13} "
        f"{'all masked':>10} {'roll ms':>8}"
    )
    for r in rows:
        print(
            f"{r['resolution']:>5} {r['tokens']:>6} {'x'.join(map(str, r['window'])):<9} "
            f"{r['masked_windows']:>4}/{r['windows']:<5} {r['window_ms']:>10.1f} {r['shifted_split_ms']:>13.1f} "
            f"{r['shifted_all_masked_ms']:>10.1f} {r['roll_ms']:>8.1f}"
        )
    return 0


def run_data(args: argparse.Namespace) -> int:
    from ptdit.bench.data import bench_data

    if not args.data_format or not args.path:
        raise ValueError("ptdit bench data needs --format FORMAT and --path DIR (see ptdit data export)")
    if args.workers < 0 or args.batches < 1:
        raise ValueError(f"--workers must be >= 0 and --batches >= 1, got {args.workers}, {args.batches}")
    row = bench_data(
        args.data_format, args.path, workers=args.workers, batch_size=args.batch or 32, batches=args.batches
    )
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    print(
        f"{row['format']}: {row['samples_per_second']:.0f} samples/s ({row['workers']} workers, batch "
        f"{row['batch_size']}, {row['batches']} batches, {row['size']} px, {row['samples']} samples; index/open "
        f"{row['open_seconds']:.2f} s)"
    )
    return 0


def run_profile(args: argparse.Namespace) -> int:
    from ptdit.bench.harness import DIFFUSERS_PIXART, profile_forward, replace_settings

    if args.profile < 1:
        raise ValueError(f"--profile takes the number of operators to list (>= 1), got {args.profile}")
    if DIFFUSERS_PIXART in args.model:
        raise ValueError(f"--profile takes ptdit presets; drop {DIFFUSERS_PIXART}")
    settings = _settings(args)
    settings.validate()
    reports = [
        profile_forward(name, replace_settings(settings, resolution=r), top=args.profile)
        for r in args.resolution
        for name in args.model
    ]
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    for rep in reports:
        print(
            f"\n{rep['model']} at {rep['resolution']} px x {rep['frames']}, width {rep['width']}, depth "
            f"{rep['depth']}, {rep['dtype']}: profiled forward {rep['forward_ms']:.1f} ms (self CPU time summed)"
        )
        print(f"  {'operator':<48} {'calls':>6} {'self ms':>9} {'share':>6}")
        for op in rep["ops"]:
            print(f"  {op['op'][:48]:<48} {op['calls']:>6} {op['self_ms']:>9.1f} {op['share']:>6.1%}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.what == "data":
        return run_data(args)
    args.model_given = args.model is not None
    if args.what == "memory":
        from ptdit.cli.bench_memory import run_memory

        return run_memory(args)
    args.model = args.model or list(DEFAULT_MODELS)
    args.device = args.device or "cpu"  # `bench memory` returned above: its default differs
    if len(args.frames) != 1:
        raise ValueError(f"bench {args.what} takes one --frames value, got {args.frames}; several are for memory")
    from ptdit.attention.backends import use_attention_backend
    from ptdit.nn.layers import Linear

    fused, Linear.fused_cpu = Linear.fused_cpu, not args.reference_linear  # every path that runs a network
    try:
        with use_attention_backend(args.attention):
            return _run_networks(args)
    finally:
        Linear.fused_cpu = fused


def _run_networks(args: argparse.Namespace) -> int:
    if args.what == "pipeline":
        from ptdit.cli.bench_pipeline import run_pipeline

        return run_pipeline(args)
    _check_models(args.model)
    if args.window_report:
        return run_window_report(args)
    if args.profile is not None:
        return run_profile(args)
    from ptdit.bench.harness import DIFFUSERS_PIXART, run_benchmarks

    if args.attention == "flex" and args.device == "cpu" and not args.forward_only:
        raise ValueError("--attention flex has no backward on CPU in torch; add --forward-only, or use --device cuda")
    if any(r < 1 for r in args.resolution):
        raise ValueError(f"--resolution values must be positive, got {args.resolution}")
    rows = run_benchmarks(args.model, args.resolution, _settings(args))
    for row in rows:
        row["linear"] = "reference" if args.reference_linear else "fast path where eligible"
        row["attention"] = args.attention if row["model"] != DIFFUSERS_PIXART else "diffusers' own"
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print_table(rows)
    return 0
