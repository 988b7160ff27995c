"""`ptdit bench pipeline`: the released text-to-image pipeline at full size with random weights."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def run_pipeline(args: argparse.Namespace) -> int:
    from ptdit.bench.pipeline import PipelineBenchSettings, run_pipeline_bench

    if len(args.resolution) != 1:
        raise ValueError(f"bench pipeline takes one --resolution, got {args.resolution}")
    dtype = args.dtype or "bf16"  # the release runs network and VAE in bf16
    settings = PipelineBenchSettings(
        resolution=args.resolution[0], steps=args.steps, cfg_scale=args.cfg, dtype=dtype,
        text_tokens=args.text_tokens if args.text_tokens != 120 else 200, depth=args.depth,
    )  # fmt: skip
    report = run_pipeline_bench(settings, log=lambda line: print(line, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def format_report(report: dict[str, Any]) -> str:
    """A table: per stage time, FLOPs, the limit at this machine's matmul rate, and memory."""
    s = report["settings"]
    lines = [
        f"released pipeline, random weights: {s['resolution']} px, {s['steps']} steps, CFG {s['cfg_scale']}, "
        f"{s['dtype']} (text encoder fp32), {report['threads']} threads",
        "matmul rate this run: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in report["matmul_gflops"].items()),
        f"{'stage':<8} {'dtype':<5} {'load s':>7} {'run s':>8} {'TFLOP':>8} {'limit s':>8} {'share':>6} "
        f"{'peak GiB':>8}",
    ]
    for st in report["stages"]:
        peak = "-" if st["peak_rss_gib"] is None else f"{st['peak_rss_gib']:.2f}"
        lines.append(
            f"{st['stage']:<8} {st['dtype']:<5} {st['load_seconds']:>7.1f} {st['seconds']:>8.1f} "
            f"{st['flops'] / 1e12:>8.2f} {st['limit_seconds']:>8.1f} {st['share_of_matmul_rate']:>6.2f} {peak:>8}"
        )
    lines.append(
        f"total {report['total_seconds']:.0f} s against a limit of {report['limit_seconds']:.0f} s "
        f"({report['time_over_limit']:.2f}x); peak resident memory {report['peak_rss_gib']:.2f} GiB"
    )
    return "\n".join(lines)
